"""Produce with acks=0, 1 and all delivers every message, with each client.

With acks=0 the broker sends no response, so only the consumer can tell that the messages
arrived; with 1 and all the producer's own delivery reports must also succeed (the helpers
assert that). Each case reads back with confluent-kafka.
"""

import pytest

import clients as c

COUNT = 1_000


@pytest.mark.parametrize("acks", ["0", "1", "all"])
@pytest.mark.parametrize("client", c.CLIENTS)
def test_acks_level_delivers_everything(broker, topic, client, acks):
    c.create_topic(broker.bootstrap, topic, 2)
    produced = c.keyed_messages(COUNT)
    c.produce_with(client, broker.bootstrap, topic, produced, acks=acks)
    consumed = c.confluent_consume(broker.bootstrap, topic, [0, 1], COUNT, timeout_s=30)
    c.check_keyed_order(consumed, produced)


def test_acks_all_reports_offsets(broker, topic):
    """With acks=all the delivery reports carry the offsets the broker assigned."""
    c.create_topic(broker.bootstrap, topic, 1)
    reports = c.confluent_produce(broker.bootstrap, topic, c.keyed_messages(100), acks=-1)
    assert sorted(m.offset for m in reports) == list(range(100))
    zero = c.confluent_produce(broker.bootstrap, topic, c.keyed_messages(10), acks=0)
    # confluent-kafka reports the unknown offset as None (librdkafka's OFFSET_INVALID).
    assert all(m.offset is None or m.offset < 0 for m in zero), "acks=0 cannot know an offset"
