//! The idempotent producer: InitProducerId gives fresh ids; a retried batch is acknowledged
//! with its first offset and not written twice; a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER.

mod common;

use common::{idempotent_batch, values, Broker, TestResult};
use kafka_protocol::messages::InitProducerIdRequest;

#[test]
fn retries_are_deduplicated_and_gaps_refused() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let a = c.send(4, &init)?;
    let b = c.send(1, &init)?;
    assert_eq!((a.error_code, a.producer_epoch), (0, 0));
    assert!(a.producer_id.0 >= 0 && b.producer_id.0 > a.producer_id.0);
    let pid = a.producer_id.0;

    let first = idempotent_batch(pid, 0, 0, &["a", "b"])?;
    let p = c.produce(9, "idem", 0, first.clone())?;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let p = c.produce(9, "idem", 0, first)?;
    assert_eq!(
        (p.error_code, p.base_offset),
        (0, 0),
        "the retry gets the first offset"
    );
    let p = c.produce(9, "idem", 0, idempotent_batch(pid, 0, 2, &["c"])?)?;
    assert_eq!((p.error_code, p.base_offset), (0, 2));
    let p = c.produce(9, "idem", 0, idempotent_batch(pid, 0, 9, &["gap"])?)?;
    assert_eq!(p.error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");

    let f = c.fetch(11, "idem", 0, 0, 100)?;
    assert_eq!(values(&f.records.unwrap_or_default())?, ["a", "b", "c"]);

    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(common::topic("txn").0.into()))
        .with_transaction_timeout_ms(60_000);
    assert_ne!(c.send(4, &txn)?.error_code, 0, "transactions are refused");
    Ok(())
}
