"""SIGKILL at random moments loses nothing the broker acknowledged, with every fsync setting.

An idempotent confluent-kafka producer with acks=all sends numbered messages round-robin to
several partitions while the broker is killed with SIGKILL at a random moment; the producer's
queue is purged, the broker is started again on the same data dir, and every partition is
fetched from offset 0 with raw Fetch requests. After every restart:

- every batch served passes its CRC-32C and decodes whole (nothing torn or half-written),
- offsets run 0, 1, 2, ... up to the high watermark (no gap, nothing invented),
- every acknowledged message is at the offset its acknowledgement named (nothing lost),
- each message value appears once (exactly once) and, per producer run, in send order.

What may be lost: nothing, with any fsync setting. A SIGKILL ends the process, not the
machine: keel writes with O_DIRECT and acknowledges (fsync=never, interval_ms:N) only after
the write completed, so the bytes are in the kernel's and the disk's hands, and a process
kill cannot take them back. fsync=always additionally survives power loss; fsync=never and
interval_ms:N may lose their unsynced tail then, which the engine's power-loss tests check
(engine/tests/power_loss_seeds.rs), because a SIGKILL cannot simulate it.

Messages written but not acknowledged before the kill may be there or not (the producer
never learned either way); the test does not count them as lost, and they too must be whole,
unique and in order.

The seed is printed; run one again with KEEL_CRASH_SEED=<seed>. KEEL_CRASH_CYCLES sets the
cycles for fsync=always (default 20); the other two settings run a third of that (at least 6).
Small segments (128 KiB) make the kills land around segment rolls too.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import zlib

import confluent_kafka
import pytest

import clients as c
import kafka_wire as kw

PARTITIONS = 4
CYCLES = c.env_int("KEEL_CRASH_CYCLES", 20)
SEGMENT_BYTES_MAX = 128 * 1024
VALUE_PAD = b"." * 40
VALUE_RE = re.compile(rb"^c(\d+)-p(\d+)-s(\d+)\|")


def seed() -> int:
    s = int(os.environ.get("KEEL_CRASH_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"crash test seed: KEEL_CRASH_SEED={s}")
    return s


class Run:
    """One producer run (between two kills): sends until told to stop, records the acks."""

    def __init__(self, bootstrap: str, topic: str, cycle: int):
        self.topic, self.cycle = topic, cycle
        self.acked: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.sent = 0
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.producer = confluent_kafka.Producer(c.confluent_conf(
            bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
            compression_type="none", message_timeout_ms=60_000,
            reconnect_backoff_ms=50, reconnect_backoff_max_ms=200))
        self.thread = threading.Thread(target=self._produce, daemon=True)

    def _on_delivery(self, err, msg) -> None:
        if err is None:
            self.acked.append((msg.partition(), msg.offset(), msg.value()))
        elif err.code() not in (confluent_kafka.KafkaError._PURGE_QUEUE,
                                confluent_kafka.KafkaError._PURGE_INFLIGHT):
            self.errors.append(str(err))

    def _produce(self) -> None:
        seq = [0] * PARTITIONS
        p = 0
        while not self.stop.is_set():
            value = b"c%d-p%d-s%d|%s" % (self.cycle, p, seq[p], VALUE_PAD)
            try:
                self.producer.produce(self.topic, value=value, partition=p,
                                      on_delivery=self._on_delivery)
            except BufferError:
                self.producer.poll(0.01)
                continue
            seq[p] += 1
            self.sent += 1
            p = (p + 1) % PARTITIONS
            if self.sent % 50 == 0:
                # Serve delivery callbacks; at most ~10k messages a second, so the log (read
                # back whole after every restart) stays small enough to check quickly.
                self.producer.poll(0)
                time.sleep(0.005)

    def start(self) -> None:
        self.thread.start()

    def wait_for_acks(self, count: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"no {count} acks in {timeout_s}s: {self.errors[:3]}"
            time.sleep(0.005)

    def finish(self) -> None:
        """After the kill: stop sending, drop what is queued or in flight, close."""
        self.stop.set()
        self.thread.join(timeout=30)
        self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        self.producer.flush(10)
        assert not self.thread.is_alive()


def check_partition(bootstrap: str, topic: str, p: int, acked: dict[int, bytes]) -> int:
    """Fetches partition `p` from 0 and checks the invariants; returns its record count."""
    batches, hw = kw.read_all_batches(bootstrap, topic, p, timeout_s=60)
    values: list[bytes] = []
    for b in batches:
        assert b.crc_ok, f"p{p}: batch at {b.base_offset} fails its CRC: torn data served"
        assert len(b.records) == b.record_count, f"p{p}: batch at {b.base_offset} short"
        for off, _key, value in b.records:
            assert off == len(values), f"p{p}: offset {off} where {len(values)} was due"
            values.append(value)
    assert hw == len(values), f"p{p}: high watermark {hw}, records {len(values)}"
    assert len(set(values)) == len(values), f"p{p}: a message is there twice"
    last_seq: dict[int, int] = {}
    for off, v in enumerate(values):
        m = VALUE_RE.match(v)
        assert m, f"p{p}@{off}: value {v[:40]!r} is not one the test sent"
        cycle, part, s = (int(g) for g in m.groups())
        assert part == p, f"p{p}@{off}: message for partition {part}"
        assert s > last_seq.get(cycle, -1), f"p{p}@{off}: cycle {cycle} seq {s} out of order"
        last_seq[cycle] = s
    for off, v in acked.items():
        assert off < len(values), f"p{p}: acknowledged offset {off} lost (log ends at {len(values)})"
        assert values[off] == v, f"p{p}@{off}: acknowledged {v[:30]!r}, found {values[off][:30]!r}"
    return len(values)


def crash_cycles(broker_factory, topic: str, fsync: str, cycles: int) -> None:
    rng = random.Random(seed() ^ zlib.crc32(fsync.encode()))
    broker = broker_factory(fsync=fsync,
                            extra_args=["--segment-bytes-max", str(SEGMENT_BYTES_MAX)])
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    acked: list[dict[int, bytes]] = [{} for _ in range(PARTITIONS)]
    total_acked = 0
    for cycle in range(cycles):
        run = Run(broker.bootstrap, topic, cycle)
        run.start()
        run.wait_for_acks(1)  # the kill lands while the producer is in full flow
        time.sleep(rng.uniform(0.0, 0.5))
        broker.crash()
        run.finish()
        assert not run.errors, f"cycle {cycle}: delivery errors {run.errors[:3]}"
        for p, off, v in run.acked:
            assert off not in acked[p], f"p{p}@{off} acknowledged twice"
            acked[p][off] = v
        total_acked += len(run.acked)
        broker.start()
        records = sum(check_partition(broker.bootstrap, topic, p, acked[p])
                      for p in range(PARTITIONS))
        print(f"fsync={fsync} cycle {cycle}: sent {run.sent}, acked {len(run.acked)}, "
              f"log holds {records} records, {total_acked} acknowledged so far")
    assert total_acked >= cycles, "the producer got acknowledgements in every cycle"


def test_sigkill_fsync_always(broker_factory, topic):
    crash_cycles(broker_factory, topic, "always", CYCLES)


@pytest.mark.parametrize("fsync", ["interval_ms:50", "never"])
def test_sigkill_fsync_interval_and_never(broker_factory, topic, fsync):
    crash_cycles(broker_factory, topic, fsync, max(6, CYCLES // 3))
