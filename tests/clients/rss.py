"""The broker's resident memory, read from /proc/<pid>/status (VmRSS), for the tests that
bound it under attack or overload."""

from __future__ import annotations

import threading
import time


def vm_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssWatch:
    """Samples the broker's RSS in a thread; `peak` is the largest sample."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, vm_rss_bytes(self.pid))
            time.sleep(0.02)

    def check(self, what: str, bound_bytes: int) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, vm_rss_bytes(self.pid))
        print(f"{what}: peak RSS {self.peak / 2**20:.1f} MiB (bound {bound_bytes >> 20} MiB)")
        assert self.peak < bound_bytes, f"{what}: RSS {self.peak} over {bound_bytes}"
