"""Hostile clients over real sockets: the broker's memory stays bounded, every limit answers
in a defined way, and a normal client is served throughout.

The broker runs with small, explicit limits (LIMITS below). The memory bound checked is
RSS_BOUND_BYTES = 256 MiB of resident memory (VmRSS in /proc/<pid>/status, sampled every
20 ms for the whole test). It is derived from the limits:
    batch cache 16 MiB + request memory 2 shards x 32 MiB + response memory 2 shards x 8 MiB
    + ~20 MiB of program = 116 MiB, and as much again of slack for the allocator and for
    the transient read buffers a fetch drops before it answers. An idle keel is about 9 MiB.
Clients that never read their answers get a tighter bound, NEVER_READ_BOUND_BYTES: the
answers they hold are charged to the response memory, so their number does not matter.

The attacks, one per test:
- slow clients sending a request a byte at a time, and half-open ones (a few bytes of a
  frame, then silence): closed by connection_idle_ms_max, others served meanwhile;
- clients that pipeline fetches and never read the answers: their answers stay within
  response_memory_bytes_max, they are disconnected once an answer waits for them longer than
  connection_idle_ms_max, and others are served meanwhile;
- a flood of connections past connections_max: the extra ones are closed at once;
- fetches asking for 2 GiB: the answer is capped at fetch_bytes_max (plus one whole batch);
- thousands of topics or partitions in one Metadata, Fetch or Produce request: each gets
  its error code; with auto-create, topics past topics_max get an error, not a topic.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

import clients as c
import kafka_wire as kw
from rss import RssWatch, vm_rss_bytes

IDLE_MS = 3000
CONNECTIONS_MAX = 200
FETCH_BYTES_MAX = 1 << 20
LIMITS = [
    "--batch-cache-bytes-max", str(16 << 20),
    "--request-memory-bytes-max", str(32 << 20),
    "--response-memory-bytes-max", str(8 << 20),
    "--fetch-bytes-max", str(FETCH_BYTES_MAX),
    "--connections-max", str(CONNECTIONS_MAX),
    "--topics-max", "60",
]
RSS_BOUND_BYTES = 256 << 20
DEADLINE_S = 30
STUCK_CONNECTIONS = 128
# Batch cache 16 MiB + response memory 2 x 8 MiB + ~20 MiB of program, and 64 MiB of slack
# for the allocator. Without the response budget, 128 stuck clients held about 3 MiB each.
NEVER_READ_BOUND_BYTES = 128 << 20


@pytest.fixture
def hostile(broker_factory, topic, request):
    idle_ms = getattr(request, "param", IDLE_MS)
    broker = broker_factory(extra_args=LIMITS + ["--connection-idle-ms-max", str(idle_ms)])
    baseline = c.AckedBaseline(broker.bootstrap, topic)
    watch = RssWatch(broker.pid)
    yield broker, baseline, watch
    assert broker.is_running(), "keel died"


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """True once the broker closed the connection (EOF or reset) within the timeout."""
    sock.settimeout(timeout_s)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def connect(bootstrap: str) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def test_slow_and_half_open_clients_are_closed_and_others_served(hostile, request):
    broker, baseline, watch = hostile
    frame = kw.frame(kw.request_header(kw.API_API_VERSIONS, 0, 1) + kw.api_versions_request(0))
    slow = [connect(broker.bootstrap) for _ in range(40)]
    half_open = [connect(broker.bootstrap) for _ in range(40)]
    for s in half_open:
        s.sendall(frame[:3])  # then silence: a peer that vanished without a FIN looks the same
    stop = threading.Event()
    closed_slow = []

    def trickle(s: socket.socket) -> None:
        for byte in frame:  # one byte a second (the frame would take 20 s)
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            if stop.wait(1.0):
                return
        closed_slow.append(closed_by_peer(s, DEADLINE_S))

    threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in slow]
    for t in threads:
        t.start()
    started = time.monotonic()
    while time.monotonic() - started < IDLE_MS / 1000:
        baseline.check_still_serving()  # served while the slow ones hold their connections
    for t in threads:
        t.join(DEADLINE_S + 25)
    stop.set()
    assert closed_slow == [True] * len(slow), "slow clients are closed after the idle limit"
    assert all(closed_by_peer(s, DEADLINE_S) for s in half_open), "half-open connections closed"
    for s in slow + half_open:
        s.close()
    baseline.check_still_serving()
    watch.check("slow and half-open clients", RSS_BOUND_BYTES)


def test_clients_that_never_read_do_not_grow_memory(hostile):
    broker, baseline, watch = hostile
    big = baseline.topic + "-big"
    c.create_topic(broker.bootstrap, big, 4)
    value = b"v" * 8000
    c.confluent_produce(broker.bootstrap, big, [(None, value, i % 4) for i in range(6000)],
                        acks=-1, linger_ms=20)  # 48 MiB: three times the batch cache
    print(f"after producing 48 MiB: RSS {vm_rss_bytes(broker.pid) / 2**20:.1f} MiB, "
          f"peak so far {watch.peak / 2**20:.1f} MiB")
    # Each waits up to 500 ms for response memory, so most get data rather than offsets only.
    fetch = kw.frame(kw.request_header(kw.API_FETCH, 4, 1) + kw.fetch_request_v4(
        {big: {p: 0 for p in range(4)}}, max_wait_ms=500, max_bytes=2**31 - 1,
        partition_max_bytes=2**31 - 1))
    sockets_before = open_sockets(broker.pid)
    stuck = []
    for _ in range(STUCK_CONNECTIONS):
        s = connect(broker.bootstrap)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.settimeout(5)
            s.sendall(fetch * 20)  # pipelined, never read
        except (socket.timeout, OSError):
            pass  # the broker stopped reading this connection: back-pressure, as wanted
        stuck.append(s)
    opened = time.monotonic()
    # Served while the stuck clients hold the response memory: fetches get less, or wait,
    # until the stuck ones are disconnected.
    baseline.check_still_serving()
    print(f"{STUCK_CONNECTIONS} stuck clients: RSS {vm_rss_bytes(broker.pid) / 2**20:.1f} MiB, "
          f"peak {watch.peak / 2**20:.1f} MiB")
    # An answer that waits longer than connection_idle_ms_max for its reader ends the
    # connection: the broker's sockets go back to what they were before, while the stuck
    # clients still hold theirs open (and unread: reading would unblock the answers).
    deadline = opened + 2 * IDLE_MS / 1000 + DEADLINE_S
    while (held := open_sockets(broker.pid)) > sockets_before + 2:
        assert time.monotonic() < deadline, \
            f"{held - sockets_before} stuck clients still connected to the broker"
        time.sleep(0.2)
    stalled = broker.log_text().count("did not read its answer")
    print(f"{stalled} connections closed because their answer was not read")
    assert stalled > 0, "no connection was closed for not reading its answer"
    for s in stuck:
        s.close()
    baseline.check_still_serving()
    watch.check(f"{STUCK_CONNECTIONS} clients that never read their fetches",
                NEVER_READ_BOUND_BYTES)


def open_sockets(pid: int) -> int:
    """How many sockets the broker process has open (listeners and connections)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed meanwhile
    return count


def peer_closed_now(s: socket.socket) -> bool:
    """Without waiting: has the broker closed this connection?"""
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize("hostile", [600_000], indirect=True)  # no idle closes here
def test_connection_flood_past_connections_max(hostile):
    broker, baseline, watch = hostile
    flood = [connect(broker.bootstrap) for _ in range(CONNECTIONS_MAX + 100)]
    # Those past the limit are closed by the broker, the others are kept.
    deadline = time.monotonic() + DEADLINE_S
    while sum(peer_closed_now(s) for s in flood) < len(flood) - CONNECTIONS_MAX:
        assert time.monotonic() < deadline, "connections past connections_max not closed"
        time.sleep(0.05)
    time.sleep(0.5)
    kept = len(flood) - sum(peer_closed_now(s) for s in flood)
    print(f"flood: {len(flood)} connections, {kept} kept (connections_max {CONNECTIONS_MAX})")
    assert CONNECTIONS_MAX - 5 <= kept <= CONNECTIONS_MAX, f"{kept} connections kept"
    for s in flood:
        s.close()
    deadline = time.monotonic() + DEADLINE_S
    while True:  # slots come back as the broker sees the closes
        try:
            baseline.check_still_serving()
            break
        except Exception:
            assert time.monotonic() < deadline, "connections never came back after the flood"
            time.sleep(0.2)
    watch.check("connection flood", RSS_BOUND_BYTES)


def test_huge_fetch_is_capped_at_fetch_bytes_max(hostile):
    broker, baseline, watch = hostile
    big = baseline.topic + "-big"
    c.create_topic(broker.bootstrap, big, 1)
    c.confluent_produce(broker.bootstrap, big, [(None, b"w" * 4000) for _ in range(2000)],
                        acks=-1, linger_ms=20, batch_size=64 * 1024)  # 8 MiB
    with kw.Connection(broker.bootstrap) as conn:
        body = kw.fetch_request_v4({big: {0: 0}}, max_bytes=2**31 - 1,
                                   partition_max_bytes=2**31 - 1)
        resp = kw.decode_fetch_response_v4(conn.request(kw.API_FETCH, 4, body))[big][0]
    assert resp.error_code == kw.NONE
    batches = kw.decode_record_batches(resp.records or b"")
    largest = max(12 + b_len for b_len in _batch_lengths(resp.records or b""))
    assert batches and len(resp.records) <= FETCH_BYTES_MAX + largest, len(resp.records)
    baseline.check_still_serving()
    watch.check("2 GiB fetch", RSS_BOUND_BYTES)


def _batch_lengths(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos + 12 <= len(data):
        n = int.from_bytes(data[pos + 8:pos + 12], "big", signed=True)
        out.append(n)
        pos += 12 + n
    return out


def test_thousands_of_topics_and_partitions_in_one_request(hostile):
    broker, baseline, watch = hostile
    with kw.Connection(broker.bootstrap, timeout_s=60) as conn:
        # Metadata for 5000 unknown topics (auto-create on, topics_max 60): at most the
        # limit is created, every other name gets an error code.
        names = [f"{baseline.topic}-m{i}" for i in range(5000)]
        meta = conn.metadata(names)
        created = [n for n in names if meta.topics[n].error_code == kw.NONE]
        assert len(meta.topics) == len(names)
        assert len(created) < 60, f"{len(created)} topics created past topics_max"
        # Fetch and Produce for 10000 partitions of a topic that has 2: one error each.
        parts = range(10_000)
        body = kw.fetch_request_v4({baseline.topic: {p: 0 for p in parts}})
        fetched = kw.decode_fetch_response_v4(conn.request(kw.API_FETCH, 4, body))[baseline.topic]
        assert len(fetched) == len(parts)
        assert all(fetched[p].error_code == kw.UNKNOWN_TOPIC_OR_PARTITION for p in parts if p >= 2)
        blob = kw.record_batch([kw.Record(None, b"many")])
        body = kw.produce_request_v3({baseline.topic: {p: blob for p in range(2, 10_002)}})
        produced = kw.decode_produce_response_v3(
            conn.request(kw.API_PRODUCE, 3, body))[baseline.topic]
        assert len(produced) == 10_000
        assert all(r.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION for r in produced.values())
    baseline.check_still_serving()
    watch.check("thousands of topics and partitions", RSS_BOUND_BYTES)
