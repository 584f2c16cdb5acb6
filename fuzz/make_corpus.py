"""Writes the small seed corpus of each fuzz target into fuzz/corpus/<target>/ (committed).

Run from the repository root with the client tests' venv, which has the wire encoders:
    tests/clients/.venv/bin/python fuzz/make_corpus.py
The seeds are valid inputs (requests of several APIs, record batches, a recoverable
partition directory, index files, a catalog and a broker state file), so that the fuzzers
start from the broker's real formats and mutate from there.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clients"))
import kafka_wire as kw  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"


def put(target: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def batch(values: list[bytes], base_offset: int = 0, ts: int = 1_700_000_000_000) -> bytes:
    return kw.record_batch([kw.Record(b"k", v) for v in values], base_offset=base_offset,
                           base_timestamp_ms=ts)


def request(api: int, version: int, body: bytes, flexible: bool = False) -> bytes:
    return kw.frame(kw.request_header(api, version, 7, flexible=flexible) + body)


def requests() -> None:
    produce = kw.produce_request_v3({"t": {0: batch([b"a", b"bb"]), 1: batch([b"c"])}})
    frames = [
        request(kw.API_API_VERSIONS, 0, kw.api_versions_request(0)),
        request(kw.API_API_VERSIONS, 3, kw.api_versions_request(3), flexible=True),
        request(kw.API_METADATA, 1, kw.metadata_request_v1(["t", "u"])),
        request(kw.API_PRODUCE, 3, produce),
        request(kw.API_FETCH, 4, kw.fetch_request_v4({"t": {0: 0, 1: 5}})),
    ]
    for f in frames:
        put("request_frames", f)
    put("request_frames", b"".join(frames))  # a pipelined stream


def batches() -> None:
    put("record_batch", batch([b"one"]))
    put("record_batch", batch([b"x" * 100, b"y", b""]) + batch([b"z"], base_offset=3))
    put("record_batch", kw.record_batch([kw.Record(None, b"idem")], producer_id=9,
                                        producer_epoch=0, base_sequence=0))


def index_entries(entries: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<II", rel, pos) for rel, pos in entries)


def time_entries(entries: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<qII", ts, rel, 0) for ts, rel in entries)


def partition_dirs() -> None:
    log, index, times, off, pos = b"", [], [], 0, 0
    for i in range(12):
        b = batch([b"r%d-%d" % (i, j) for j in range(3)], base_offset=off, ts=1000 + 10 * i)
        if i % 4 == 0:
            index.append((off, pos))
        times.append((1000 + 10 * i, off))
        log += b
        off += 3
        pos += len(b)
    idx, tidx = index_entries(index), time_entries(times)
    split = len(log) // 2
    for flags in (0, 1, 2, 4):
        head = struct.pack("<BHHH", flags, len(idx), len(tidx), split)
        put("recovery_scan", head + idx + tidx + log)
    # A torn tail: the last batch cut short.
    head = struct.pack("<BHHH", 0, len(idx), len(tidx), 0)
    put("recovery_scan", head + idx + tidx + log[:-20])
    put("index_files", bytes([len(tidx) % 256]) + tidx[: len(tidx) % 256] + idx)
    put("index_files", bytes([32]) + time_entries([(5, 0), (9, 4)]) + index_entries([(0, 0), (4, 300)]))


def files() -> None:
    catalog = {
        "version": 1,
        "topics": {"fuzz-topic": {
            "name": "fuzz-topic", "id": list(range(16)),
            "partitions": [{"index": 0, "owner_shard": 0, "uid": 0},
                           {"index": 1, "owner_shard": 1, "uid": 1}],
            "overrides": {"segment_bytes_max": 1048576, "segment_ms": None,
                          "retention_ms": 3600000, "retention_bytes": None,
                          "index_interval_bytes": None},
        }},
        "next_uid": 2,
    }
    put("catalog_files", b"\x00" + json.dumps(catalog, indent=2).encode())
    put("catalog_files", b"\x01" + b'cluster_id = "r6Z3Auh7RCG_Ilg_uaQBog"\nnext_producer_id = 0\n')


if __name__ == "__main__":
    requests()
    batches()
    partition_dirs()
    files()
    for d in sorted(CORPUS.iterdir()):
        print(d.name, len(list(d.iterdir())))
