"""The assignors clients compute on keel's group protocol all work: range, roundrobin and
cooperative-sticky (incremental rebalancing, KIP-429), with confluent-kafka and
kafka-python. (KafkaJS's own roundrobin assignor runs in the other group tests.)

Three members split 6 partitions; the messages are consumed exactly once; then one member
leaves and the two survivors hold every partition and consume what follows. A static
member (`group.instance.id`) that is killed and comes back within its session gets its
partitions back.
"""

import pytest

import clients as c
import groups as g

PARTITIONS = 6
BATCH = 3000


def produce(broker, topic, start: int, ends: dict[int, int]) -> None:
    msgs = c.keyed_messages(BATCH, pad_bytes=16, start=start)
    for d in c.confluent_produce(broker.bootstrap, topic, msgs):
        ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_assignor(broker_factory, topic, client, assignor):
    broker = broker_factory(extra_args=g.BROKER_ARGS)
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    group = f"group-{topic}"
    members = [g.Member(client, broker.bootstrap, group, [topic], assignor=assignor)
               for _ in range(3)]
    ends = {p: 0 for p in range(PARTITIONS)}
    try:
        g.wait_balanced(members, PARTITIONS)
        produce(broker, topic, 0, ends)
        g.wait_all_committed(members, ends)
        positions = [(p, o) for p, o, _ in g.committed_records(members)]
        assert len(positions) == len(set(positions)) == BATCH

        members[0].stop()
        g.wait_balanced(members[1:], PARTITIONS)
        produce(broker, topic, BATCH, ends)
        g.wait_all_committed(members, ends)
        assert {s for _, _, s in g.committed_records(members)} == set(range(2 * BATCH))
    finally:
        for m in members:
            m.cleanup()


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_static_member_comes_back(broker_factory, topic, client):
    broker = broker_factory(extra_args=g.BROKER_ARGS)
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    group = f"group-{topic}"
    members = [g.Member(client, broker.bootstrap, group, [topic], instance_id=f"static-{i}",
                        session_ms=30_000) for i in range(2)]
    try:
        g.wait_balanced(members, PARTITIONS)
        before = members[0].snapshot()[0]
        members[0].kill()
        # Back with the same instance id, within its session: the old member id is fenced
        # and the new one takes its place.
        members[0] = g.Member(client, broker.bootstrap, group, [topic], instance_id="static-0",
                              session_ms=30_000)
        g.wait_balanced(members, PARTITIONS)
        assert sorted(members[0].snapshot()[0]) == sorted(before)
        ends = {p: 0 for p in range(PARTITIONS)}
        produce(broker, topic, 0, ends)
        g.wait_all_committed(members, ends)
    finally:
        for m in members:
            m.cleanup()
