//! A shard that panics does not leave the other shards waiting for it forever: `run` returns
//! an error naming the failed shard.
mod common;

use keel_engine::EngineError;

#[test]
fn a_panicking_shard_ends_the_run_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = common::real_config(dir.path());
    c.shards = 2;
    let r = keel_engine::run(c, |shard| async move {
        assert!(shard.id() != 1, "shard 1 fails on purpose");
    });
    assert!(matches!(r, Err(EngineError::ShardFailed(1))), "{r:?}");
}
