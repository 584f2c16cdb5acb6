//! A whole `keel-bench sweep`, tiny (1 s runs, 0.2 s probes), through the binary against a real
//! keel broker over real sockets, then `keel-bench report` on its folder: so neither the load
//! generator nor the report can rot between real runs. Figures are not checked against any
//! bound (a shared machine gives no stable number), only that every run measured something,
//! no message was lost or refused, and every file and section is there.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{keel_bench, path_arg};
use keel_bench::kafka::summary::SweepSummary;
use keel_server::config::Config;
use keel_server::shutdown::ShutdownFlag;

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A keel broker in this process (one shard, fsync never), stopped when dropped.
struct InProcessBroker {
    flag: ShutdownFlag,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessBroker {
    fn start(addr: SocketAddr, data_dir: &Path) -> anyhow::Result<Self> {
        let config = Config::load_from([
            "keel".to_owned(),
            "--listen".to_owned(),
            addr.to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--shards".to_owned(),
            "1".to_owned(),
            "--pin-cores".to_owned(),
            "false".to_owned(),
            "--fsync".to_owned(),
            "never".to_owned(),
            "--io-memory-bytes".to_owned(),
            "262144".to_owned(),
        ])?;
        let flag = ShutdownFlag::default();
        let run_flag = flag.clone();
        let thread = std::thread::spawn(move || {
            if let Err(error) = keel_server::run(config, run_flag) {
                eprintln!("keel stopped: {error}");
            }
        });
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            anyhow::ensure!(Instant::now() < until, "keel did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            flag,
            thread: Some(thread),
        })
    }
}

impl Drop for InProcessBroker {
    fn drop(&mut self) {
        self.flag.trigger();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn tiny_sweep_against_keel_writes_and_regenerates_its_report() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let out = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let addr = free_addr()?;
    let _broker = InProcessBroker::start(addr, &scratch.path().join("keel-data"))?;
    let workload = scratch.path().join("tiny.toml");
    std::fs::write(
        &workload,
        "name = \"tiny\"\npartitions = 3\nproducers = 2\nconsumers = 1\nmessage_bytes = 512\n\
         keys = \"random:50\"\nbatch_bytes = 16384\nlinger_ms = 1\nduration_s = 1\nwarmup_s = 0.3\n",
    )?;
    let system = format!("keel={addr}");
    keel_bench(&[
        "sweep",
        "--workload",
        path_arg(&workload)?,
        "--fractions",
        "0.25,0.5",
        "--system",
        &system,
        "--limits-dir",
        path_arg(scratch.path())?,
        "--limits-seconds",
        "0.2",
        "--out",
        path_arg(out.path())?,
    ])?;
    let text = std::fs::read_to_string(out.path().join("summary.json"))?;
    let summary: SweepSummary = serde_json::from_str(&text)?;
    let keel = summary
        .system("keel")
        .ok_or_else(|| anyhow::anyhow!("no keel"))?;
    assert_eq!(keel.fixed.len(), 2);
    for run in std::iter::once(&keel.max).chain(&keel.fixed) {
        assert!(
            run.acked_messages > 0,
            "{}: nothing acknowledged",
            run.label
        );
        assert_eq!(
            run.produce_errors, 0,
            "{}: {:?}",
            run.label, run.first_error
        );
        assert!(run.produce_latency.count > 0, "{}", run.label);
        let e2e = run.e2e_latency.as_ref();
        assert!(
            e2e.is_some_and(|e| e.count > 0),
            "{}: nothing consumed",
            run.label
        );
        // Every message sent in the window is consumed (the consumers drain to the acked end).
        assert_eq!(
            run.consumed_messages, run.produce_latency.count,
            "{}",
            run.label
        );
    }
    assert!(!summary.checks().is_empty());
    common::report_regenerates(
        out.path(),
        &[
            "## Targets for keel",
            "## Maximum rate",
            "## Fixed-rate runs",
            "## Machine limits",
        ],
        "latency_vs_throughput.png",
        &[
            "latency_vs_throughput.png",
            "throughput_over_time.png",
            "spectrum_keel.png",
        ],
    )?;
    Ok(())
}
