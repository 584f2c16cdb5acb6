"""Three members of one group share an 8-partition topic, each partition with exactly one
of them, and consume 100,000 messages exactly once between them when each commits after
processing. Once for each client with group support (confluent-kafka, kafka-python,
KafkaJS), each member a separate process of that client.

The messages are produced only once the group is balanced, so no rebalance happens while
they are consumed: every record is then processed and committed exactly once.
"""

import pytest

import clients as c
import groups as g

PARTITIONS = 8
COUNT = 100_000


def ends_of(delivered: list[c.Msg]) -> dict[int, int]:
    ends = {p: 0 for p in range(PARTITIONS)}
    for d in delivered:
        ends[d.partition] = max(ends[d.partition], d.offset + 1)
    return ends


@pytest.mark.parametrize("client", g.GROUP_CLIENTS)
def test_three_members_consume_exactly_once(broker_factory, topic, client):
    broker = broker_factory(extra_args=g.BROKER_ARGS)
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    members = [g.Member(client, broker.bootstrap, f"group-{topic}", [topic]) for _ in range(3)]
    try:
        g.wait_balanced(members, PARTITIONS)
        assignments = {tuple(m.snapshot()[0]) for m in members}
        produced = c.keyed_messages(COUNT, pad_bytes=16)
        ends = ends_of(c.confluent_produce(broker.bootstrap, topic, produced))
        assert sum(ends.values()) == COUNT
        g.wait_all_committed(members, ends, timeout_s=120)

        records = g.committed_records(members)
        positions = [(p, o) for p, o, _ in records]
        assert len(positions) == COUNT, f"{len(positions) - COUNT} records processed twice"
        assert len(set(positions)) == COUNT
        assert sorted(s for _, _, s in records) == list(range(COUNT))
        # Each member consumed exactly the partitions it was assigned.
        for m in members:
            mine = {p for p, _, _ in m.committed}
            assert mine <= set(m.snapshot()[0]), m.describe()
        assert {tuple(m.snapshot()[0]) for m in members} == assignments, "a rebalance happened"
        assert not any(m.commit_failures for m in members)
    finally:
        for m in members:
            m.cleanup()
