"""The hand-built request encoders in kafka_wire.py produce the bytes Kafka specifies.

These need no broker: they check kafka_wire against kafka-python's protocol classes (an
independent implementation of the same schemas) and against byte layouts written out by
hand, so that a bad-input test fails because of the broker, never because of its encoder.
"""

import random

import pytest
from kafka.protocol.old.api_versions import ApiVersionsRequest
from kafka.protocol.old.fetch import FetchRequest
from kafka.protocol.old.metadata import MetadataRequest
from kafka.protocol.old.produce import ProduceRequest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatch, LegacyRecordBatchBuilder

import kafka_wire as kw


def test_crc32c_known_vectors():
    # RFC 3720 B.4 test vectors and the usual "123456789" check value.
    assert kw.crc32c_py(b"123456789") == 0xE3069283
    assert kw.crc32c_py(bytes(32)) == 0x8A9136AA
    assert kw.crc32c_py(b"\xff" * 32) == 0x62A8AB43
    assert kw.crc32c_py(bytes(range(32))) == 0x46DD794E
    rng = random.Random(7)
    for n in (0, 1, 15, 1000):
        data = rng.randbytes(n)
        assert kw.crc32c(data) == kw.crc32c_py(data)


def test_varints_match_the_record_spec():
    assert kw.varint(0) == b"\x00"
    assert kw.varint(-1) == b"\x01"
    assert kw.varint(1) == b"\x02"
    assert kw.varint(63) == b"\x7e"
    assert kw.varint(-64) == b"\x7f"
    assert kw.varint(64) == b"\x80\x01"
    assert kw.varint(300) == b"\xd8\x04"
    for v in (0, 1, -1, 127, -128, 2**31 - 1, -(2**31), 2**62):
        assert kw.Reader(kw.varint(v)).varint() == v


def test_request_header_v1_and_v2_layout():
    h1 = kw.request_header(18, 3, 7, client_id="ab")
    assert h1 == b"\x00\x12" b"\x00\x03" b"\x00\x00\x00\x07" b"\x00\x02ab"
    assert kw.request_header(18, 3, 7, client_id="ab", flexible=True) == h1 + b"\x00"
    assert kw.request_header(0, 3, 1, client_id=None) == b"\x00\x00\x00\x03\x00\x00\x00\x01\xff\xff"


def test_api_versions_requests_match_kafka_python():
    assert kw.api_versions_request(0) == ApiVersionsRequest[0]().encode() == b""
    ours = kw.api_versions_request(3)
    theirs = ApiVersionsRequest[3](client_software_name="keel-wire-test",
                                   client_software_version="0.1").encode()
    assert ours == theirs


def test_api_versions_response_decodes_v0_and_v3():
    v0 = kw.int16(0) + kw.array([kw.int16(0) + kw.int16(3) + kw.int16(9),
                                 kw.int16(18) + kw.int16(0) + kw.int16(3)])
    assert kw.decode_api_versions_response(v0, 0).api_keys == {0: (3, 9), 18: (0, 3)}
    v3 = (kw.int16(0) + kw.uvarint(2) + kw.int16(1) + kw.int16(4) + kw.int16(12) + b"\x00"
          + kw.int32(0) + b"\x00")
    resp = kw.decode_api_versions_response(v3, 3)
    assert resp.error_code == 0 and resp.api_keys == {1: (4, 12)}


def test_record_batch_v2_is_read_back_by_kafka_python():
    records = [kw.Record(b"k0", b"v0"), kw.Record(None, b"v1", [("h", b"x")], 5),
               kw.Record(b"k2", None)]
    blob = kw.record_batch(records, base_timestamp_ms=1_700_000_000_000,
                           producer_id=42, producer_epoch=1, base_sequence=10)
    batch = DefaultRecordBatch(blob)
    assert batch.validate_crc()
    assert batch.magic == 2 and batch.producer_id == 42 and batch.base_sequence == 10
    assert batch.last_offset_delta == 2
    assert batch.max_timestamp == 1_700_000_000_005
    got = [(r.offset, r.key, r.value, r.headers) for r in batch]
    assert got == [(0, b"k0", b"v0", []), (1, None, b"v1", [("h", b"x")]), (2, b"k2", None, [])]


def test_record_batch_v2_matches_kafka_python_bytes():
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    ts = 1_700_000_000_000
    builder.append(0, timestamp=ts, key=b"key", value=b"value", headers=[])
    builder.append(1, timestamp=ts + 3, key=None, value=b"v2", headers=[("a", b"b")])
    theirs = bytes(builder.build())
    ours = kw.record_batch([kw.Record(b"key", b"value"), kw.Record(None, b"v2", [("a", b"b")], 3)],
                           base_timestamp_ms=ts, partition_leader_epoch=0)
    assert ours == theirs


def test_corrupt_crc_batch_differs_only_in_the_crc():
    records = [kw.Record(b"k", b"v")]
    good = kw.record_batch(records, base_timestamp_ms=1)
    bad = kw.record_batch(records, base_timestamp_ms=1, corrupt_crc=True)
    assert DefaultRecordBatch(good).validate_crc()
    assert not DefaultRecordBatch(bad).validate_crc()
    crc = slice(kw.BATCH_CRC_OFFSET, kw.BATCH_CRC_OFFSET + 4)
    assert good[:crc.start] == bad[:crc.start] and good[crc.stop:] == bad[crc.stop:]


def test_decode_record_batches_reads_our_batches_and_skips_a_partial_tail():
    a = kw.record_batch([kw.Record(b"a", b"1"), kw.Record(b"b", b"2")], base_offset=10)
    b = kw.record_batch([kw.Record(b"c", b"3")], base_offset=12)
    batches = kw.decode_record_batches(a + b + b[:30])
    assert [bt.records for bt in batches] == [[(10, b"a", b"1"), (11, b"b", b"2")],
                                              [(12, b"c", b"3")]]
    assert all(bt.crc_ok and bt.magic == 2 and bt.compression == 0 for bt in batches)


def test_legacy_magic1_message_matches_kafka_python():
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=1_700_000_000_000, key=b"k", value=b"v")
    theirs = bytes(builder.build())
    ours = kw.legacy_message_set_v1(b"k", b"v", timestamp_ms=1_700_000_000_000)
    assert ours == theirs
    msgs = list(LegacyRecordBatch(ours, 1))
    assert msgs[0].validate_crc()


def test_produce_v3_matches_kafka_python():
    blob = kw.record_batch([kw.Record(b"k", b"v")], base_timestamp_ms=1)
    ours = kw.produce_request_v3({"t": {0: blob, 3: blob}}, acks=-1, timeout_ms=1234)
    theirs = ProduceRequest[3](transactional_id=None, acks=-1, timeout_ms=1234,
                               topic_data=[("t", [(0, blob), (3, blob)])]).encode()
    assert ours == theirs


def test_fetch_v4_matches_kafka_python():
    ours = kw.fetch_request_v4({"t": {1: 5}}, max_wait_ms=10_000, min_bytes=1,
                               max_bytes=1000, partition_max_bytes=100)
    theirs = FetchRequest[4](replica_id=-1, max_wait_ms=10_000, min_bytes=1, max_bytes=1000,
                             isolation_level=0, topics=[("t", [(1, 5, 100)])]).encode()
    assert ours == theirs


@pytest.mark.parametrize("topics", [None, [], ["a", "bb"]])
def test_metadata_v1_matches_kafka_python(topics):
    assert kw.metadata_request_v1(topics) == MetadataRequest[1](topics=topics).encode()


def test_framed_request_layout():
    framed = kw.frame(kw.request_header(18, 0, 1, client_id="c") + kw.api_versions_request(0))
    assert framed == b"\x00\x00\x00\x0b" b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x01c"


def test_response_decoders_on_hand_built_bodies():
    produce = (kw.array([kw.string("t") + kw.array([kw.int32(2) + kw.int16(2) + kw.int64(-1)
                                                      + kw.int64(-1)])]) + kw.int32(0))
    p = kw.decode_produce_response_v3(produce)["t"][2]
    assert (p.error_code, p.base_offset) == (kw.CORRUPT_MESSAGE, -1)

    blob = kw.record_batch([kw.Record(b"k", b"v")], base_offset=4)
    fetch = kw.int32(0) + kw.array([kw.string("t") + kw.array([
        kw.int32(0) + kw.int16(0) + kw.int64(5) + kw.int64(5) + kw.array(None) + kw.kbytes(blob)])])
    f = kw.decode_fetch_response_v4(fetch)["t"][0]
    assert f.high_watermark == 5 and kw.decode_record_batches(f.records)[0].records == [
        (4, b"k", b"v")]

    meta = (kw.array([kw.int32(1) + kw.string("127.0.0.1") + kw.int32(9092) + kw.string(None)])
            + kw.int32(1)
            + kw.array([kw.int16(0) + kw.string("t") + b"\x00" + kw.array([
                kw.int16(0) + kw.int32(0) + kw.int32(1) + kw.array([kw.int32(1)])
                + kw.array([kw.int32(1)])])]))
    m = kw.decode_metadata_response_v1(meta)
    assert m.brokers == [(1, "127.0.0.1", 9092)] and m.topics["t"].partitions == {0: (0, 1)}
