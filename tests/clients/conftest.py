"""Fixtures that run the real `keel` broker process for the real-client tests.

`broker` starts `keel` (env KEEL_BIN, default target/release/keel) on a free 127.0.0.1 port
with a fresh data dir, waits until the port accepts connections and the log says "ready",
yields a `Broker` (its `.bootstrap` is "127.0.0.1:PORT"), then stops it with SIGTERM by
PID (SIGKILL after a timeout, which fails the test), asserts exit status 0, and removes
the data dir. `broker.restart()` stops and starts it again on the same port and data dir.
`broker_factory(...)` starts brokers with other flags, such as an advertised port that a
test's proxy owns.

The broker's stdout and stderr go to a log file; when a test fails, the tail of every log
of the brokers it started is attached to the failure report.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KEEL_BIN = Path(os.environ.get("KEEL_BIN", REPO_ROOT / "target" / "release" / "keel"))
SHARDS = int(os.environ.get("KEEL_TEST_SHARDS", "2"))
START_TIMEOUT_S = float(os.environ.get("KEEL_TEST_START_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = float(os.environ.get("KEEL_TEST_STOP_TIMEOUT_S", "20"))
LOG_TAIL_LINES = 200

BROKERS_KEY = pytest.StashKey[list]()


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1, closed again for the broker to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: if pytest dies, the kernel SIGKILLs the broker too."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


# A seccomp filter that answers io_uring_setup/enter/register (425-427 on x86_64 and aarch64)
# with EPERM, as Docker's default profile does, and allows everything else. Classic BPF:
#   load arch; if not ours -> allow; load nr; if io_uring_* -> EPERM; allow
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(os.uname().machine)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _io_uring_denied_program():
    ld, jeq, ret = 0x20, 0x15, 0x06
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    prog = [(ld, 0, 0, 4), (jeq, 0, 4, _AUDIT_ARCH or 0), (ld, 0, 0, 0),
            (jeq, 3, 0, 425), (jeq, 2, 0, 426), (jeq, 1, 0, 427),
            (ret, 0, 0, allow), (ret, 0, 0, eperm)]
    return (_SockFilter * len(prog))(*[_SockFilter(*f) for f in prog])


def _die_with_parent_and_deny_io_uring() -> None:
    """In the child before exec: die with pytest, and lose io_uring for good."""
    _die_with_parent()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    program = _io_uring_denied_program()
    fprog = _SockFprog(len(program), program)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if (libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0
            or libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog)) != 0):
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter")


class BrokerError(AssertionError):
    pass


class Broker:
    """One `keel` process we started, on a port and data dir we own."""

    def __init__(self, log_dir: Path, port: int | None = None,
                 advertised_port: int | None = None, fsync: str | None = None,
                 auto_create_topics: bool = True, default_partitions: int = 1,
                 shards: int = SHARDS, extra_args: list[str] | None = None,
                 data_parent: Path | None = None, deny_io_uring: bool = False):
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.data_dir = Path(tempfile.mkdtemp(prefix="keel-test-data-", dir=data_parent))
        self.log_path = log_dir / f"keel-{self.port}-{uuid.uuid4().hex[:6]}.log"
        self.args = [
            "--listen", f"127.0.0.1:{self.port}",
            "--advertised-listener", f"127.0.0.1:{self.advertised_port}",
            "--data-dir", str(self.data_dir),
            "--shards", str(shards),
            "--auto-create-topics", "true" if auto_create_topics else "false",
            "--default-partitions", str(default_partitions),
        ]
        if fsync is not None:
            self.args += ["--fsync", fsync]
        self.args += extra_args or []
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        # Under a seccomp filter that denies io_uring, as in a default Docker container.
        self.deny_io_uring = deny_io_uring
        assert not deny_io_uring or _AUDIT_ARCH, "io_uring denial needs x86_64 or aarch64"

    @property
    def bootstrap(self) -> str:
        """The address clients connect to (the advertised one, which a proxy may own)."""
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def listen_addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _fail(self, what: str) -> BrokerError:
        return BrokerError(f"{what}\n--- keel log ({self.log_path}) ---\n{self.log_tail()}")

    def start(self) -> None:
        if not KEEL_BIN.exists():
            raise BrokerError(f"no broker binary at {KEEL_BIN}: run "
                              "`cargo build --release -p keel-server` or set KEEL_BIN")
        assert self.proc is None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {self.starts}: {KEEL_BIN} {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(KEEL_BIN), *self.args], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=(_die_with_parent_and_deny_io_uring if self.deny_io_uring
                            else _die_with_parent),
                env=self._env())
        self._wait_ready()

    def _env(self) -> dict:
        env = {"RUST_BACKTRACE": "0", **os.environ}
        if self.deny_io_uring:
            env.pop("KEEL_IO_BACKEND", None)  # the broker's own choice is under test
        return env

    def _wait_ready(self) -> None:
        """Ready means: the port accepts a connection and this start's log says 'ready'."""
        deadline = time.monotonic() + START_TIMEOUT_S
        accepting = logged = False
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise self._fail(f"keel exited with status {code} during start-up")
            accepting = accepting or port_accepts(self.port)
            this_start = self.log_text().rsplit(f"=== start {self.starts}:", 1)[-1]
            logged = logged or re.search(r"\bready\b", this_start, re.I) is not None
            if accepting and logged:
                return
            time.sleep(0.05)
        pid = self.proc.pid
        self._kill()
        raise self._fail(f"keel (pid {pid}) not ready after {START_TIMEOUT_S}s: "
                         f"port {self.port} accepting={accepting}, log says ready={logged}")

    def stop(self) -> None:
        """SIGTERM by PID and expect a clean exit 0; SIGKILL (and fail) after a timeout."""
        if self.proc is None:
            return
        proc = self.proc
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill()
            raise self._fail(f"keel (pid {proc.pid}) still running {STOP_TIMEOUT_S}s after "
                             "SIGTERM; killed it")
        self.proc = None
        if code != 0:
            raise self._fail(f"keel (pid {proc.pid}) exited with status {code} after SIGTERM")

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def crash(self) -> None:
        """SIGKILL by PID, no warning: the crash tests' power-on-reset of the process."""
        assert self.proc is not None, "not running"
        self._kill()

    def restart(self) -> None:
        """Clean stop, then start again on the same port and data dir."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Teardown: stop (asserting a clean exit), and always remove the data dir."""
        try:
            self.stop()
        finally:
            self._kill()
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def broker_factory(request, tmp_path):
    """Start brokers with chosen flags; all are stopped and cleaned up after the test."""
    brokers: list[Broker] = []
    request.node.stash[BROKERS_KEY] = brokers

    def start(**kwargs) -> Broker:
        for attempt in range(3):
            b = Broker(tmp_path, **kwargs)
            brokers.append(b)
            try:
                b.start()
                return b
            except BrokerError:
                # Another process may take a free port between our probe and keel's bind.
                # Only a port we picked ourselves can be picked again.
                lost_race = re.search(r"in use|AddrInUse", b.log_text(), re.I) is not None
                if not lost_race or "port" in kwargs or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    yield start
    errors = []
    for b in brokers:
        try:
            b.close()
        except BrokerError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to this test."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:120]
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for b in item.stash.get(BROKERS_KEY, []):
            report.sections.append((f"keel log {b.log_path.name} (last {LOG_TAIL_LINES} lines)",
                                    b.log_tail()))
    return report
