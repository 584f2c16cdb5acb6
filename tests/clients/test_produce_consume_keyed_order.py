"""Keyed messages over 8 partitions come back complete, with their keys, in order per partition.

Each client produces with its own key partitioner and reads every partition back with manual
assignment. confluent-kafka (librdkafka) moves 100,000 messages in a few seconds, so it gets
the full count. kafka-python and KafkaJS are pure Python/JavaScript and spend roughly 50 to
100 times as much CPU per message as librdkafka on this 2-core machine, and kcat pipes every
message through a text line, so they get 10,000: enough for many batches on every partition,
without letting three slow clients dominate the suite's time budget.
"""

import pytest

import clients as c

PARTITIONS = 8
COUNTS = {"confluent": 100_000, "kafka-python": 10_000, "kcat": 10_000, "kafkajs": 10_000}


@pytest.mark.parametrize("client", c.CLIENTS)
def test_keyed_messages_round_trip_in_order(broker, topic, client):
    count = COUNTS[client]
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    produced = c.keyed_messages(count)
    c.produce_with(client, broker.bootstrap, topic, produced)
    consumed = c.consume_with(client, broker.bootstrap, topic, list(range(PARTITIONS)), count,
                              timeout_s=120)
    c.check_keyed_order(consumed, produced)
    assert len({m.partition for m in consumed}) == PARTITIONS, "keys did not spread over all partitions"
