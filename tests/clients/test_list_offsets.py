"""ListOffsets answers earliest, latest and by-timestamp lookups, with every client.

100 messages go to one partition with timestamps T0, T0+1s, ..., T0+99s (set by the
producer, CreateTime). Then: earliest is 0 and latest is 100; the first offset with a
timestamp at or after T0+50.5s is 51; a time after the last message has no offset
(-1); kcat reads "the last 10" (-o -10), which it resolves through ListOffsets.
"""

import time

import confluent_kafka
import kafka
import pytest

import clients as c

COUNT = 100


@pytest.fixture
def timed_topic(broker, topic):
    c.create_topic(broker.bootstrap, topic, 1)
    t0 = int(time.time() * 1000) - 3_600_000
    producer = confluent_kafka.Producer(c.confluent_conf(broker.bootstrap, linger_ms=5))
    for i in range(COUNT):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0,
                         timestamp=t0 + i * 1000)
    assert producer.flush(30) == 0
    return topic, t0


def test_confluent_list_offsets(broker, timed_topic):
    topic, t0 = timed_topic
    assert c.confluent_watermarks(broker.bootstrap, topic, 0) == (0, COUNT)
    consumer = confluent_kafka.Consumer(c.confluent_conf(broker.bootstrap, group_id="keel-unused"))
    try:
        tp = confluent_kafka.TopicPartition
        (mid,) = consumer.offsets_for_times([tp(topic, 0, t0 + 50_500)], timeout=10)
        (first,) = consumer.offsets_for_times([tp(topic, 0, t0 - 1)], timeout=10)
        (late,) = consumer.offsets_for_times([tp(topic, 0, t0 + 10_000_000)], timeout=10)
    finally:
        consumer.close()
    assert (mid.error, mid.offset) == (None, 51)
    assert first.offset == 0
    assert late.offset == confluent_kafka.OFFSET_END  # -1: no such message


def test_kafka_python_list_offsets(broker, timed_topic):
    topic, t0 = timed_topic
    consumer = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        tp = kafka.TopicPartition(topic, 0)
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: COUNT}
        found = consumer.offsets_for_times({tp: t0 + 50_500})[tp]
        assert (found.offset, found.timestamp) == (51, t0 + 51_000)
        assert consumer.offsets_for_times({tp: t0 + 10_000_000})[tp] is None
    finally:
        consumer.close(autocommit=False)


def test_kafkajs_list_offsets(broker, timed_topic):
    topic, t0 = timed_topic
    latest, mid = c.kafkajs("admin", bootstrap=broker.bootstrap, ops=[
        ["fetchTopicOffsets", topic],
        ["fetchTopicOffsetsByTimestamp", topic, t0 + 50_500],
    ])["results"]
    assert [(p["partition"], p["low"], p["high"]) for p in latest] == [(0, "0", str(COUNT))]
    assert mid == [{"partition": 0, "offset": "51"}]


def test_kcat_reads_last_ten(broker, timed_topic):
    topic, _ = timed_topic
    msgs = c.kcat_consume(broker.bootstrap, topic, 100, partition=0, offset="-10")
    assert [m.offset for m in msgs] == list(range(COUNT - 10, COUNT))
    assert [m.value for m in msgs] == [b"v%d" % i for i in range(COUNT - 10, COUNT)]
