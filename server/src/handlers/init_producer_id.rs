//! InitProducerId (key 22), v0-v4: a new producer id, epoch 0, for an idempotent producer.
//!
//! Ids come from the broker state's counter, which survives restarts (see [`crate::state`]),
//! so a restarted broker never gives an id whose sequence numbers the engine still remembers.
//! Kafka gives a non-transactional producer a fresh id even when it names its old one (a
//! producer resets this way after a fatal sequence error), and so does keel. Transactions are
//! not implemented: a transactional id is refused.

use kafka_protocol::{
    error::ResponseError,
    messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId},
};

use crate::broker::Ctx;

/// Answers InitProducerId.
pub async fn handle(
    ctx: &Ctx,
    _version: i16,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return failed(ResponseError::TransactionalIdAuthorizationFailed);
    }
    match ctx.broker.state.next_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::KafkaStorageError)
        }
    }
}
