"""Consumer-group members of every client as child processes, and waits on what they say.

A `Member` runs one real client's group consumer (group_member.py for confluent-kafka and
kafka-python, `node kafkajs.js group_consume` for KafkaJS). Each prints event lines (see
group_member.py); a reader thread collects them. `stop()` sends SIGTERM (the client leaves
the group cleanly), `kill()` SIGKILL (it dies without leaving). Both by the child's PID.

Every wait is bounded and fails with what was seen so far.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUP_CLIENTS = ["confluent", "kafka-python", "kafkajs"]

# Short sessions so that a killed member is noticed quickly; the broker's minimum is
# lowered to match (BROKER_ARGS).
SESSION_MS = 3000
HEARTBEAT_MS = 500
BROKER_ARGS = ["--group-min-session-timeout-ms", "1000",
               "--group-initial-rebalance-delay-ms", "500"]


class Member:
    def __init__(self, client: str, bootstrap: str, group: str, topics: list[str],
                 assignor: str = "range", instance_id: str | None = None,
                 session_ms: int = SESSION_MS):
        self.client = client
        args = {"client": client, "bootstrap": bootstrap, "group": group, "topics": topics,
                "session_ms": session_ms, "heartbeat_ms": HEARTBEAT_MS, "assignor": assignor,
                "instance_id": instance_id}
        if client == "kafkajs":
            cmd = ["node", str(HERE / "node" / "kafkajs.js"), "group_consume", json.dumps(args)]
        else:
            cmd = [sys.executable, str(HERE / "group_member.py"), json.dumps(args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd=HERE)
        self.lock = threading.Lock()
        self.assigned: list[int] | None = None
        self.committed: list[tuple[int, int, int]] = []
        self.commit_failures: list[str] = []
        self.closed = False
        self.killed = False
        self.stderr_tail: list[str] = []
        # The member ids it joined with, in order, where the client reports them (KafkaJS).
        self.member_ids: list[str] = []
        # Times the client gave up on its consumer and started a new one (KafkaJS does when
        # its only broker is unreachable for a moment, as during a broker restart): that
        # client leaves (if it can) and joins again as a new member.
        self.client_restarts = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                kind = ev.get("event")
                if kind == "assigned":
                    self.assigned = ev["partitions"]
                    mid = ev.get("member_id")
                    if mid and mid not in self.member_ids:
                        self.member_ids.append(mid)
                elif kind == "committed":
                    self.committed.extend(tuple(r) for r in ev["records"])
                elif kind == "commit_failed":
                    self.commit_failures.append(ev["error"])
                elif kind == "closed":
                    self.closed = True

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            text = line.decode(errors="replace")
            with self.lock:
                if "Restarting the consumer" in text:
                    self.client_restarts += 1
                self.stderr_tail = (self.stderr_tail + [text])[-30:]

    def snapshot(self) -> tuple[list[int] | None, int]:
        with self.lock:
            return (list(self.assigned) if self.assigned is not None else None,
                    len(self.committed))

    def describe(self) -> str:
        with self.lock:
            return (f"{self.client} pid {self.proc.pid}: assigned={self.assigned} "
                    f"committed={len(self.committed)} failures={self.commit_failures[:3]} "
                    f"member_ids={self.member_ids} client_restarts={self.client_restarts} "
                    f"alive={self.proc.poll() is None} stderr={''.join(self.stderr_tail)[-1500:]}")

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM: the client closes and leaves the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"member did not close in {timeout_s}s: {self.describe()}")

    def kill(self) -> None:
        """SIGKILL: gone without a LeaveGroup."""
        self.killed = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(what: str, cond, members: list[Member], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        for m in members:
            if m.proc.poll() is not None and not (m.closed or m.killed):
                raise AssertionError(f"a member exited while waiting for {what}: {m.describe()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}:\n" +
                         "\n".join(m.describe() for m in members))


def wait_balanced(members: list[Member], partitions: int, timeout_s: float = 60) -> None:
    """Every partition assigned to exactly one of `members`, each of which has some."""
    def balanced() -> bool:
        seen: list[int] = []
        for m in members:
            assigned, _ = m.snapshot()
            if not assigned:
                return False
            seen += assigned
        return sorted(seen) == list(range(partitions))
    wait_until(f"{partitions} partitions spread over {len(members)} members", balanced,
               members, timeout_s)


def committed_records(members: list[Member]) -> list[tuple[int, int, int]]:
    out = []
    for m in members:
        with m.lock:
            out += m.committed
    return out


def wait_all_committed(members: list[Member], ends: dict[int, int], timeout_s: float = 90):
    """Until every offset below `ends[p]` of every partition was committed by some member."""
    def done() -> bool:
        seen: dict[int, set[int]] = {}
        for p, o, _ in committed_records(members):
            seen.setdefault(p, set()).add(o)
        return all(len(seen.get(p, ())) >= end for p, end in ends.items())
    wait_until(f"every record committed (ends {ends})", done, members, timeout_s)
