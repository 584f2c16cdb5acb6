"""`__consumer_offsets` stays compact, and offsets of empty groups expire.

Compaction: with a small `offsets_snapshot_bytes`, many commits to one group make its
coordinator write snapshots and drop the log before them: the partition's log start moves
past 0 while the committed offsets stay right, also after a restart (replay starts at the
log start).

Retention: with a short `offsets_retention_ms`, the offsets of a group without members
expire, and the group itself goes away.
"""

import time

import confluent_kafka

import clients as c

PARTITIONS = 2
OFFSETS_PARTITIONS = 8


def group_partition(group: str) -> int:
    """Java's String.hashCode, sign bit cleared, mod the partition count (as keel and Kafka)."""
    h = 0
    for ch in group.encode("utf-16-be").decode("utf-16-be"):
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % OFFSETS_PARTITIONS


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = c.confluent_admin(bootstrap)
    req = confluent_kafka.ConsumerGroupTopicPartitions(
        group, [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([req])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def test_snapshots_bound_the_log(broker_factory, topic):
    broker = broker_factory(extra_args=["--offsets-snapshot-bytes", "16384",
                                        "--offsets-topic-partitions", str(OFFSETS_PARTITIONS)])
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    group = f"g-{topic}"
    consumer = confluent_kafka.Consumer(c.confluent_conf(broker.bootstrap, group_id=group))
    try:
        for i in range(1, 1501):
            consumer.commit(offsets=[confluent_kafka.TopicPartition(topic, p, i * 10 + p)
                                     for p in range(PARTITIONS)], asynchronous=False)
        part = group_partition(group)
        deadline = time.monotonic() + 30
        low = 0
        while time.monotonic() < deadline:
            low, _high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition("__consumer_offsets", part), timeout=10)
            if low > 0:
                break
            time.sleep(0.1)
        assert low > 0, "no snapshot dropped the log prefix"
    finally:
        consumer.close()
    want = {p: 15000 + p for p in range(PARTITIONS)}
    assert committed(broker.bootstrap, group, topic) == want
    broker.restart()
    assert committed(broker.bootstrap, group, topic) == want


def test_offsets_of_empty_groups_expire(broker_factory, topic):
    broker = broker_factory(extra_args=["--offsets-retention-ms", "1000"])
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    group = f"g-{topic}"
    consumer = confluent_kafka.Consumer(c.confluent_conf(broker.bootstrap, group_id=group))
    try:
        consumer.commit(offsets=[confluent_kafka.TopicPartition(topic, p, 5)
                                 for p in range(PARTITIONS)], asynchronous=False)
    finally:
        consumer.close()
    assert committed(broker.bootstrap, group, topic) == {0: 5, 1: 5}
    admin = c.confluent_admin(broker.bootstrap)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = {gl.group_id for gl in admin.list_consumer_groups().result(timeout=30).valid}
        if group not in listed:
            break
        time.sleep(0.2)
    assert group not in listed, "the empty group outlived its offsets' retention"
    assert committed(broker.bootstrap, group, topic) == {0: -1001, 1: -1001}
    broker.restart()
    assert committed(broker.bootstrap, group, topic) == {0: -1001, 1: -1001}
