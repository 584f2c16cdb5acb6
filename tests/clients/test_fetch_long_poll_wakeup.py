"""A consumer parked in a long-poll Fetch sees a new message as soon as it is produced.

Every consumer here asks for fetch.wait.max.ms = 10 s on an empty partition, so the
broker holds the Fetch open. The test lets that fetch park, produces one message, and
measures from the start of the produce until the consumer has the message. Under 2 s can
only come from the produce waking the fetch: the 10 s timeout would be far later. (2 s is
generous on purpose, as the machine is shared and noisy; the wake-up itself should take
milliseconds.)
"""

import json
import subprocess
import threading
import time

import pytest

import clients as c
import kafka_wire as kw

MAX_WAIT_MS = 10_000
WAKE_LIMIT_S = 2.0
PARK_S = 2.5  # time for a client to connect, read metadata and send its fetch


def produce_one(bootstrap: str, topic: str) -> float:
    """Produce one message to partition 0; return the wall-clock time the produce started."""
    start = time.time()
    c.confluent_produce(bootstrap, topic, [(b"wake", b"up", 0)], acks=1, linger_ms=0)
    return start


def wake_latency(bootstrap: str, topic: str, consume) -> float:
    """Run `consume()` (which returns when it saw the message) in a thread and time it."""
    box: dict = {}

    def target():
        try:
            box["seen_at"] = consume()
        except BaseException as e:  # re-raised below, in the test's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    time.sleep(PARK_S)
    assert t.is_alive(), f"consumer returned before anything was produced: {box}"
    produced_at = produce_one(bootstrap, topic)
    t.join(MAX_WAIT_MS / 1000 + 30)
    assert not t.is_alive(), "consumer never returned"
    if "error" in box:
        raise box["error"]
    return box["seen_at"] - produced_at


def test_raw_fetch_v4_wakes_on_produce(broker, topic):
    c.create_topic(broker.bootstrap, topic, 1)

    def consume():
        with kw.Connection(broker.bootstrap, timeout_s=MAX_WAIT_MS / 1000 + 10) as conn:
            resp = conn.fetch(topic, 0, 0, max_wait_ms=MAX_WAIT_MS, min_bytes=1)
            seen_at = time.time()
        assert resp.error_code == kw.NONE
        values = [r[2] for b in kw.decode_record_batches(resp.records or b"") for r in b.records]
        assert values == [b"up"]
        return seen_at

    assert wake_latency(broker.bootstrap, topic, consume) < WAKE_LIMIT_S


# Each in-process consumer with the settings that make it long-poll for 10 s.
PYTHON_CONSUMERS = {
    "confluent": (c.confluent_consume, {"fetch_wait_max_ms": MAX_WAIT_MS, "fetch_min_bytes": 1}),
    "kafka-python": (c.kafka_python_consume, {"fetch_max_wait_ms": MAX_WAIT_MS,
                                              "fetch_min_bytes": 1,
                                              "request_timeout_ms": MAX_WAIT_MS + 20_000}),
}


@pytest.mark.parametrize("client", PYTHON_CONSUMERS)
def test_python_consumer_wakes_on_produce(broker, topic, client):
    c.create_topic(broker.bootstrap, topic, 1)
    consume_fn, conf = PYTHON_CONSUMERS[client]

    def consume():
        seen_at: list = []
        msgs = consume_fn(broker.bootstrap, topic, [0], 1, timeout_s=30, start_offset=0,
                          seen_at=seen_at, **conf)
        assert msgs[0].value == b"up"
        return seen_at[0]

    assert wake_latency(broker.bootstrap, topic, consume) < WAKE_LIMIT_S


def test_kcat_consumer_wakes_on_produce(broker, topic):
    c.create_topic(broker.bootstrap, topic, 1)

    def consume():
        # No -e: kcat waits for the one message (-c 1); -u writes it out unbuffered.
        proc = subprocess.Popen(
            ["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "0", "-c", "1",
             "-u", "-q", "-f", "%s\n", "-X", f"fetch.wait.max.ms={MAX_WAIT_MS}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = proc.stdout.readline()
            seen_at = time.time()
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert line == b"up\n", proc.stderr.read().decode()
        return seen_at

    assert wake_latency(broker.bootstrap, topic, consume) < WAKE_LIMIT_S


def test_kafkajs_fetch_wakes_on_produce(broker, topic):
    c.create_topic(broker.bootstrap, topic, 1)
    proc = c.kafkajs_popen("long_poll", bootstrap=broker.bootstrap, topic=topic, partition=0,
                           offset=0, maxWaitMs=MAX_WAIT_MS)
    try:
        first = proc.stdout.readline()
        assert first and json.loads(first) == {"fetching": True}, proc.stderr.read().decode()
        time.sleep(0.5)
        assert proc.poll() is None, f"fetch returned before the produce: {proc.stdout.read()}"
        produced_at = produce_one(broker.bootstrap, topic)
        out, err = proc.communicate(timeout=MAX_WAIT_MS / 1000 + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert [m[3] for m in result["messages"]] == ["up"]
    assert result["fetchEndMs"] / 1000 - produced_at < WAKE_LIMIT_S
