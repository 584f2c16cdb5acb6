"""Well-framed but invalid requests get the Kafka error code for what is wrong with them.

Hand-built requests (kafka_wire.py) over a raw socket:

    Produce v3, batch with a wrong CRC-32C        -> CORRUPT_MESSAGE (2), nothing appended
    Produce v3, legacy magic-1 message set        -> UNSUPPORTED_FOR_MESSAGE_FORMAT (43)
                                                     (Apache Kafka answers INVALID_RECORD, 87;
                                                     either is accepted), nothing appended
    Metadata v1 for a bad topic name              -> INVALID_TOPIC_EXCEPTION (17)
    Produce v3 for a bad topic name               -> 17, or 3 as Apache Kafka answers
    Fetch v4 / Produce v3 for a missing partition -> UNKNOWN_TOPIC_OR_PARTITION (3)
    Fetch v4 for a missing topic, no auto-create  -> UNKNOWN_TOPIC_OR_PARTITION (3)

The connection stays usable after each error response (a valid request on it succeeds),
the broker keeps the data it acknowledged, and a normal client produces and consumes.
"""

import pytest

import clients as c
import kafka_wire as kw

BAD_TOPIC_NAMES = ["bad topic!", "a" * 250, ".", "..", "tab\there", ""]


@pytest.fixture
def baseline(broker, topic):
    return c.AckedBaseline(broker.bootstrap, topic)


def high_watermark(conn: kw.Connection, topic: str, partition: int) -> int:
    resp = conn.fetch(topic, partition, 0)
    assert resp.error_code == kw.NONE
    return resp.high_watermark


def assert_connection_still_works(conn: kw.Connection, topic: str) -> None:
    assert conn.metadata([topic]).topics[topic].error_code == kw.NONE


def test_bad_crc_is_corrupt_message(broker, baseline):
    with kw.Connection(broker.bootstrap) as conn:
        hw = high_watermark(conn, baseline.topic, 0)
        bad = kw.record_batch([kw.Record(b"k", b"v")], corrupt_crc=True)
        assert conn.produce(baseline.topic, 0, bad).error_code == kw.CORRUPT_MESSAGE
        assert high_watermark(conn, baseline.topic, 0) == hw, "a corrupt batch was appended"
        # A batch whose body was changed after its CRC was computed is corrupt too.
        good = bytearray(kw.record_batch([kw.Record(b"k", b"value")]))
        good[-3] ^= 0x01
        assert conn.produce(baseline.topic, 0, bytes(good)).error_code == kw.CORRUPT_MESSAGE
        assert high_watermark(conn, baseline.topic, 0) == hw
    baseline.check_still_serving()


def test_magic_1_batch_is_unsupported_format(broker, baseline):
    with kw.Connection(broker.bootstrap) as conn:
        hw = high_watermark(conn, baseline.topic, 0)
        legacy = kw.legacy_message_set_v1(b"k", b"old format")
        err = conn.produce(baseline.topic, 0, legacy).error_code
        assert err in (kw.UNSUPPORTED_FOR_MESSAGE_FORMAT, kw.INVALID_RECORD), err
        assert high_watermark(conn, baseline.topic, 0) == hw
    baseline.check_still_serving()


@pytest.mark.parametrize("name", BAD_TOPIC_NAMES, ids=["space-bang", "250-chars", "dot",
                                                       "dotdot", "tab", "empty"])
def test_bad_topic_name_is_invalid_topic(broker, baseline, name):
    with kw.Connection(broker.bootstrap) as conn:
        meta = conn.metadata([name])
        assert name in meta.topics, f"no answer for {name!r}: {list(meta.topics)}"
        assert meta.topics[name].error_code == kw.INVALID_TOPIC_EXCEPTION
        # Apache Kafka answers a produce to any topic it lacks with 3 before it looks at the
        # name; a broker that creates topics on produce must check the name and answer 17.
        resp = conn.produce(name, 0, kw.record_batch([kw.Record(b"k", b"v")]))
        assert resp.error_code in (kw.INVALID_TOPIC_EXCEPTION, kw.UNKNOWN_TOPIC_OR_PARTITION)
        assert_connection_still_works(conn, baseline.topic)
    all_topics = c.confluent_admin(broker.bootstrap).list_topics(timeout=10).topics
    assert name not in all_topics, f"bad topic name {name!r} was created"
    baseline.check_still_serving()


def test_missing_partition_is_unknown_topic_or_partition(broker, baseline):
    with kw.Connection(broker.bootstrap) as conn:
        assert conn.fetch(baseline.topic, 99, 0).error_code == kw.UNKNOWN_TOPIC_OR_PARTITION
        assert conn.fetch(baseline.topic, -1, 0).error_code == kw.UNKNOWN_TOPIC_OR_PARTITION
        resp = conn.produce(baseline.topic, 99, kw.record_batch([kw.Record(b"k", b"v")]))
        assert resp.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION
        assert conn.fetch(baseline.topic, 0, 0).error_code == kw.NONE
    baseline.check_still_serving()


def test_missing_topic_without_auto_create_is_unknown(broker_factory, topic):
    broker = broker_factory(auto_create_topics=False)
    with kw.Connection(broker.bootstrap) as conn:
        assert conn.fetch(topic, 0, 0).error_code == kw.UNKNOWN_TOPIC_OR_PARTITION
        meta = conn.metadata([topic])
        assert meta.topics[topic].error_code == kw.UNKNOWN_TOPIC_OR_PARTITION
        resp = conn.produce(topic, 0, kw.record_batch([kw.Record(b"k", b"v")]))
        assert resp.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION
    c.create_topic(broker.bootstrap, topic, 1)
    c.AckedBaseline(broker.bootstrap, topic + "-after").check_still_serving()
