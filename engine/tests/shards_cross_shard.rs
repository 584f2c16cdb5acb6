//! The real engine: executors and files of the backend `KEEL_IO_BACKEND` names, on a real
//! file system. Partitions spread over
//! two shards; one shard appends to and reads from partitions the other owns; a second start
//! on the same data dir (after a clean stop) finds everything; topic admin works across shards.
use std::sync::{Arc, Mutex};

mod common;

use keel_engine::{batch, EngineConfig, Offset, TopicOverrides, TopicPartition};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = common::real_config(dir);
    c.shards = 2;
    c.batch_cache_bytes_max = 0; // every read goes to the disk
    c
}

#[test]
fn appends_and_reads_cross_shards_and_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    keel_engine::run(config(dir.path()), move |shard| {
        let seen = Arc::clone(&seen2);
        async move {
            if shard.id() != 0 {
                return;
            }
            let meta = shard
                .create_topic("orders", 4, TopicOverrides::default(), false)
                .await
                .expect("create");
            let owners: Vec<u32> = meta.partitions.iter().map(|p| p.owner_shard).collect();
            assert!(
                owners.contains(&0) && owners.contains(&1),
                "partitions spread: {owners:?}"
            );
            for round in 0..50 {
                for p in 0..4 {
                    let value = format!("p{p}-m{round}");
                    let b = batch::build(round, &[value.as_bytes()]);
                    let out = shard
                        .append(&TopicPartition::new("orders", p), b)
                        .await
                        .expect("append");
                    assert_eq!(out.base_offset, Offset(round));
                }
            }
            for p in 0..4 {
                let tp = TopicPartition::new("orders", p);
                let r = shard.read(&tp, Offset(10), 1 << 20).await.expect("read");
                assert_eq!(r.high_watermark, Offset(50));
                assert_eq!(
                    batch::validate(&r.batches[0], usize::MAX)
                        .expect("valid")
                        .base_offset,
                    10
                );
                seen.lock().expect("lock").push(r.batches.len());
            }
            assert!(matches!(
                shard
                    .create_topic("orders", 1, TopicOverrides::default(), false)
                    .await,
                Err(keel_engine::EngineError::TopicAlreadyExists(_))
            ));
            shard
                .create_topic("doomed", 2, TopicOverrides::default(), false)
                .await
                .expect("create");
            shard.delete_topic("doomed").await.expect("delete");
            assert!(!shard.catalog().topics.contains_key("doomed"));
            shard
                .create_partitions("orders", 6, false)
                .await
                .expect("grow");
            let out = shard
                .append(
                    &TopicPartition::new("orders", 5),
                    batch::build(0, &[b"new"]),
                )
                .await
                .expect("append to new partition");
            assert_eq!(out.base_offset, Offset(0));
        }
    })
    .expect("engine ran");
    assert_eq!(*seen.lock().expect("lock"), vec![40, 40, 40, 40]);
    assert!(!dir.path().join("doomed-0").exists() && !dir.path().join("doomed-1").exists());

    keel_engine::run(config(dir.path()), move |shard| async move {
        if shard.id() != 1 {
            return;
        }
        for p in 0..4 {
            let o = shard
                .offsets(&TopicPartition::new("orders", p))
                .await
                .expect("offsets");
            assert_eq!(o.high_watermark, Offset(50));
            assert_eq!(o.log_start, Offset(0));
        }
        let (offset, _) = shard
            .list_offset(
                &TopicPartition::new("orders", 2),
                keel_engine::OffsetSpec::Timestamp(20),
            )
            .await
            .expect("list offset");
        assert_eq!(offset, Offset(20));
        assert_eq!(shard.catalog().topics["orders"].partitions.len(), 6);
    })
    .expect("engine restarted");
}
