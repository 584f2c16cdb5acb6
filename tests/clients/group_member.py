"""One consumer-group member of a real Python client, run as its own process.

    python group_member.py '<json args>'

args: {client: "confluent" | "kafka-python", bootstrap, group, topics, session_ms,
heartbeat_ms, assignor ("range" | "roundrobin" | "cooperative-sticky"), instance_id (optional)}

It subscribes, and in a loop polls a batch, "processes" it, then commits exactly the records
it processed (synchronously) before polling again: commit after processing. It prints one
JSON line per event on stdout (the test reads them; groups.py):

    {"event": "assigned", "partitions": [..]}   the whole assignment after each change
    {"event": "committed", "records": [[partition, offset, seq], ..]}  after a commit succeeded
    {"event": "commit_failed", "error": ".."}   the records of that batch were not committed
    {"event": "closed"}                         after a clean close (LeaveGroup sent)

SIGTERM makes it close cleanly (the client leaves the group); SIGKILL is the member that
dies without leaving. It runs as a process so that a kill is a real one.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

STOP = threading.Event()
OUT_LOCK = threading.Lock()


def emit(obj: dict) -> None:
    with OUT_LOCK:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def seq_of(value: bytes | None) -> int:
    try:
        return int((value or b"-1").split(b"|", 1)[0])
    except ValueError:
        return -1


def run_confluent(a: dict) -> None:
    import confluent_kafka

    assignor = {"cooperative-sticky": "cooperative-sticky"}.get(a["assignor"], a["assignor"])
    conf = {
        "bootstrap.servers": a["bootstrap"],
        "group.id": a["group"],
        "session.timeout.ms": a["session_ms"],
        "heartbeat.interval.ms": a["heartbeat_ms"],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": assignor,
        "topic.metadata.refresh.interval.ms": 1000,
    }
    if a.get("instance_id"):
        conf["group.instance.id"] = a["instance_id"]
    consumer = confluent_kafka.Consumer(conf)
    assigned: set[int] = set()
    cooperative = a["assignor"] == "cooperative-sticky"

    def on_assign(c, parts):
        assigned.update(p.partition for p in parts)
        if cooperative:
            c.incremental_assign(parts)
        else:
            c.assign(parts)
        emit({"event": "assigned", "partitions": sorted(assigned)})

    def on_revoke(c, parts):
        assigned.difference_update(p.partition for p in parts)
        if cooperative:
            c.incremental_unassign(parts)
        else:
            c.unassign()
        emit({"event": "assigned", "partitions": sorted(assigned)})

    consumer.subscribe(a["topics"], on_assign=on_assign, on_revoke=on_revoke,
                       on_lost=on_revoke)
    while not STOP.is_set():
        msgs = [m for m in consumer.consume(num_messages=1000, timeout=0.2)
                if m.error() is None]
        if not msgs:
            continue
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            last[(m.topic(), m.partition())] = m.offset()
        offsets = [confluent_kafka.TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
            failed = [tp for tp in result or [] if tp.error is not None]
            if failed:
                raise RuntimeError(str(failed[0].error))
        except Exception as e:  # noqa: BLE001 (a failed commit is reported, not fatal)
            emit({"event": "commit_failed", "error": str(e)})
            continue
        emit({"event": "committed",
              "records": [[m.partition(), m.offset(), seq_of(m.value())] for m in msgs]})
    consumer.close()
    emit({"event": "closed"})


def run_kafka_python(a: dict) -> None:
    import kafka
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.structs import OffsetAndMetadata

    assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
                 "cooperative-sticky": CooperativeStickyAssignor}
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=a["bootstrap"], group_id=a["group"],
        session_timeout_ms=a["session_ms"], heartbeat_interval_ms=a["heartbeat_ms"],
        enable_auto_commit=False, auto_offset_reset="earliest",
        partition_assignment_strategy=[assignors[a["assignor"]]],
        metadata_max_age_ms=1000,
        group_instance_id=a.get("instance_id"),
    )

    class Listener(kafka.ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit({"event": "assigned",
                  "partitions": sorted(tp.partition for tp in consumer.assignment()
                                       if tp not in revoked)})

        def on_partitions_assigned(self, assigned):
            emit({"event": "assigned",
                  "partitions": sorted(tp.partition for tp in consumer.assignment())})

    consumer.subscribe(a["topics"], listener=Listener())
    while not STOP.is_set():
        polled = consumer.poll(timeout_ms=200, max_records=1000)
        msgs = [m for batch in polled.values() for m in batch]
        if not msgs:
            continue
        last: dict = {}
        for m in msgs:
            last[kafka.TopicPartition(m.topic, m.partition)] = m.offset
        try:
            consumer.commit({tp: OffsetAndMetadata(o + 1, "", -1) for tp, o in last.items()})
        except Exception as e:  # noqa: BLE001
            emit({"event": "commit_failed", "error": repr(e)})
            continue
        emit({"event": "committed",
              "records": [[m.partition, m.offset, seq_of(m.value)] for m in msgs]})
    consumer.close()
    emit({"event": "closed"})


def main() -> None:
    a = json.loads(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    {"confluent": run_confluent, "kafka-python": run_kafka_python}[a["client"]](a)


if __name__ == "__main__":
    main()
