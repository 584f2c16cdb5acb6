"""Small, explicit Kafka wire-protocol encoders and decoders for hand-built requests.

The client libraries never send malformed input, so the bad-input tests build their
requests here, byte by byte, and send them over a plain socket. Only what those tests
need is covered:

    request header v1 (non-flexible) and v2 (flexible, with an empty tagged-field section)
    ApiVersions v0 and v3        api key 18
    Produce v3                   api key 0, carrying a RecordBatch v2 or a legacy message set
    Fetch v4                     api key 1
    Metadata v1                  api key 3
    RecordBatch v2 (magic 2) with its CRC-32C, and a legacy magic 1 message with its CRC-32

Every multi-byte integer on the Kafka wire is big-endian. A frame is a 4-byte signed
length followed by that many bytes. `test_kafka_wire_encoders.py` checks these encoders
against kafka-python's own protocol classes and against hand-written byte layouts.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

try:  # The C implementation from PyPI; the table below is the fallback and the reference.
    import crc32c as _crc32c_lib
except ImportError:  # pragma: no cover - the venv installs it
    _crc32c_lib = None

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18

# Error codes the tests look for (Kafka's `Errors` table).
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
INVALID_RECORD = 87

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4


# --- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 -------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c_py(data: bytes) -> int:
    """Pure-Python CRC-32C, slow but obviously right; used to check the C version."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    if _crc32c_lib is not None:
        return _crc32c_lib.crc32c(data)
    return crc32c_py(data)


# --- primitive encoders ----------------------------------------------------------------

def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def uint32(v: int) -> bytes:
    return struct.pack(">I", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    """STRING / NULLABLE_STRING: int16 length, -1 for null."""
    if s is None:
        return int16(-1)
    b = s.encode()
    return int16(len(b)) + b


def kbytes(b: bytes | None) -> bytes:
    """BYTES / NULLABLE_BYTES: int32 length, -1 for null."""
    if b is None:
        return int32(-1)
    return int32(len(b)) + b


def array(items: list[bytes] | None) -> bytes:
    """ARRAY of already-encoded items: int32 count, -1 for null."""
    if items is None:
        return int32(-1)
    return int32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    """Unsigned LEB128, as used by compact (flexible) types."""
    assert v >= 0
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint/varlong, as used inside records."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


EMPTY_TAGGED_FIELDS = b"\x00"


# --- decoding --------------------------------------------------------------------------

class Reader:
    """A cursor over a response body. Raises `ValueError` when it would read past the end."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"read of {n} bytes at {self.pos} past end {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt: str) -> int:
        (v,) = struct.unpack(fmt, self._take(struct.calcsize(fmt)))
        return v

    def int8(self) -> int:
        return self._unpack(">b")

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def uint32(self) -> int:
        return self._unpack(">I")

    def int64(self) -> int:
        return self._unpack(">q")

    def boolean(self) -> bool:
        return self._take(1) != b"\x00"

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def bytes(self) -> bytes | None:
        n = self.int32()
        return None if n < 0 else self._take(n)

    def array(self, item) -> list | None:
        n = self.int32()
        return None if n < 0 else [item(self) for _ in range(n)]

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def varint(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def compact_array(self, item) -> list | None:
        n = self.uvarint()
        return None if n == 0 else [item(self) for _ in range(n - 1)]

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --- request header --------------------------------------------------------------------

def request_header(api_key: int, api_version: int, correlation_id: int,
                   client_id: str | None = "keel-wire-test", flexible: bool = False) -> bytes:
    """Request header v1 (`flexible=False`) or v2 (`flexible=True`, adds tagged fields)."""
    h = int16(api_key) + int16(api_version) + int32(correlation_id) + string(client_id)
    return h + EMPTY_TAGGED_FIELDS if flexible else h


def frame(payload: bytes) -> bytes:
    return int32(len(payload)) + payload


# --- ApiVersions -----------------------------------------------------------------------

def api_versions_request(version: int = 0) -> bytes:
    """ApiVersions body. v0-v2 are empty; v3 (flexible) names the client software."""
    if version < 3:
        return b""
    return (compact_string("keel-wire-test") + compact_string("0.1")
            + EMPTY_TAGGED_FIELDS)


@dataclass
class ApiVersionsResponse:
    error_code: int
    api_keys: dict[int, tuple[int, int]]  # api key -> (min version, max version)


def decode_api_versions_response(body: bytes, version: int) -> ApiVersionsResponse:
    """ApiVersions responses always use response header v0, even when the body is flexible.

    A broker answering an unsupported ApiVersions version replies with a v0 body, error 35,
    so callers decode that case with `version=0`.
    """
    r = Reader(body)
    error_code = r.int16()
    if version >= 3:
        keys = r.compact_array(lambda r: (r.int16(), r.int16(), r.int16(), r.tagged_fields()))
    else:
        keys = r.array(lambda r: (r.int16(), r.int16(), r.int16()))
    return ApiVersionsResponse(error_code, {k: (lo, hi) for k, lo, hi, *_ in keys or []})


# --- records ---------------------------------------------------------------------------

@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_delta: int = 0


def encode_record(offset_delta: int, rec: Record) -> bytes:
    body = int8(0) + varint(rec.timestamp_delta) + varint(offset_delta)
    for part in (rec.key, rec.value):
        body += varint(-1) if part is None else varint(len(part)) + part
    body += varint(len(rec.headers))
    for hkey, hval in rec.headers:
        hk = hkey.encode()
        body += varint(len(hk)) + hk
        body += varint(-1) if hval is None else varint(len(hval)) + hval
    return varint(len(body)) + body


# Byte offsets inside a RecordBatch v2 header.
BATCH_CRC_OFFSET = 17        # baseOffset(8) + batchLength(4) + leaderEpoch(4) + magic(1)
BATCH_ATTRIBUTES_OFFSET = 21  # the CRC covers from here to the end of the batch
BATCH_HEADER_BYTES = 61


def record_batch(records: list[Record], base_offset: int = 0, base_timestamp_ms: int | None = None,
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1,
                 attributes: int = 0, magic: int = 2, partition_leader_epoch: int = -1,
                 corrupt_crc: bool = False) -> bytes:
    """A RecordBatch v2 holding `records` uncompressed, with a correct CRC-32C.

    `corrupt_crc=True` flips the CRC's bits after computing it, so the batch is intact
    except for the checksum, which a broker must detect.
    """
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000)
    encoded = b"".join(encode_record(i, r) for i, r in enumerate(records))
    max_ts = base_timestamp_ms + max((r.timestamp_delta for r in records), default=0)
    after_crc = (int16(attributes) + int32(len(records) - 1) + int64(base_timestamp_ms)
                 + int64(max_ts) + int64(producer_id) + int16(producer_epoch)
                 + int32(base_sequence) + int32(len(records)) + encoded)
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xFFFFFFFF
    # batchLength counts the bytes after itself: leaderEpoch(4) + magic(1) + crc(4) + rest.
    batch_length = 4 + 1 + 4 + len(after_crc)
    return (int64(base_offset) + int32(batch_length) + int32(partition_leader_epoch) + int8(magic)
            + uint32(crc) + after_crc)


def legacy_message_set_v1(key: bytes | None, value: bytes | None,
                          timestamp_ms: int | None = None) -> bytes:
    """One magic-1 message (the pre-0.11 format) in a message set, with a correct CRC-32."""
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    after_crc = int8(1) + int8(0) + int64(timestamp_ms) + kbytes(key) + kbytes(value)
    message = uint32(zlib.crc32(after_crc)) + after_crc
    return int64(0) + int32(len(message)) + message


@dataclass
class DecodedBatch:
    base_offset: int
    magic: int
    crc: int
    crc_ok: bool
    attributes: int
    last_offset_delta: int
    producer_id: int
    base_sequence: int
    record_count: int
    records: list[tuple[int, bytes | None, bytes | None]]  # (offset, key, value); empty if compressed

    @property
    def compression(self) -> int:
        return self.attributes & 0x07


def decode_record_batches(data: bytes) -> list[DecodedBatch]:
    """Split a fetched records blob into RecordBatch v2 batches.

    A trailing partial batch (a broker may cut a fetch at max_bytes) is ignored, as
    clients do. Records are decoded only for uncompressed batches.
    """
    batches = []
    pos = 0
    while len(data) - pos >= BATCH_HEADER_BYTES:
        r = Reader(data[pos:])
        base_offset = r.int64()
        batch_length = r.int32()
        end = pos + 12 + batch_length
        if end > len(data):
            break
        r = Reader(data[pos:end])
        r.int64(), r.int32(), r.int32()  # base offset, batch length, leader epoch
        magic = r.int8()
        crc = r.uint32()
        crc_ok = crc32c(data[pos + BATCH_ATTRIBUTES_OFFSET:end]) == crc
        attributes = r.int16()
        last_offset_delta = r.int32()
        r.int64(), r.int64()  # base and max timestamps
        producer_id = r.int64()
        r.int16()
        base_sequence = r.int32()
        count = r.int32()
        records = []
        if attributes & 0x07 == COMPRESSION_NONE:
            for _ in range(count):
                r.varint()  # length
                r.int8()
                r.varint()  # timestamp delta
                offset_delta = r.varint()
                klen = r.varint()
                key = None if klen < 0 else r._take(klen)
                vlen = r.varint()
                value = None if vlen < 0 else r._take(vlen)
                for _ in range(r.varint()):
                    r._take(r.varint())
                    hlen = r.varint()
                    if hlen >= 0:
                        r._take(hlen)
                records.append((base_offset + offset_delta, key, value))
        batches.append(DecodedBatch(base_offset, magic, crc, crc_ok, attributes,
                                    last_offset_delta, producer_id, base_sequence, count, records))
        pos = end
    return batches


# --- Produce v3 ------------------------------------------------------------------------

def produce_request_v3(topic_partitions: dict[str, dict[int, bytes]], acks: int = -1,
                       timeout_ms: int = 10_000, transactional_id: str | None = None) -> bytes:
    """`topic_partitions` maps topic -> partition -> records blob (one or more batches)."""
    topics = [
        string(topic) + array([int32(p) + kbytes(blob) for p, blob in parts.items()])
        for topic, parts in topic_partitions.items()
    ]
    return string(transactional_id) + int16(acks) + int32(timeout_ms) + array(topics)


@dataclass
class ProducePartitionResponse:
    partition: int
    error_code: int
    base_offset: int
    log_append_time_ms: int


def decode_produce_response_v3(body: bytes) -> dict[str, dict[int, ProducePartitionResponse]]:
    r = Reader(body)
    out: dict[str, dict[int, ProducePartitionResponse]] = {}
    for _ in range(r.int32()):
        topic = r.string()
        parts = out.setdefault(topic, {})
        for _ in range(r.int32()):
            p = ProducePartitionResponse(r.int32(), r.int16(), r.int64(), r.int64())
            parts[p.partition] = p
    r.int32()  # throttle_time_ms
    return out


# --- Fetch v4 --------------------------------------------------------------------------

def fetch_request_v4(topic_partitions: dict[str, dict[int, int]], max_wait_ms: int = 0,
                     min_bytes: int = 1, max_bytes: int = 50 * 1024 * 1024,
                     partition_max_bytes: int = 1024 * 1024, isolation_level: int = 0) -> bytes:
    """`topic_partitions` maps topic -> partition -> fetch offset."""
    topics = [
        string(topic) + array([int32(p) + int64(off) + int32(partition_max_bytes)
                               for p, off in parts.items()])
        for topic, parts in topic_partitions.items()
    ]
    return (int32(-1) + int32(max_wait_ms) + int32(min_bytes) + int32(max_bytes)
            + int8(isolation_level) + array(topics))


@dataclass
class FetchPartitionResponse:
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    records: bytes | None


def decode_fetch_response_v4(body: bytes) -> dict[str, dict[int, FetchPartitionResponse]]:
    r = Reader(body)
    r.int32()  # throttle_time_ms
    out: dict[str, dict[int, FetchPartitionResponse]] = {}
    for _ in range(r.int32()):
        topic = r.string()
        parts = out.setdefault(topic, {})
        for _ in range(r.int32()):
            partition, error_code, hw, lso = r.int32(), r.int16(), r.int64(), r.int64()
            r.array(lambda r: (r.int64(), r.int64()))  # aborted transactions
            parts[partition] = FetchPartitionResponse(partition, error_code, hw, lso, r.bytes())
    return out


# --- Metadata v1 -----------------------------------------------------------------------

def metadata_request_v1(topics: list[str] | None) -> bytes:
    """`None` asks for all topics; an empty list asks for none (brokers only)."""
    return array(None if topics is None else [string(t) for t in topics])


@dataclass
class MetadataTopic:
    error_code: int
    name: str
    is_internal: bool
    partitions: dict[int, tuple[int, int]]  # partition -> (error code, leader id)


@dataclass
class MetadataResponse:
    brokers: list[tuple[int, str, int]]  # (node id, host, port)
    controller_id: int
    topics: dict[str, MetadataTopic]


def decode_metadata_response_v1(body: bytes) -> MetadataResponse:
    r = Reader(body)
    brokers = r.array(lambda r: (r.int32(), r.string(), r.int32(), r.string())[:3])
    controller_id = r.int32()
    topics = {}
    for _ in range(r.int32()):
        error_code, name, internal = r.int16(), r.string(), r.boolean()
        partitions = {}
        for _ in range(r.int32()):
            perr, pidx, leader = r.int16(), r.int32(), r.int32()
            r.array(Reader.int32)
            r.array(Reader.int32)
            partitions[pidx] = (perr, leader)
        topics[name] = MetadataTopic(error_code, name, internal, partitions)
    return MetadataResponse(brokers, controller_id, topics)


# --- a blocking connection -------------------------------------------------------------

class ConnectionClosed(Exception):
    """The broker closed (or reset) the connection before a whole frame arrived."""


class Connection:
    """One TCP connection speaking length-prefixed Kafka frames, one request at a time."""

    def __init__(self, bootstrap: str, timeout_s: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as e:
                raise ConnectionClosed(f"reset after {len(buf)} of {n} bytes") from e
            if not chunk:
                raise ConnectionClosed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (length,) = struct.unpack(">i", self.recv_exact(4))
        if length < 0:
            raise ValueError(f"negative response length {length}")
        return self.recv_exact(length)

    def send_request(self, api_key: int, api_version: int, body: bytes,
                     flexible_header: bool = False) -> int:
        self.correlation_id += 1
        header = request_header(api_key, api_version, self.correlation_id,
                                flexible=flexible_header)
        self.send_raw(frame(header + body))
        return self.correlation_id

    def recv_response(self, correlation_id: int, flexible_header: bool = False) -> bytes:
        """Read one response frame, check its correlation id, and return the body."""
        r = Reader(self.recv_frame())
        got = r.int32()
        if got != correlation_id:
            raise ValueError(f"correlation id {got}, expected {correlation_id}")
        if flexible_header:
            r.tagged_fields()
        return r.data[r.pos:]

    def request(self, api_key: int, api_version: int, body: bytes) -> bytes:
        """Send one request and return its response body.

        Only the versions this module encodes are handled: all use header v1 and a
        response header v0, except ApiVersions v3, which uses request header v2 and
        (by Kafka's special rule) still a response header v0.
        """
        flexible = api_key == API_API_VERSIONS and api_version >= 3
        cid = self.send_request(api_key, api_version, body, flexible_header=flexible)
        return self.recv_response(cid)

    def wait_closed(self, timeout_s: float = 10.0) -> bool:
        """Read and discard until the peer closes. True if it closed within the timeout."""
        self.sock.settimeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    # Convenience wrappers for the four APIs.

    def api_versions(self, version: int = 0) -> ApiVersionsResponse:
        return decode_api_versions_response(
            self.request(API_API_VERSIONS, version, api_versions_request(version)), version)

    def metadata(self, topics: list[str] | None) -> MetadataResponse:
        return decode_metadata_response_v1(
            self.request(API_METADATA, 1, metadata_request_v1(topics)))

    def produce(self, topic: str, partition: int, records_blob: bytes, acks: int = -1):
        body = produce_request_v3({topic: {partition: records_blob}}, acks=acks)
        return decode_produce_response_v3(self.request(API_PRODUCE, 3, body))[topic][partition]

    def fetch(self, topic: str, partition: int, offset: int, max_wait_ms: int = 0,
              min_bytes: int = 1) -> FetchPartitionResponse:
        body = fetch_request_v4({topic: {partition: offset}}, max_wait_ms=max_wait_ms,
                                min_bytes=min_bytes)
        return decode_fetch_response_v4(self.request(API_FETCH, 4, body))[topic][partition]


def read_all_batches(bootstrap: str, topic: str, partition: int,
                     timeout_s: float = 30) -> tuple[list[DecodedBatch], int]:
    """Fetch a partition from offset 0 to its high watermark; return (batches, watermark)."""
    batches: list[DecodedBatch] = []
    offset = 0
    deadline = time.monotonic() + timeout_s
    with Connection(bootstrap) as conn:
        while True:
            resp = conn.fetch(topic, partition, offset)
            if resp.error_code != NONE:
                raise AssertionError(f"fetch {topic}/{partition}@{offset}: error {resp.error_code}")
            got = [b for b in decode_record_batches(resp.records or b"")
                   if b.base_offset + b.last_offset_delta >= offset]
            batches += got
            if got:
                offset = got[-1].base_offset + got[-1].last_offset_delta + 1
            if offset >= resp.high_watermark:
                return batches, resp.high_watermark
            if time.monotonic() > deadline:
                raise AssertionError(f"fetch stuck at {offset} below watermark {resp.high_watermark}")
