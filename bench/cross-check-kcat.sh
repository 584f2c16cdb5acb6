#!/usr/bin/env bash
# Cross-checks keel-bench's max-rate throughput against kcat (librdkafka 2.0 from Debian) and
# confluent-kafka (librdkafka 2.16, if tests/clients/.venv exists) on the same broker,
# with requests of the same shape: one producer, one partition, 1 KiB messages, acks=all,
# linger 1 ms, batches up to 64 KiB, up to 5 requests in flight. kcat produces COUNT messages
# to a fresh auto-created topic and its wall time gives messages/s; then keel-bench runs
# bench/workloads/max-rate-8p-1kb.toml changed to 1 producer and 1 partition for 10 s.
# (One partition, because librdkafka's requests and keel-bench's differ in how many partitions
# they carry, and keel answers one connection's requests one at a time.)
#
#   bench/cross-check-kcat.sh HOST:PORT [COUNT]
#
# The broker must auto-create topics with 1 partition (keel's default).
set -euo pipefail

bootstrap=${1:?usage: $0 HOST:PORT [COUNT]}
count=${2:-200000}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# COUNT lines of 1023 bytes + newline = 1 KiB messages.
head -c 1023 /dev/zero | tr '\0' 'x' > "$work/line"
echo >> "$work/line"
for _ in $(seq 1 1000); do cat "$work/line"; done > "$work/1000"
for _ in $(seq 1 $((count / 1000))); do cat "$work/1000"; done > "$work/messages"
count=$(wc -l < "$work/messages")

topic="kcat-check-$$"
# Create the topic (metadata request with auto-creation), then time the produce alone.
kcat -b "$bootstrap" -L -t "$topic" > /dev/null
start=$(date +%s.%N)
kcat -b "$bootstrap" -P -t "$topic" -X acks=all -X linger.ms=1 -X batch.size=65536 \
    -X max.in.flight=5 -X queue.buffering.max.messages=1000000 -l "$work/messages"
end=$(date +%s.%N)
awk -v n="$count" -v s="$start" -v e="$end" \
    'BEGIN { t = e - s; printf "kcat: %d messages in %.2f s = %.0f msg/s (%.1f MB/s)\n", n, t, n / t, n * 1024 / t / 1e6 }'

# The same with confluent-kafka (a current librdkafka), when the client tests' venv is there.
python="$repo/tests/clients/.venv/bin/python"
if [[ -x "$python" ]]; then
    "$python" - "$bootstrap" "$count" <<'PY'
import sys, time
from confluent_kafka import Producer
bootstrap, n = sys.argv[1], int(sys.argv[2])
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
              "batch.size": 65536, "max.in.flight": 5,
              "queue.buffering.max.messages": 1000000})
value = b"x" * 1024
p.produce("ck-warm", value)
p.flush()
start = time.time()
for _ in range(n):
    while True:
        try:
            p.produce("ck-" + str(int(start)), value)
            break
        except BufferError:
            p.poll(0.001)
p.flush()
took = time.time() - start
print(f"confluent-kafka: {n} messages in {took:.2f} s = {n / took:.0f} msg/s "
      f"({n * 1024 / took / 1e6:.1f} MB/s)")
PY
fi

workload="$work/one-producer.toml"
sed -e 's/^producers = .*/producers = 1/' -e 's/^consumers = .*/consumers = 0/' \
    -e 's/^partitions = .*/partitions = 1/' -e 's/^name = .*/name = "kcat-check"/' \
    "$repo/bench/workloads/max-rate-8p-1kb.toml" > "$workload"
"$repo/target/release/keel-bench" run --workload "$workload" --seconds 10 \
    --system "kcat-check=$bootstrap" 2>/dev/null
