"""After a clean stop (SIGTERM, exit 0) and a start on the same data dir, everything is there.

Data from several clients and codecs goes into a topic created with configs and into an
auto-created topic. The broker is restarted; both topics, their partition counts and
configs, every message, and the offsets are as before. New writes continue at the old
high watermark, and a second restart keeps those too.
"""

import confluent_kafka
from confluent_kafka.admin import ConfigResource

import clients as c
import kafka_wire as kw

PARTITIONS = 4


def read_everything(bootstrap: str, topic: str, partitions: int, count: int) -> list[c.Msg]:
    msgs = c.confluent_consume(bootstrap, topic, list(range(partitions)), count, timeout_s=60)
    return sorted(msgs)


def topic_config(bootstrap: str, topic: str, name: str) -> str:
    res = ConfigResource(confluent_kafka.admin.ResourceType.TOPIC, topic)
    admin = c.confluent_admin(bootstrap)
    return admin.describe_configs([res])[res].result(30)[name].value


def test_restart_keeps_topics_messages_and_offsets(broker_factory, topic):
    broker = broker_factory(fsync="always")
    auto_topic = topic + "-auto"
    c.create_topic(broker.bootstrap, topic, PARTITIONS, config={"retention.ms": "7200000"})

    first = c.keyed_messages(20_000)
    c.confluent_produce(broker.bootstrap, topic, first, acks=-1, compression_type="zstd")
    second = c.keyed_messages(2_000, start=20_000)
    c.kafka_python_produce(broker.bootstrap, topic, second, acks="all", compression_type="gzip")
    third = c.keyed_messages(1_000, start=22_000)
    c.kcat_produce(broker.bootstrap, topic, third, props={"acks": "all"})
    auto = c.keyed_messages(500)
    c.confluent_produce(broker.bootstrap, auto_topic, auto, acks=-1)

    total = len(first) + len(second) + len(third)
    before = read_everything(broker.bootstrap, topic, PARTITIONS, total)
    watermarks = [c.confluent_watermarks(broker.bootstrap, topic, p) for p in range(PARTITIONS)]

    broker.restart()

    assert read_everything(broker.bootstrap, topic, PARTITIONS, total) == before
    assert [c.confluent_watermarks(broker.bootstrap, topic, p)
            for p in range(PARTITIONS)] == watermarks
    c.check_keyed_order(c.confluent_consume(broker.bootstrap, auto_topic, [0], len(auto)), auto)
    meta = c.confluent_admin(broker.bootstrap).list_topics(timeout=10).topics
    assert len(meta[topic].partitions) == PARTITIONS
    assert topic_config(broker.bootstrap, topic, "retention.ms") == "7200000"
    for p in range(PARTITIONS):
        batches, _ = kw.read_all_batches(broker.bootstrap, topic, p)
        assert all(b.crc_ok for b in batches), f"partition {p}: bad CRC after restart"

    # New writes go on from the old high watermark, and survive another restart.
    more = c.confluent_produce(broker.bootstrap, topic, [(b"after", b"restart", 0)], acks=-1)
    assert more[0].offset == watermarks[0][1]
    broker.restart()
    after = read_everything(broker.bootstrap, topic, PARTITIONS, total + 1)
    assert after == sorted(before + more)
