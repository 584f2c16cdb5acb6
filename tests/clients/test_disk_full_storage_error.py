"""A full disk: produce gets KAFKA_STORAGE_ERROR, fetch keeps working, and after space is
freed (a topic deleted) produce works again with nothing acknowledged lost.

The broker's data dir is on a small ext4 file system made for the test (a 64 MiB image,
loop-mounted; this needs root, as on CI). If it cannot be made or mounted, the test fails
and says why: it is never skipped.

Two topics fill the disk with acks=all produce requests of 64 KiB batches, alternately,
until `kept` answers KAFKA_STORAGE_ERROR (56). Then:
- every acknowledged batch of both topics is fetched back whole (CRC checked),
- a further produce gets the same error code again, promptly (no hang, no crash),
- `filler` is deleted through DeleteTopics; its space comes back,
- produce to `kept` works again, at the offset right after its last acknowledged batch
  (the failed batches' offsets were given back: no gap, nothing half-written in between),
- after a clean restart, `kept` holds exactly what was acknowledged, in order.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import clients as c
import kafka_wire as kw

KAFKA_STORAGE_ERROR = 56
IMAGE_BYTES = 64 << 20
BATCH_RECORDS = 16
RECORD_BYTES = 4096


def run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.fail(f"disk-full test needs a loop-mounted ext4 image (root, mkfs.ext4, "
                    f"mount -o loop); `{' '.join(cmd)}` failed with {res.returncode}: "
                    f"{res.stderr.strip()}", pytrace=False)


@pytest.fixture
def small_fs(tmp_path):
    """A fresh 64 MiB ext4 file system, mounted for this test only; unmounted after."""
    image, mnt = tmp_path / "disk.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(IMAGE_BYTES)
    run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)])
    run(["mount", "-o", "loop", str(image), str(mnt)])
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        image.unlink(missing_ok=True)


def batch(tag: bytes, i: int) -> bytes:
    return kw.record_batch([kw.Record(None, b"%s-%d-%d|" % (tag, i, r) + b"x" * RECORD_BYTES)
                            for r in range(BATCH_RECORDS)])


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_acked(bootstrap: str, topic: str, acked: dict[int, bytes]) -> None:
    """Every acknowledged batch is there at its offset, whole, and the log has no gap."""
    batches, hw = kw.read_all_batches(bootstrap, topic, 0, timeout_s=120)
    assert all(b.crc_ok for b in batches), f"{topic}: a batch fails its CRC"
    by_offset = {b.base_offset: b for b in batches}
    offsets = sorted(by_offset)
    for a, b in zip(offsets, offsets[1:]):
        assert by_offset[a].base_offset + by_offset[a].last_offset_delta + 1 == b, f"{topic}: gap at {a}"
    for off, first_value in acked.items():
        assert off in by_offset, f"{topic}: acknowledged batch at {off} lost (watermark {hw})"
        assert by_offset[off].records[0][2] == first_value, f"{topic}@{off}: other data"


def test_disk_full_gives_storage_error_and_recovers(small_fs, broker_factory, topic):
    broker = broker_factory(
        data_parent=small_fs, fsync="always",
        extra_args=["--preallocate-bytes", str(1 << 20), "--segment-bytes-max", str(4 << 20)])
    kept, filler = topic + "-kept", topic + "-filler"
    c.create_topic(broker.bootstrap, kept, 1)
    c.create_topic(broker.bootstrap, filler, 1)
    acked: dict[str, dict[int, bytes]] = {kept: {}, filler: {}}
    errors: dict[str, int] = {}
    i = 0
    with kw.Connection(broker.bootstrap, timeout_s=30) as conn:
        while kept not in errors:
            assert i < 2 * IMAGE_BYTES // (BATCH_RECORDS * RECORD_BYTES), "the disk never filled"
            for t in (kept, filler):
                b = batch(t.encode()[-4:], i)
                r = conn.produce(t, 0, b)
                if r.error_code == kw.NONE:
                    acked[t][r.base_offset] = kw.decode_record_batches(b)[0].records[0][2]
                else:
                    errors[t] = r.error_code
            i += 1
        assert errors[kept] == KAFKA_STORAGE_ERROR, f"produce on a full disk: error {errors}"
        print(f"disk full after {i} rounds: acked {len(acked[kept])} + {len(acked[filler])} "
              f"batches of {BATCH_RECORDS * RECORD_BYTES} bytes; free {free_bytes(small_fs)}")

        # Fetches of existing data keep working; a further produce gets the same answer.
        check_acked(broker.bootstrap, kept, acked[kept])
        check_acked(broker.bootstrap, filler, acked[filler])
        r = conn.produce(kept, 0, batch(b"more", 0))
        assert r.error_code == KAFKA_STORAGE_ERROR, f"still full: error {r.error_code}"

        # Free space by deleting a topic; produce works again, right after the last ack.
        before = free_bytes(small_fs)
        admin = c.confluent_admin(broker.bootstrap)  # must outlive its futures
        admin.delete_topics([filler])[filler].result(30)
        deadline = time.monotonic() + 30
        while free_bytes(small_fs) < before + (8 << 20):
            assert time.monotonic() < deadline, "deleting the topic freed no space"
            time.sleep(0.1)
        next_offset = max(acked[kept]) + BATCH_RECORDS
        for j in range(20):
            b = batch(b"after", j)
            r = conn.produce(kept, 0, b)
            assert r.error_code == kw.NONE, f"produce after space returned: error {r.error_code}"
            assert r.base_offset == next_offset, "offsets of failed batches were given back"
            acked[kept][r.base_offset] = kw.decode_record_batches(b)[0].records[0][2]
            next_offset += BATCH_RECORDS
    check_acked(broker.bootstrap, kept, acked[kept])
    broker.restart()
    check_acked(broker.bootstrap, kept, acked[kept])
    log = broker.log_text()
    assert "out of space" in log, "the broker logs what happened"
