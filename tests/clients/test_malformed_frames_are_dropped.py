"""Garbage on a connection costs that connection at most, never the broker or its data.

Over raw sockets: a frame longer than any sane request limit (the broker must close the
connection on the length alone, without waiting for the body), a negative length, a
truncated frame followed by a disconnect, random bytes, a whole frame of random bytes,
and an unknown API key. After each, the broker process is still running, the data it
acknowledged before is intact, and a normal client produces and consumes.
"""

import random
import socket
import time

import pytest

import clients as c
import kafka_wire as kw

CLOSE_WAIT_S = 10.0


@pytest.fixture
def baseline(broker, topic):
    return c.AckedBaseline(broker.bootstrap, topic)


def assert_healthy(broker, baseline):
    assert broker.is_running(), "keel died"
    baseline.check_still_serving()


def closes_or_answers(conn: kw.Connection, timeout_s: float = CLOSE_WAIT_S) -> str:
    """'closed' if the broker closed the connection, 'answered' if it sent a frame."""
    conn.sock.settimeout(timeout_s)
    try:
        first = conn.sock.recv(4)
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    except socket.timeout:
        raise AssertionError(f"broker neither answered nor closed within {timeout_s}s")
    return "answered" if first else "closed"


@pytest.mark.parametrize("length", [2**31 - 1, 1 << 30, 200 * 1024 * 1024],
                         ids=["2GiB", "1GiB", "200MiB"])
def test_oversized_frame_closes_connection(broker, baseline, length):
    with kw.Connection(broker.bootstrap) as conn:
        # A plausible header follows the length, as a real client's would.
        conn.send_raw(kw.int32(length) + kw.request_header(kw.API_PRODUCE, 3, 1))
        started = time.monotonic()
        assert conn.wait_closed(CLOSE_WAIT_S), f"connection still open {CLOSE_WAIT_S}s after a {length}-byte frame header"
        assert time.monotonic() - started < CLOSE_WAIT_S
    assert_healthy(broker, baseline)


@pytest.mark.parametrize("length", [-1, -(2**31)])
def test_negative_frame_length_closes_connection(broker, baseline, length):
    with kw.Connection(broker.bootstrap) as conn:
        conn.send_raw(kw.int32(length) + b"\x00" * 16)
        assert conn.wait_closed(CLOSE_WAIT_S)
    assert_healthy(broker, baseline)


def test_truncated_frame_then_disconnect(broker, baseline):
    request = kw.frame(kw.request_header(kw.API_PRODUCE, 3, 1) + kw.produce_request_v3(
        {baseline.topic: {0: kw.record_batch([kw.Record(b"half", b"sent")])}}))
    for cut in (2, 4, 10, len(request) // 2, len(request) - 1):
        conn = kw.Connection(broker.bootstrap)
        conn.send_raw(request[:cut])
        conn.close()
    # A truncated frame on a connection that stays open must not block other clients.
    idle = kw.Connection(broker.bootstrap)
    idle.send_raw(request[: len(request) // 2])
    try:
        assert_healthy(broker, baseline)  # also: no half-sent record was appended
    finally:
        idle.close()


def test_random_bytes(broker, baseline):
    rng = random.Random(20261125)
    for size in (1, 3, 64, 4096, 65536):
        conn = kw.Connection(broker.bootstrap)
        try:
            conn.send_raw(rng.randbytes(size))
        except OSError:
            pass  # the broker may already have closed on the first bad length
        conn.close()
    assert_healthy(broker, baseline)


def test_whole_frames_of_random_bytes_get_answer_or_close(broker, baseline):
    """A complete frame of noise: the broker must answer or close, and not hang on it."""
    rng = random.Random(42)
    outcomes = []
    for size in (0, 1, 7, 8, 9, 100, 1000, 10_000):
        noise = rng.randbytes(size)
        if noise[:2] == b"\x00\x00":
            noise = b"\xff" + noise[1:]  # not Produce, which with acks=0 has no answer
        with kw.Connection(broker.bootstrap) as conn:
            conn.send_raw(kw.frame(noise))
            outcomes.append(closes_or_answers(conn))
    assert set(outcomes) <= {"closed", "answered"}
    assert_healthy(broker, baseline)


def test_unknown_api_key_gets_error_or_close(broker, baseline):
    with kw.Connection(broker.bootstrap) as conn:
        cid = conn.send_request(32_000, 0, b"")
        try:
            body = conn.recv_response(cid)
        except kw.ConnectionClosed:
            body = None
    if body is not None:
        r = kw.Reader(body)
        assert r.remaining() >= 2 and r.int16() != 0, "unknown API key answered without an error"
    assert_healthy(broker, baseline)
