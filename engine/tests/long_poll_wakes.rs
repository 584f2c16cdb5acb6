//! A reader waiting for data on a partition another shard owns is woken by the append itself,
//! not by its deadline.
use std::time::{Duration, Instant};

mod common;

use keel_engine::{batch, rt, Offset, TopicOverrides, TopicPartition};

#[test]
fn append_wakes_a_waiting_reader_on_another_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = common::real_config(dir.path());
    c.shards = 2;
    keel_engine::run(c, |shard| async move {
        if shard.id() != 0 {
            return;
        }
        let meta = shard
            .create_topic("t", 2, TopicOverrides::default(), false)
            .await
            .expect("create");
        let remote = meta
            .partitions
            .iter()
            .find(|p| p.owner_shard == 1)
            .expect("one on shard 1")
            .index;
        let tp = TopicPartition::new("t", remote);
        let deadline = Instant::now() + Duration::from_secs(120);
        let waiter = {
            let (shard, tp) = (shard.clone(), tp.clone());
            rt::spawn_local(async move {
                shard
                    .wait_for_data(&tp, Offset(0), deadline)
                    .await
                    .expect("wait");
                Instant::now()
            })
        };
        rt::sleep(Duration::from_millis(50)).await;
        shard
            .append(&tp, batch::build(0, &[b"wake up"]))
            .await
            .expect("append");
        let woke = waiter.await;
        assert!(
            woke < deadline - Duration::from_secs(60),
            "woken by the append, not the deadline"
        );
        let r = shard.read(&tp, Offset(0), 1024).await.expect("read");
        assert_eq!(r.batches.len(), 1);
    })
    .expect("engine ran");
}
