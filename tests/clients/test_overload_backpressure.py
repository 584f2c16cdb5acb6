"""Produce faster than the disk takes it: the broker pushes back, its memory stays bounded.

Six raw connections each pipeline 80 Produce requests of 1 MiB (acks=all, fsync=always)
without waiting for answers, a reader thread per connection collecting them: 480 MiB offered
as fast as loopback carries it, far faster than write + fdatasync of each group. keel reads a
large frame only once it holds its share of the shard's request memory
(request_memory_bytes_max) and each partition queues at most append_queue_bytes_max before
appends wait, so the excess waits in the clients' socket buffers (the broker stops reading),
not in the broker.

Memory bound checked (VmRSS sampled every 20 ms): RSS_BOUND_BYTES = 256 MiB, from
request memory 2 shards x 32 MiB + append queues 4 partitions x 16 MiB + batch cache 16 MiB
+ ~20 MiB of program = 164 MiB, with room for allocator slack. Every request is answered
without error and every record is in the log afterwards.
"""

from __future__ import annotations

import threading

import clients as c
import kafka_wire as kw
from rss import RssWatch

RSS_BOUND_BYTES = 256 << 20

PARTITIONS = 4
CONNECTIONS = 6
REQUESTS = 80
RECORDS = 64
RECORD_BYTES = 16 * 1024  # 64 x 16 KiB = 1 MiB per request


def test_produce_faster_than_the_disk_is_pushed_back(broker_factory, topic):
    broker = broker_factory(fsync="always", extra_args=[
        "--request-memory-bytes-max", str(32 << 20),
        "--append-queue-bytes-max", str(16 << 20),
        "--batch-cache-bytes-max", str(16 << 20),
    ])
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    watch = RssWatch(broker.pid)
    value = b"o" * RECORD_BYTES
    errors: list[str] = []
    answered = [0] * CONNECTIONS

    def drive(n: int) -> None:
        with kw.Connection(broker.bootstrap, timeout_s=120) as conn:
            ids = []

            def read_answers() -> None:
                for cid in ids_ready():
                    body = conn.recv_response(cid)
                    for parts in kw.decode_produce_response_v3(body).values():
                        for p in parts.values():
                            if p.error_code != kw.NONE:
                                errors.append(f"conn {n}: error {p.error_code}")
                    answered[n] += 1

            ready = threading.Semaphore(0)

            def ids_ready():
                for i in range(REQUESTS):
                    ready.acquire()
                    yield ids[i]

            reader = threading.Thread(target=read_answers, daemon=True)
            reader.start()
            for i in range(REQUESTS):
                blob = kw.record_batch([kw.Record(None, value) for _ in range(RECORDS)])
                body = kw.produce_request_v3({topic: {(n + i) % PARTITIONS: blob}}, acks=-1,
                                             timeout_ms=120_000)
                ids.append(conn.send_request(kw.API_PRODUCE, 3, body))  # blocks when pushed back
                ready.release()
            reader.join(180)
            assert not reader.is_alive(), f"conn {n}: answers stopped at {answered[n]}"

    threads = [threading.Thread(target=drive, args=(n,)) for n in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors[:5]
    assert answered == [REQUESTS] * CONNECTIONS, answered
    records = sum(c.confluent_watermarks(broker.bootstrap, topic, p)[1] for p in range(PARTITIONS))
    assert records == CONNECTIONS * REQUESTS * RECORDS
    watch.check(f"{CONNECTIONS * REQUESTS} MiB produced as fast as loopback takes it",
                RSS_BOUND_BYTES)
