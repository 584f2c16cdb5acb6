//! Replays the fuzz targets' committed inputs through the targets' own code
//! (`fuzz/src/targets.rs`, included by path): the seed corpus (`fuzz/corpus/<target>/`) and
//! every crash a fuzzer found (`fuzz/regressions/<target>/`, one file per crash, named for
//! what it broke). So a fixed crash stays fixed in the ordinary test run, without nightly or
//! cargo-fuzz.
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::messages::RequestHeader;
use keel_server::codec::RawRequest;

// As in the broker: allocations for lengths read off the wire are reserved lazily.
#[global_allocator]
static ALLOC: keel_server::alloc::LazyLargeAlloc = keel_server::alloc::LazyLargeAlloc;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no committed inputs for {target}");
    out
}

fn replay(target: &str, f: fn(&[u8])) {
    for (path, data) in inputs(target) {
        let result = std::panic::catch_unwind(|| f(&data));
        assert!(result.is_ok(), "{target} fails on {}", path.display());
    }
}

#[test]
fn request_frames() {
    replay("request_frames", targets::request_frames);
}

#[test]
fn record_batch() {
    replay("record_batch", targets::record_batch);
}

#[test]
fn recovery_scan() {
    replay("recovery_scan", targets::recovery_scan);
}

#[test]
fn index_files() {
    replay("index_files", targets::index_files);
}

#[test]
fn catalog_files() {
    replay("catalog_files", targets::catalog_files);
}

/// The request target decodes every API keel advertises (a new handler must be added there).
#[test]
fn every_api_keel_serves_is_fuzzed() {
    for (api, range) in keel_server::handlers::APIS {
        let raw = RawRequest {
            api: *api,
            header: RequestHeader::default().with_request_api_version(range.max),
            body: Bytes::new(),
        };
        assert!(
            targets::decode_request(&raw),
            "fuzz/src/targets.rs decode_request does not know {api:?}"
        );
    }
}
