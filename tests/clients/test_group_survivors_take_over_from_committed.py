"""Members come and go: one leaves cleanly (LeaveGroup), another is killed (SIGKILL, no
LeaveGroup). The survivors take over their partitions (for the killed one, after its
session timeout) and continue from the committed offsets: every record is processed at
least once, none is skipped, and the group's committed offsets end at the high watermarks.
"""

import pytest

import clients as c
import groups as g

PARTITIONS = 8
BATCH = 5000


def produce(broker, topic, start: int, ends: dict[int, int]) -> None:
    msgs = c.keyed_messages(BATCH, pad_bytes=16, start=start)
    for d in c.confluent_produce(broker.bootstrap, topic, msgs):
        ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    import confluent_kafka
    admin = c.confluent_admin(bootstrap)
    req = confluent_kafka.ConsumerGroupTopicPartitions(
        group, [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([req])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


@pytest.mark.parametrize("client", g.GROUP_CLIENTS)
def test_leave_and_kill_survivors_continue(broker_factory, topic, client):
    broker = broker_factory(extra_args=g.BROKER_ARGS)
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    group = f"group-{topic}"
    members = [g.Member(client, broker.bootstrap, group, [topic]) for _ in range(3)]
    ends = {p: 0 for p in range(PARTITIONS)}
    try:
        g.wait_balanced(members, PARTITIONS)
        produce(broker, topic, 0, ends)
        g.wait_all_committed(members, ends)

        members[0].stop()
        assert members[0].closed, members[0].describe()
        g.wait_balanced(members[1:], PARTITIONS)
        produce(broker, topic, BATCH, ends)
        g.wait_all_committed(members, ends)

        members[1].kill()
        # The killed member's partitions move after its session timeout.
        g.wait_balanced(members[2:], PARTITIONS)
        produce(broker, topic, 2 * BATCH, ends)
        g.wait_all_committed(members, ends)

        seqs = {s for _, _, s in g.committed_records(members)}
        assert seqs == set(range(3 * BATCH)), "a record was skipped"
        assert committed_offsets(broker.bootstrap, group, topic) == ends
    finally:
        for m in members:
            m.cleanup()
