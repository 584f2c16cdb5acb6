//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz_targets/`) and by the
//! regression test that replays the committed corpus and every crash found
//! (`server/tests/fuzz_regressions.rs`, which includes `targets.rs` by path).
pub mod targets;
