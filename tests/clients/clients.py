"""One produce and one consume helper per real client, with the same shape for each.

Every helper talks to the broker over real sockets through the client library itself:
confluent-kafka and kafka-python in this process, kcat and KafkaJS as child processes
(started with a timeout, so a hung client is killed by its own PID and fails the test).

These consumers use manual partition assignment and never commit offsets (consumer groups
are tested through groups.py). confluent-kafka insists on a `group.id` even for assign(),
so it gets a throwaway one that is never joined or committed to.

Messages are `Msg(partition, offset, key, value)` with bytes keys and values, so the
results of different clients compare directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterable, NamedTuple

import confluent_kafka
import confluent_kafka.admin
import kafka

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"

CLIENTS = ["confluent", "kafka-python", "kcat", "kafkajs"]


class Msg(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


# --- the messages the tests send --------------------------------------------------------

def keyed_messages(count: int, key_count: int = 1000, pad_bytes: int = 64,
                   start: int = 0) -> list[tuple[bytes, bytes]]:
    """`count` (key, value) pairs. The value starts with its sequence number and a `|`.

    KafkaJS builds the same messages itself (node/kafkajs.js `makeMessages`), so a large
    count need not cross a pipe.
    """
    pad = b"x" * pad_bytes
    return [(b"key-%d" % (i % key_count), b"%d|%s" % (i, pad))
            for i in range(start, start + count)]


def seq_of(value: bytes) -> int:
    return int(value.split(b"|", 1)[0])


def check_keyed_order(msgs: list[Msg], produced: list[tuple[bytes, bytes]]) -> None:
    """All produced messages came back exactly once, and each partition kept produce order.

    Per partition the offsets run 0, 1, 2, ... with no gap, the sequence numbers rise, and
    every key lives in exactly one partition (the client's key partitioner).
    """
    assert len(msgs) == len(produced), f"consumed {len(msgs)} of {len(produced)}"
    assert sorted((m.key, m.value) for m in msgs) == sorted(produced), "keys or values differ"
    by_partition: dict[int, list[Msg]] = {}
    for m in msgs:
        by_partition.setdefault(m.partition, []).append(m)
    key_partition: dict[bytes, int] = {}
    for p, pm in by_partition.items():
        pm.sort(key=lambda m: m.offset)
        assert [m.offset for m in pm] == list(range(len(pm))), f"partition {p}: offset gap"
        seqs = [seq_of(m.value) for m in pm]
        assert seqs == sorted(seqs), f"partition {p}: produce order not kept"
        for m in pm:
            assert key_partition.setdefault(m.key, p) == p, f"key {m.key!r} in two partitions"


# --- confluent-kafka (librdkafka 2.x) -----------------------------------------------------

def confluent_conf(bootstrap: str, **conf) -> dict:
    base = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return base


def confluent_produce(bootstrap: str, topic: str, messages: Iterable[tuple],
                      timeout_s: float = 60, **conf) -> list[Msg]:
    """Produce (key, value) or (key, value, partition) tuples; return the delivery reports.

    With acks=0 the reported offsets are -1: the broker says nothing back.
    """
    conf.setdefault("linger_ms", 5)
    producer = confluent_kafka.Producer(confluent_conf(bootstrap, **conf))
    delivered: list[Msg] = []
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(Msg(msg.partition(), msg.offset(), msg.key(), msg.value()))

    for m in messages:
        kwargs = {"key": m[0], "value": m[1], "on_delivery": on_delivery}
        if len(m) > 2 and m[2] is not None:
            kwargs["partition"] = m[2]
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    assert remaining == 0, f"{remaining} messages not delivered in {timeout_s}s; errors {errors[:5]}"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    return delivered


def confluent_consume(bootstrap: str, topic: str, partitions: Iterable[int], count: int,
                      timeout_s: float = 60, start_offset: int | None = None,
                      seen_at: list | None = None, **conf) -> list[Msg]:
    """Assign `partitions` from `start_offset` (default: the beginning), read `count`.

    `seen_at`, if given, gets the wall-clock time at which the count was reached (before
    the consumer closes, which can take a while).
    """
    conf.setdefault("group_id", f"keel-test-unused-{uuid.uuid4().hex[:8]}")
    conf.setdefault("enable_auto_commit", False)
    conf.setdefault("enable_auto_offset_store", False)
    consumer = confluent_kafka.Consumer(confluent_conf(bootstrap, **conf))
    offset = confluent_kafka.OFFSET_BEGINNING if start_offset is None else start_offset
    consumer.assign([confluent_kafka.TopicPartition(topic, p, offset) for p in partitions])
    out: list[Msg] = []
    errors: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is not None:
                    errors.append(str(msg.error()))
                    continue
                out.append(Msg(msg.partition(), msg.offset(), msg.key(), msg.value()))
        if seen_at is not None:
            seen_at.append(time.time())
    finally:
        consumer.close()
    assert len(out) >= count, (f"confluent consumer got {len(out)} of {count} in {timeout_s}s;"
                               f" errors {errors[:5]}")
    return out


def confluent_watermarks(bootstrap: str, topic: str, partition: int,
                         timeout_s: float = 10) -> tuple[int, int]:
    """(log start offset, high watermark) through ListOffsets."""
    consumer = confluent_kafka.Consumer(confluent_conf(
        bootstrap, group_id=f"keel-test-unused-{uuid.uuid4().hex[:8]}"))
    try:
        return consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, partition),
                                              timeout=timeout_s)
    finally:
        consumer.close()


def confluent_admin(bootstrap: str, **conf) -> confluent_kafka.admin.AdminClient:
    """Keep the AdminClient referenced until its futures are done: dropping it destroys
    the handle and fails them with _DESTROY."""
    return confluent_kafka.admin.AdminClient(confluent_conf(bootstrap, **conf))


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None,
                 timeout_s: float = 30) -> None:
    """Create a topic through CreateTopics (confluent-kafka's AdminClient) and wait for it."""
    new = confluent_kafka.admin.NewTopic(topic, partitions, config=config or {})
    admin = confluent_admin(bootstrap)  # must outlive its futures
    admin.create_topics([new], operation_timeout=timeout_s)[topic].result(timeout_s)


# --- kafka-python ------------------------------------------------------------------------

def kafka_python_produce(bootstrap: str, topic: str, messages: Iterable[tuple],
                         timeout_s: float = 60, **conf) -> list[Msg]:
    conf.setdefault("linger_ms", 5)
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, **conf)
    futures = []
    try:
        for m in messages:
            part = m[2] if len(m) > 2 else None
            futures.append((m, producer.send(topic, key=m[0], value=m[1], partition=part)))
        producer.flush(timeout=timeout_s)
        out = []
        for m, f in futures:
            md = f.get(timeout=timeout_s)
            out.append(Msg(md.partition, md.offset, m[0], m[1]))
        return out
    finally:
        producer.close(timeout=10)


def kafka_python_consume(bootstrap: str, topic: str, partitions: Iterable[int], count: int,
                         timeout_s: float = 60, start_offset: int | None = None,
                         seen_at: list | None = None, **conf) -> list[Msg]:
    """As `confluent_consume`, with kafka-python."""
    consumer = kafka.KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                   enable_auto_commit=False, **conf)
    tps = [kafka.TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    for tp in tps:
        if start_offset is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start_offset)
    out: list[Msg] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500, max_records=10_000).items():
                out.extend(Msg(tp.partition, r.offset, r.key, r.value) for r in records)
        if seen_at is not None:
            seen_at.append(time.time())
    finally:
        consumer.close(autocommit=False)
    assert len(out) >= count, f"kafka-python consumer got {len(out)} of {count} in {timeout_s}s"
    return out


def kafka_python_admin(bootstrap: str, **conf) -> kafka.KafkaAdminClient:
    return kafka.KafkaAdminClient(bootstrap_servers=bootstrap, **conf)


# --- kcat (librdkafka 2.0.2, Debian's package) -------------------------------------------

def run(cmd: list[str], timeout_s: float, stdin: bytes | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a client process; on a timeout subprocess kills it (by its PID) and we fail."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{cmd[0]} timed out after {timeout_s}s\n"
                             f"stderr: {(e.stderr or b'').decode(errors='replace')[-3000:]}")
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n"
                             f"stderr: {proc.stderr.decode(errors='replace')[-3000:]}")
    return proc


def kcat_produce(bootstrap: str, topic: str, messages: Iterable[tuple], partition: int | None = None,
                 props: dict | None = None, extra: list[str] | None = None,
                 timeout_s: float = 60) -> None:
    """Produce key:value lines from stdin. Keys must not hold ':' nor values a newline."""
    lines = []
    for m in messages:
        assert b":" not in m[0] and b"\n" not in m[1]
        lines.append(m[0] + b":" + m[1])
    cmd = ["kcat", "-b", bootstrap, "-P", "-t", topic, "-K:"]
    if partition is not None:
        cmd += ["-p", str(partition)]
    for k, v in (props or {}).items():
        cmd += ["-X", f"{k}={v}"]
    cmd += extra or []
    proc = run(cmd, timeout_s, stdin=b"\n".join(lines) + b"\n")
    # kcat reports failed deliveries on stderr; some versions still exit 0.
    err = proc.stderr.decode(errors="replace")
    assert "ERROR" not in err and "failed" not in err.lower(), err[-3000:]


def kcat_consume(bootstrap: str, topic: str, count: int, partition: int | None = None,
                 props: dict | None = None, offset: str = "beginning",
                 timeout_s: float = 60) -> list[Msg]:
    """Read from `offset` to the end of the partition(s) (-e), at most `count` messages."""
    cmd = ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", offset, "-e", "-q",
           "-c", str(count), "-f", r"%p\t%o\t%k\t%s\n"]
    if partition is not None:
        cmd += ["-p", str(partition)]
    for k, v in (props or {}).items():
        cmd += ["-X", f"{k}={v}"]
    proc = run(cmd, timeout_s)
    out = []
    for line in proc.stdout.splitlines():
        p, o, k, v = line.split(b"\t", 3)
        out.append(Msg(int(p), int(o), k, v))
    return out


def kcat_metadata(bootstrap: str, timeout_s: float = 30) -> dict:
    return json.loads(run(["kcat", "-b", bootstrap, "-L", "-J"], timeout_s).stdout)


# --- KafkaJS 2.2 (node/kafkajs.js) -------------------------------------------------------

def kafkajs(command: str, timeout_s: float = 120, **args) -> dict:
    """Run one command of node/kafkajs.js and return the JSON it prints on its last line."""
    proc = run(["node", str(NODE_DIR / "kafkajs.js"), command, json.dumps(args)], timeout_s,
               cwd=NODE_DIR)
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, f"kafkajs {command} printed nothing; stderr {proc.stderr.decode()[-3000:]}"
    return json.loads(lines[-1])


def kafkajs_popen(command: str, **args) -> subprocess.Popen:
    """Start node/kafkajs.js in the background (for the long-poll test)."""
    return subprocess.Popen(["node", str(NODE_DIR / "kafkajs.js"), command, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=NODE_DIR)


def kafkajs_msgs(result: dict) -> list[Msg]:
    return [Msg(p, int(o), None if k is None else k.encode(), None if v is None else v.encode())
            for p, o, k, v in result["messages"]]


def kafkajs_produce(bootstrap: str, topic: str, count: int, key_count: int = 1000,
                    pad_bytes: int = 64, **opts) -> dict:
    return kafkajs("produce", bootstrap=bootstrap, topic=topic, count=count,
                   keyCount=key_count, padBytes=pad_bytes, **opts)


def kafkajs_consume(bootstrap: str, topic: str, partitions: list[int], count: int,
                    timeout_s: float = 60) -> list[Msg]:
    res = kafkajs("consume", timeout_s=timeout_s + 30, bootstrap=bootstrap, topic=topic,
                  partitions=partitions, count=count, timeoutMs=int(timeout_s * 1000))
    msgs = kafkajs_msgs(res)
    assert len(msgs) >= count, f"kafkajs consumer got {len(msgs)} of {count}"
    return msgs


# --- one call per client, for tests parametrized over clients ------------------------------

def produce_with(client: str, bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]],
                 compression: str = "none", acks: int | str = "all") -> None:
    """Produce `messages` (which must be `keyed_messages(...)`) with any client."""
    acks_num = -1 if acks == "all" else int(acks)
    if client == "confluent":
        confluent_produce(bootstrap, topic, messages, compression_type=compression,
                          acks=acks_num)
    elif client == "kafka-python":
        kafka_python_produce(bootstrap, topic, messages,
                             compression_type=None if compression == "none" else compression,
                             acks=acks if acks == "all" else acks_num)
    elif client == "kcat":
        kcat_produce(bootstrap, topic, messages,
                     props={"compression.codec": compression, "acks": acks_num})
    elif client == "kafkajs":
        first = seq_of(messages[0][1])
        pad_bytes = len(messages[0][1].split(b"|", 1)[1])
        assert messages == keyed_messages(len(messages), start=first, pad_bytes=pad_bytes), \
            "kafkajs rebuilds keyed_messages(); pass those"
        kafkajs_produce(bootstrap, topic, len(messages), start=first, pad_bytes=pad_bytes,
                        compression=compression, acks=acks_num)
    else:
        raise ValueError(client)


def consume_with(client: str, bootstrap: str, topic: str, partitions: list[int], count: int,
                 timeout_s: float = 60) -> list[Msg]:
    if client == "confluent":
        return confluent_consume(bootstrap, topic, partitions, count, timeout_s)
    if client == "kafka-python":
        return kafka_python_consume(bootstrap, topic, partitions, count, timeout_s)
    if client == "kcat":
        out = []
        for p in partitions:
            out += kcat_consume(bootstrap, topic, count, partition=p, timeout_s=timeout_s)
        return out
    if client == "kafkajs":
        return kafkajs_consume(bootstrap, topic, partitions, count, timeout_s)
    raise ValueError(client)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class AckedBaseline:
    """Messages the broker acknowledged before a test sends it something bad.

    `check_still_serving()` then asserts that they are all still there and that a normal
    client can still produce and consume.
    """

    def __init__(self, bootstrap: str, topic: str, count: int = 200, partitions: int = 2):
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, list(range(partitions))
        create_topic(bootstrap, topic, partitions)
        self.produced = keyed_messages(count)
        confluent_produce(bootstrap, topic, self.produced, acks=-1)
        self.extra = 0

    def check_still_serving(self) -> None:
        more = keyed_messages(10, start=len(self.produced) + self.extra)
        self.extra += len(more)
        confluent_produce(self.bootstrap, self.topic, more, acks=-1)
        expected = self.produced + keyed_messages(self.extra, start=len(self.produced))
        got = confluent_consume(self.bootstrap, self.topic, self.partitions, len(expected),
                                timeout_s=30)
        check_keyed_order(got, expected)
