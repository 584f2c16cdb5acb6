"""Consumer-group benchmark (not a test): rebalance settle time and offset commit latency.

    cd tests/clients && .venv/bin/python bench_groups.py [--rounds 5] [--requests 2000]

Starts its own `keel` (KEEL_BIN, fsync=always, 2 shards) on a fresh data dir and measures:

1. Rebalance of 3 members (confluent-kafka consumer processes, groups.py): from a 4th
   member's clean leave until the other 3 hold all 8 partitions again, and from a new
   member's start (process start included) until the 4 hold them. Each `--rounds` times.
2. Offset commit latency against produce latency at the same size, fsync=always, over one
   raw connection each, sequential requests: OffsetCommit v7 of one partition (one record
   of about 100 bytes in `__consumer_offsets`) and Produce v3 acks=all of one 100-byte record.
   The two series alternate in blocks so that the disk's mood hits both alike.

Prints a Markdown table. Timing comes from time.perf_counter around each request.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import clients as c
import groups as g
import kafka_wire as kw
from conftest import Broker
from test_group_bad_input_gets_error_codes import commit, joined_member


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_rebalance(bootstrap: str, rounds: int) -> dict[str, list[float]]:
    topic = "bench-rebalance"
    c.create_topic(bootstrap, topic, 8)
    leave, join = [], []
    for r in range(rounds):
        group = f"bench-rebalance-{r}"
        members = [g.Member("confluent", bootstrap, group, [topic]) for _ in range(4)]
        try:
            g.wait_balanced(members, 8)
            t0 = time.perf_counter()
            members[3].stop()
            g.wait_balanced(members[:3], 8)
            leave.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            members[3] = g.Member("confluent", bootstrap, group, [topic])
            g.wait_balanced(members, 8)
            join.append(time.perf_counter() - t0)
        finally:
            for m in members:
                m.cleanup()
    return {"leave": leave, "join": join}


def bench_latency(bootstrap: str, requests: int) -> dict[str, list[float]]:
    topic = "bench-latency"
    c.create_topic(bootstrap, topic, 1)
    value = b"v" * 100
    out = {"produce": [], "commit": []}
    with kw.Connection(bootstrap) as pconn, kw.Connection(bootstrap) as cconn:
        member, gen = joined_member(cconn, "bench-latency")
        block = 100
        for start in range(0, requests, block):
            for _ in range(block):
                batch = kw.record_batch([kw.Record(b"k", value)])
                t0 = time.perf_counter()
                assert pconn.produce(topic, 0, batch).error_code == 0
                out["produce"].append(time.perf_counter() - t0)
            for i in range(block):
                t0 = time.perf_counter()
                assert commit(cconn, "bench-latency", gen, member, topic, offset=start + i,
                              metadata="m" * 40) == 0
                out["commit"].append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000)
    a = ap.parse_args()
    broker = Broker(Path(tempfile.mkdtemp(prefix="keel-bench-log-")), fsync="always",
                    extra_args=g.BROKER_ARGS)
    broker.start()
    try:
        reb = bench_rebalance(broker.bootstrap, a.rounds)
        lat = bench_latency(broker.bootstrap, a.requests)
    finally:
        broker.close()
    print(f"\nrebalance, 3 members, {a.rounds} rounds (session.timeout.ms {g.SESSION_MS}, "
          f"heartbeat.interval.ms {g.HEARTBEAT_MS}, librdkafka's rebalance timeout = "
          "max.poll.interval.ms 300000)\n")
    print("| event | median s | max s |\n|---|---:|---:|")
    for k, v in reb.items():
        print(f"| {k} | {statistics.median(v):.3f} | {max(v):.3f} |")
    print(f"\nlatency, {a.requests} sequential requests each, fsync=always\n")
    print("| request | p50 ms | p99 ms | p99.9 ms |\n|---|---:|---:|---:|")
    for k, v in lat.items():
        print(f"| {k} | {pct(v, .5) * 1e3:.2f} | {pct(v, .99) * 1e3:.2f} | "
              f"{pct(v, .999) * 1e3:.2f} |")
    ratio = pct(lat["commit"], .99) / pct(lat["produce"], .99)
    print(f"\ncommit p99 / produce p99 = {ratio:.2f}")


if __name__ == "__main__":
    main()
