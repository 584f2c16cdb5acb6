"""The group admin APIs through each client's admin interface: list groups, describe a
group (state, members, assignment), list and alter committed offsets, delete offsets
(OffsetDelete) and delete groups (DeleteGroups; NON_EMPTY_GROUP while a member is in it).

Each test has one group with a live member (a confluent-kafka consumer process, see
groups.py) and one "offsets-only" group whose offsets were committed without membership.
"""

import confluent_kafka
import kafka
import pytest
from kafka.structs import OffsetAndMetadata

import clients as c
import groups as g

PARTITIONS = 3


@pytest.fixture
def setup(broker_factory, topic):
    broker = broker_factory(extra_args=g.BROKER_ARGS)
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    active, idle = f"active-{topic}", f"idle-{topic}"
    member = g.Member("confluent", broker.bootstrap, active, [topic])
    consumer = confluent_kafka.Consumer(c.confluent_conf(broker.bootstrap, group_id=idle))
    try:
        consumer.commit(offsets=[confluent_kafka.TopicPartition(topic, p, 5 + p)
                                 for p in range(PARTITIONS)], asynchronous=False)
    finally:
        consumer.close()
    try:
        g.wait_balanced([member], PARTITIONS)
        yield broker, topic, active, idle
    finally:
        member.cleanup()


def test_confluent_admin(setup):
    broker, topic, active, idle = setup
    admin = c.confluent_admin(broker.bootstrap)
    listed = admin.list_consumer_groups().result(timeout=30)
    states = {gl.group_id: gl.state.name for gl in listed.valid}
    assert states[active] == "STABLE" and states[idle] == "EMPTY", states

    d = admin.describe_consumer_groups([active])[active].result(timeout=30)
    assert d.state.name == "STABLE" and d.partition_assignor == "range"
    assert len(d.members) == 1
    assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == \
        list(range(PARTITIONS))

    tps = [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)]
    req = confluent_kafka.ConsumerGroupTopicPartitions(idle, tps)
    got = admin.list_consumer_group_offsets([req])[idle].result(timeout=30)
    assert {tp.partition: tp.offset for tp in got.topic_partitions} == {0: 5, 1: 6, 2: 7}

    new = confluent_kafka.ConsumerGroupTopicPartitions(
        idle, [confluent_kafka.TopicPartition(topic, p, 100 + p) for p in range(PARTITIONS)])
    admin.alter_consumer_group_offsets([new])[idle].result(timeout=30)
    got = admin.list_consumer_group_offsets([req])[idle].result(timeout=30)
    assert {tp.partition: tp.offset for tp in got.topic_partitions} == {0: 100, 1: 101, 2: 102}

    with pytest.raises(confluent_kafka.KafkaException) as e:
        admin.delete_consumer_groups([active])[active].result(timeout=30)
    assert e.value.args[0].code() == confluent_kafka.KafkaError.NON_EMPTY_GROUP

    admin.delete_consumer_groups([idle])[idle].result(timeout=30)
    listed = admin.list_consumer_groups().result(timeout=30)
    assert idle not in {gl.group_id for gl in listed.valid}
    got = admin.list_consumer_group_offsets([req])[idle].result(timeout=30)
    assert all(tp.offset < 0 for tp in got.topic_partitions), "offsets outlived their group"
    with pytest.raises(confluent_kafka.KafkaException) as e:
        admin.delete_consumer_groups([idle])[idle].result(timeout=30)
    assert e.value.args[0].code() == confluent_kafka.KafkaError.GROUP_ID_NOT_FOUND


def test_kafka_python_admin(setup):
    broker, topic, active, idle = setup
    admin = c.kafka_python_admin(broker.bootstrap)
    try:
        listed = {gl["group_id"]: gl for gl in admin.list_groups()}
        assert active in listed and idle in listed, listed
        described = admin.describe_groups([active])[active]
        assert described["group_state"] == "Stable", described
        assert len(described["members"]) == 1

        offsets = admin.list_group_offsets([idle, active])
        assert {tp.partition: om.offset for tp, om in offsets[idle].items()} == \
            {0: 5, 1: 6, 2: 7}

        tp0 = kafka.TopicPartition(topic, 0)
        errors = admin.alter_group_offsets(idle, {tp0: OffsetAndMetadata(42, "", -1)})
        assert all(e is kafka.errors.NoError for e in errors.values()), errors
        assert admin.list_group_offsets({idle: [tp0]})[idle][tp0].offset == 42

        # OffsetDelete: refused for a topic the live member subscribes to, done for idle.
        busy = admin.delete_group_offsets(active, [tp0])
        assert busy[tp0] is kafka.errors.GroupSubscribedToTopicError, busy
        done = admin.delete_group_offsets(idle, [tp0])
        assert done[tp0] is kafka.errors.NoError, done
        left = admin.list_group_offsets({idle: None})[idle]
        assert sorted(tp.partition for tp in left) == [1, 2]

        result = dict(admin.delete_groups([idle, active]))
        assert result == {idle: "OK", active: "NonEmptyGroupError"}, result
    finally:
        admin.close()


def test_kafkajs_admin(setup):
    broker, topic, active, idle = setup
    out = c.kafkajs("admin", bootstrap=broker.bootstrap, ops=[
        ["listGroups"],
        ["describeGroups", [active]],
        ["fetchOffsets", {"groupId": idle, "topics": [topic]}],
        ["setOffsets", {"groupId": idle, "topic": topic,
                        "partitions": [{"partition": 1, "offset": "77"}]}],
        ["fetchOffsets", {"groupId": idle, "topics": [topic]}],
        ["deleteGroups", [idle]],
        ["listGroups"],
    ])["results"]
    ids = {gr["groupId"] for gr in out[0]["groups"]}
    assert {active, idle} <= ids
    (group,) = out[1]["groups"]
    assert group["state"] == "Stable" and len(group["members"]) == 1
    before = {p["partition"]: int(p["offset"]) for p in out[2][0]["partitions"]}
    assert before == {0: 5, 1: 6, 2: 7}
    after = {p["partition"]: int(p["offset"]) for p in out[4][0]["partitions"]}
    assert after == {0: 5, 1: 77, 2: 7}
    assert out[5][0]["errorCode"] == 0
    assert idle not in {gr["groupId"] for gr in out[6]["groups"]}
