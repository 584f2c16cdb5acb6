//! Data survives SIGTERM and a restart on the same data dir; the broker exits 0 after a clean
//! shutdown, and producer ids keep growing across restarts.

mod common;

use common::{batch, values, Broker, TestResult};
use kafka_protocol::messages::InitProducerIdRequest;

#[test]
fn data_survives_sigterm_and_restart() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let mut broker = Broker::start_in(&data, tmp.path(), &["--fsync", "always"])?;
    let mut c = broker.client()?;
    c.create_topic("kept", 3)?;
    for p in 0..3 {
        let v = format!("value-{p}");
        assert_eq!(
            c.produce(9, "kept", p, batch(&[&v, "second"])?)?.error_code,
            0
        );
    }
    let first_pid = c
        .send(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )?
        .producer_id;
    let status = broker.stop()?;
    assert!(
        status.success(),
        "clean shutdown exits 0: {status}\n{}",
        broker.log_text()
    );
    assert!(broker.log_text().contains("stopped cleanly"));

    let broker = Broker::start_in(&data, tmp.path(), &[])?;
    let mut c = broker.client()?;
    for p in 0..3 {
        let f = c.fetch(11, "kept", p, 0, 100)?;
        assert_eq!(f.high_watermark, 2);
        let got = values(&f.records.unwrap_or_default())?;
        assert_eq!(got, [format!("value-{p}"), "second".to_string()]);
    }
    assert_eq!(c.produce(9, "kept", 0, batch(&["third"])?)?.base_offset, 2);
    let pid = c
        .send(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )?
        .producer_id;
    assert!(
        pid.0 > first_pid.0,
        "producer ids never repeat: {pid:?} after {first_pid:?}"
    );
    Ok(())
}

#[test]
fn sigint_stops_an_idle_broker_with_open_connections() -> TestResult {
    let mut broker = Broker::start(&[])?;
    let _idle = broker.client()?;
    let mut polling = broker.client()?;
    polling.produce(9, "t", 0, batch(&["a"])?)?;
    let frame = polling.frame(11, &common::fetch_request("t", &[(0, 1)], 30_000))?;
    std::io::Write::write_all(&mut polling.stream, &frame)?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    broker.signal(libc::SIGINT)?;
    let start = std::time::Instant::now();
    let status = broker.stop_after_signal()?;
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "a long poll does not hold shutdown up"
    );
    Ok(())
}
