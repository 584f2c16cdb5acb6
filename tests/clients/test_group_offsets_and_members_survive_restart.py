"""A broker restart between commits: committed offsets come back from `__consumer_offsets`,
and so does the group's membership (generation, members, assignment), so that members
heartbeating with their old member id and generation carry on.

Two members consume and commit; the broker restarts (clean stop and start on the same data
dir). Right after the restart, before any member commits again, OffsetFetch gives the
offsets committed before it. DescribeGroups shows the group with the same member ids,
Stable. Then more messages are consumed: none is skipped.

KafkaJS gives up on its consumer when its only broker refuses a connection, which can happen
in the ~0.1 s the broker is down: it leaves (if it can) and starts a new consumer, a new
member. The test sees that in the client's log (`Member.client_restarts`) and then checks
the other member's id and the restored offsets, not that client's old id.
"""

import confluent_kafka
import pytest

import clients as c
import groups as g

PARTITIONS = 4
BATCH = 2000


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = c.confluent_admin(bootstrap)
    req = confluent_kafka.ConsumerGroupTopicPartitions(
        group, [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([req])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def described(bootstrap: str, group: str) -> tuple[str, set[str]]:
    admin = c.confluent_admin(bootstrap)
    d = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return d.state.name, {m.member_id for m in d.members}


def produce(broker, topic, start: int, ends: dict[int, int]) -> None:
    msgs = c.keyed_messages(BATCH, pad_bytes=16, start=start)
    for d in c.confluent_produce(broker.bootstrap, topic, msgs):
        ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)


def test_committed_offsets_survive_restart(broker_factory, topic):
    """Offsets alone: a group that only commits (no members) over a restart."""
    broker = broker_factory(extra_args=g.BROKER_ARGS)
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    group = f"group-{topic}"
    consumer = confluent_kafka.Consumer(c.confluent_conf(broker.bootstrap, group_id=group))
    try:
        offsets = [confluent_kafka.TopicPartition(topic, p, 10 * p + 1, metadata=f"m{p}")
                   for p in range(PARTITIONS)]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()
    broker.restart()
    assert committed_offsets(broker.bootstrap, group, topic) == {
        p: 10 * p + 1 for p in range(PARTITIONS)}


def kept_ids(members: list[g.Member], ids: set[str]) -> set[str]:
    """The ids that must still be in the group: all of them, unless a client started a new
    consumer of its own accord (KafkaJS does when its only broker refuses a connection for a
    moment, as during the restart); that client's old id may rightly be gone."""
    restarted = [m for m in members if m.client_restarts]
    if any(not m.member_ids for m in restarted):
        return set()  # a client that restarted without saying which member it was
    return ids - {i for m in restarted for i in m.member_ids}


@pytest.mark.parametrize("client", g.GROUP_CLIENTS)
def test_group_survives_restart(broker_factory, topic, client):
    broker = broker_factory(extra_args=g.BROKER_ARGS)
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    group = f"group-{topic}"
    # Sessions long enough that the restart itself does not expire them.
    members = [g.Member(client, broker.bootstrap, group, [topic], session_ms=20_000)
               for _ in range(2)]
    ends = {p: 0 for p in range(PARTITIONS)}

    def why() -> str:
        return "\n".join(m.describe() for m in members)

    try:
        g.wait_balanced(members, PARTITIONS)
        produce(broker, topic, 0, ends)
        g.wait_all_committed(members, ends)
        state, ids = described(broker.bootstrap, group)
        assert state == "STABLE" and len(ids) == 2

        broker.restart()
        assert committed_offsets(broker.bootstrap, group, topic) == ends
        state, after = described(broker.bootstrap, group)
        if not any(m.client_restarts for m in members):
            assert (state, after) == ("STABLE", ids), \
                "the group's members were not restored\n" + why()
        else:
            # A client that started over joins as a new member and so starts a rebalance;
            # the others' ids were restored all the same.
            assert kept_ids(members, ids) <= after, \
                "the group's members were not restored\n" + why()

        produce(broker, topic, BATCH, ends)
        g.wait_all_committed(members, ends)
        seqs = {s for _, _, s in g.committed_records(members)}
        assert seqs == set(range(2 * BATCH)), "a record was skipped"
        # The members kept their ids through the restart: none but a client that started a
        # new consumer of its own had to join again.
        state, final = described(broker.bootstrap, group)
        assert state == "STABLE" and len(final) == 2, why()
        assert kept_ids(members, ids) <= final, why()
        if not any(m.client_restarts for m in members):
            assert final == ids, why()
        assert committed_offsets(broker.bootstrap, group, topic) == ends
    finally:
        for m in members:
            m.cleanup()
