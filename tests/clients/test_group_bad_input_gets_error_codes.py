"""Bad group requests get Kafka's error codes and the coordinator keeps serving everyone.

Hand-built JoinGroup v5, SyncGroup v3, Heartbeat v3 and OffsetCommit v7 over a raw socket
(encoders below, on kafka_wire.py's primitives), against a broker with small group bounds:

    Heartbeat / OffsetCommit of an unknown member          -> UNKNOWN_MEMBER_ID (25)
    Heartbeat / OffsetCommit of a stale generation         -> ILLEGAL_GENERATION (22)
    OffsetCommit metadata past offset_metadata_bytes_max   -> OFFSET_METADATA_TOO_LARGE (12)
    JoinGroup metadata past group_metadata_bytes_max       -> MESSAGE_TOO_LARGE (10)
    JoinGroup session timeout below the minimum            -> INVALID_SESSION_TIMEOUT (26)
    JoinGroup of another protocol type                     -> INCONSISTENT_GROUP_PROTOCOL (23)
    JoinGroup past group_members_max                       -> GROUP_MAX_SIZE_REACHED (81)
    JoinGroup v4+ without a member id                      -> MEMBER_ID_REQUIRED (79), an id
    Produce to / DeleteTopics of __consumer_offsets        -> INVALID_TOPIC_EXCEPTION (17)

Afterwards the raw member still heartbeats fine and a real client's group works.
"""

import confluent_kafka
import pytest

import clients as c
import groups as g
import kafka_wire as kw

JOIN, SYNC, HEARTBEAT, COMMIT = 11, 14, 12, 8
NONE, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION = 0, 25, 22
OFFSET_METADATA_TOO_LARGE, MESSAGE_TOO_LARGE, INVALID_SESSION_TIMEOUT = 12, 10, 26
INCONSISTENT_GROUP_PROTOCOL, GROUP_MAX_SIZE_REACHED, MEMBER_ID_REQUIRED = 23, 81, 79

METADATA_MAX = 1024
BROKER_ARGS = g.BROKER_ARGS + ["--group-metadata-bytes-max", str(METADATA_MAX),
                               "--group-members-max", "2",
                               "--offset-metadata-bytes-max", "100"]


def join(conn, group, member="", metadata=b"m", session_ms=10_000, protocol_type="consumer"):
    body = (kw.string(group) + kw.int32(session_ms) + kw.int32(10_000) + kw.string(member)
            + kw.string(None) + kw.string(protocol_type)
            + kw.array([kw.string("range") + kw.kbytes(metadata)]))
    r = kw.Reader(conn.request(JOIN, 5, body))
    r.int32()
    error, generation = r.int16(), r.int32()
    _protocol, leader, member_id = r.string(), r.string(), r.string()
    r.array(lambda x: (x.string(), x.string(), x.bytes()))
    return error, generation, leader, member_id


def sync(conn, group, generation, member, assignment=b"a"):
    body = (kw.string(group) + kw.int32(generation) + kw.string(member) + kw.string(None)
            + kw.array([kw.string(member) + kw.kbytes(assignment)]))
    r = kw.Reader(conn.request(SYNC, 3, body))
    r.int32()
    return r.int16(), r.bytes()


def heartbeat(conn, group, generation, member):
    body = kw.string(group) + kw.int32(generation) + kw.string(member) + kw.string(None)
    r = kw.Reader(conn.request(HEARTBEAT, 3, body))
    r.int32()
    return r.int16()


def commit(conn, group, generation, member, topic, offset=1, metadata=""):
    part = kw.int32(0) + kw.int64(offset) + kw.int32(-1) + kw.string(metadata)
    body = (kw.string(group) + kw.int32(generation) + kw.string(member) + kw.string(None)
            + kw.array([kw.string(topic) + kw.array([part])]))
    r = kw.Reader(conn.request(COMMIT, 7, body))
    r.int32()
    topics = r.array(lambda x: (x.string(), x.array(lambda y: (y.int32(), y.int16()))))
    return topics[0][1][0][1]


def joined_member(conn, group):
    """A member through the whole v5 dance: MEMBER_ID_REQUIRED, join, sync."""
    error, _, _, member = join(conn, group)
    assert error == MEMBER_ID_REQUIRED and member, (error, member)
    error, generation, leader, member_id = join(conn, group, member)
    assert (error, leader, member_id) == (NONE, member, member)
    assert sync(conn, group, generation, member) == (NONE, b"a")
    return member, generation


def test_bad_group_requests_get_error_codes(broker_factory, topic):
    broker = broker_factory(extra_args=BROKER_ARGS)
    group = f"raw-{topic}"
    with kw.Connection(broker.bootstrap) as conn:
        assert conn.metadata([topic]).topics[topic].error_code == NONE  # auto-created
        member, gen = joined_member(conn, group)

        assert heartbeat(conn, group, gen, "bogus") == UNKNOWN_MEMBER_ID
        assert heartbeat(conn, group, gen + 1, member) == ILLEGAL_GENERATION
        assert commit(conn, group, gen, "bogus", topic) == UNKNOWN_MEMBER_ID
        assert commit(conn, group, gen - 1, member, topic) == ILLEGAL_GENERATION
        assert commit(conn, group, gen, member, topic, metadata="x" * 101) == \
            OFFSET_METADATA_TOO_LARGE
        assert commit(conn, group, gen, member, topic, offset=7) == NONE

        other = f"other-{topic}"
        assert join(conn, other, metadata=b"x" * (METADATA_MAX + 1))[0] == MESSAGE_TOO_LARGE
        assert join(conn, other, session_ms=10)[0] == INVALID_SESSION_TIMEOUT
        assert join(conn, group, member, protocol_type="connect")[0] == \
            INCONSISTENT_GROUP_PROTOCOL
        # The group holds one member; one more id is handed out, the next is refused.
        assert join(conn, group)[0] == MEMBER_ID_REQUIRED
        assert join(conn, group)[0] == GROUP_MAX_SIZE_REACHED

        assert heartbeat(conn, group, gen, member) == NONE, "the member was disturbed"

        # Only the coordinator writes to its topic, and it cannot be deleted.
        batch = kw.record_batch([kw.Record(b"k", b"v")])
        assert conn.produce("__consumer_offsets", 0, batch).error_code == \
            kw.INVALID_TOPIC_EXCEPTION
    admin = c.confluent_admin(broker.bootstrap)
    with pytest.raises(confluent_kafka.KafkaException) as e:
        admin.delete_topics(["__consumer_offsets"])["__consumer_offsets"].result(timeout=30)
    assert e.value.args[0].code() == confluent_kafka.KafkaError.TOPIC_EXCEPTION

    # The coordinator still serves a real client's group.
    m = g.Member("confluent", broker.bootstrap, f"real-{topic}", [topic])
    try:
        g.wait_balanced([m], 1)
    finally:
        m.cleanup()
