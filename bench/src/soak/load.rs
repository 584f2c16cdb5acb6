//! What the soak's group and admin threads share with its main thread: where the broker is,
//! when to stop, and the tallies the report prints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::config::SoakConfig;
use crate::histogram::{new_histogram, take_interval};
use crate::kafka::run::LATENCY_US_MAX;

/// Longest a load thread sleeps before it looks at the stop flag again.
const SLEEP_STEP: Duration = Duration::from_millis(100);

/// What the consumer group's members did, over the whole soak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupFigures {
    /// JoinGroup answered with a generation (a MEMBER_ID_REQUIRED round trip not counted).
    pub joins: u64,
    pub syncs: u64,
    /// The highest generation any member saw: one more per rebalance of the group.
    pub generation_max: i64,
    pub heartbeats: u64,
    /// Heartbeats answered REBALANCE_IN_PROGRESS: the member then rejoined.
    pub rebalances: u64,
    /// OffsetCommit requests answered without error, and the partitions they committed.
    pub commits: u64,
    pub committed_partitions: u64,
    pub offset_fetches: u64,
    pub leaves: u64,
    /// Commits or syncs cut short by a rebalance (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION):
    /// how the protocol works, not errors.
    pub interrupted: u64,
    /// Anything else: an error code a healthy broker does not send here, or a failed request.
    pub errors: u64,
    pub first_error: Option<String>,
}

/// What the admin load did, over the whole soak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminFigures {
    /// Complete cycles (create, produce, list offsets, metadata, configs, groups, delete).
    pub cycles: u64,
    pub topics_created: u64,
    pub topics_deleted: u64,
    pub produces: u64,
    pub list_offsets: u64,
    pub metadata: u64,
    pub describe_configs: u64,
    pub describe_groups: u64,
    /// Requests answered, all kinds together (their latencies are in the admin histograms).
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Counts one error, and keeps its note if it is the first.
fn note_error(errors: &mut u64, first_error: &mut Option<String>, note: String) {
    *errors += 1;
    first_error.get_or_insert(note);
}

/// Shared by every thread of the soak.
#[derive(Debug)]
pub struct LoadCtx {
    pub bootstrap: SocketAddr,
    pub config: SoakConfig,
    pub topic: String,
    pub start: Instant,
    /// When the producers stop generating: group and admin load stop then too.
    pub end: Instant,
    stop: AtomicBool,
    group: Mutex<GroupFigures>,
    admin: Mutex<AdminFigures>,
    /// Admin request latencies (µs) of the current interval.
    admin_latency: Mutex<Histogram<u64>>,
}

impl LoadCtx {
    pub fn new(bootstrap: SocketAddr, config: SoakConfig, topic: String) -> anyhow::Result<Self> {
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(config.load_s());
        Ok(Self {
            bootstrap,
            config,
            topic,
            start,
            end,
            stop: AtomicBool::new(false),
            group: Mutex::default(),
            admin: Mutex::default(),
            admin_latency: Mutex::new(new_histogram(LATENCY_US_MAX)?),
        })
    }

    /// Whether load threads should finish: the end is reached or the soak is stopping early.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire) || Instant::now() >= self.end
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Sleeps until `at`; false (at once) when the soak is stopping meanwhile.
    pub fn sleep_until(&self, at: Instant) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= at {
                return true;
            }
            std::thread::sleep((at - now).min(SLEEP_STEP));
        }
    }

    /// Seconds since the load started, in whole microseconds: the CSV files keep six
    /// decimals, so a time read back is the time written, and a report redrawn from them
    /// is the report written.
    pub fn t_s(&self) -> f64 {
        self.start.elapsed().as_micros() as f64 / 1e6
    }

    pub fn group(&self, update: impl FnOnce(&mut GroupFigures)) {
        if let Ok(mut figures) = self.group.lock() {
            update(&mut figures);
        }
    }

    pub fn group_error(&self, error: &anyhow::Error) {
        tracing::warn!(error = format!("{error:#}"), "group load");
        let note = self.error_note(error);
        self.group(|g| note_error(&mut g.errors, &mut g.first_error, note));
    }

    /// An error as the report shows it: when it happened and the whole chain of causes.
    fn error_note(&self, error: &anyhow::Error) -> String {
        format!("{:.0} s: {error:#}", self.t_s())
    }

    pub fn admin(&self, update: impl FnOnce(&mut AdminFigures)) {
        if let Ok(mut figures) = self.admin.lock() {
            update(&mut figures);
        }
    }

    pub fn admin_error(&self, error: &anyhow::Error) {
        tracing::warn!(error = format!("{error:#}"), "admin load");
        let note = self.error_note(error);
        self.admin(|a| note_error(&mut a.errors, &mut a.first_error, note));
    }

    /// Records one answered admin request that took `latency`.
    pub fn admin_answered(&self, latency: Duration) {
        self.admin(|a| a.requests += 1);
        if let Ok(mut histogram) = self.admin_latency.lock() {
            let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            histogram.saturating_record(us.max(1));
        }
    }

    /// The admin latencies of the interval now ending, replaced by an empty histogram.
    pub fn take_admin_latency(&self) -> anyhow::Result<Histogram<u64>> {
        take_interval(&self.admin_latency, LATENCY_US_MAX)
    }

    pub fn group_figures(&self) -> GroupFigures {
        self.group.lock().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn admin_figures(&self) -> AdminFigures {
        self.admin.lock().map(|a| a.clone()).unwrap_or_default()
    }
}
