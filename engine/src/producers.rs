//! Idempotent producer state of one partition: for each producer id, its epoch and its last
//! few batches' sequence ranges, so that a retried batch is recognised (and answered with its
//! original offset, not written twice) and a gap is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{batch::BatchInfo, error::EngineError};

/// One remembered batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqBatch {
    /// Sequence of its first record.
    pub first_seq: i32,
    /// Sequence of its last record.
    pub last_seq: i32,
    /// Offset given to its first record.
    pub base_offset: i64,
    /// Offset given to its last record.
    pub last_offset: i64,
}

/// State of one producer id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// The current epoch.
    pub epoch: i16,
    /// The last batches, oldest first.
    pub batches: VecDeque<SeqBatch>,
}

/// What the sequence check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// Not idempotent, or the next sequence: write it.
    Accept,
    /// A retry of a batch already written: answer with its offsets.
    Duplicate(SeqBatch),
}

/// Producer states of a partition, bounded by `producers_max` ids and `batches_max` batches each.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Producers {
    map: HashMap<i64, ProducerEntry>,
}

fn last_seq_of(info: &BatchInfo) -> i32 {
    // Sequences wrap from i32::MAX to 0, as Kafka's do.
    let next = i64::from(info.base_sequence) + i64::from(info.last_offset_delta);
    i32::try_from(next % (i64::from(i32::MAX) + 1)).unwrap_or(0)
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl Producers {
    /// Checks a batch against the producer's state.
    ///
    /// # Errors
    /// `InvalidProducerEpoch` for an older epoch, `OutOfOrderSequence` for a gap.
    pub fn check(&self, info: &BatchInfo) -> Result<SeqCheck, EngineError> {
        if info.producer_id < 0 {
            return Ok(SeqCheck::Accept);
        }
        let Some(entry) = self.map.get(&info.producer_id) else {
            return Ok(SeqCheck::Accept);
        };
        if info.producer_epoch < entry.epoch {
            return Err(EngineError::InvalidProducerEpoch {
                producer_id: info.producer_id,
                current: entry.epoch,
                got: info.producer_epoch,
            });
        }
        if info.producer_epoch > entry.epoch {
            return if info.base_sequence == 0 {
                Ok(SeqCheck::Accept)
            } else {
                Err(EngineError::OutOfOrderSequence {
                    producer_id: info.producer_id,
                    expected: 0,
                    got: info.base_sequence,
                })
            };
        }
        let last_seq = last_seq_of(info);
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == info.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SeqCheck::Duplicate(*b));
        }
        let expected = entry
            .batches
            .back()
            .map_or(info.base_sequence, |b| next_seq(b.last_seq));
        if info.base_sequence == expected {
            Ok(SeqCheck::Accept)
        } else {
            Err(EngineError::OutOfOrderSequence {
                producer_id: info.producer_id,
                expected,
                got: info.base_sequence,
            })
        }
    }

    /// Records a batch written at `info.base_offset`.
    pub fn record(&mut self, info: &BatchInfo, producers_max: usize, batches_max: usize) {
        if info.producer_id < 0 {
            return;
        }
        if !self.map.contains_key(&info.producer_id) && self.map.len() >= producers_max {
            self.evict_oldest();
        }
        let entry = self.map.entry(info.producer_id).or_default();
        if info.producer_epoch != entry.epoch {
            entry.epoch = info.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(SeqBatch {
            first_seq: info.base_sequence,
            last_seq: last_seq_of(info),
            base_offset: info.base_offset,
            last_offset: info.last_offset(),
        });
        while entry.batches.len() > batches_max.max(1) {
            entry.batches.pop_front();
        }
    }

    /// Forgets the batches at offsets `offset` and on (they were queued, then dropped
    /// unwritten when the disk ran out of space), and producers left with none.
    pub fn forget_from(&mut self, offset: i64) {
        self.map.retain(|_, e| {
            while e.batches.back().is_some_and(|b| b.base_offset >= offset) {
                e.batches.pop_back();
            }
            !e.batches.is_empty()
        });
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .map
            .iter()
            .min_by_key(|(_, e)| e.batches.back().map_or(i64::MIN, |b| b.last_offset))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.map.remove(&id);
        }
    }

    /// Producer ids known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch;

    fn info(pid: i64, epoch: i16, seq: i32, count: usize, base: i64) -> BatchInfo {
        let values: Vec<&[u8]> = (0..count).map(|_| &b"v"[..]).collect();
        let b = batch::build_idempotent(0, &values, pid, epoch, seq);
        let mut i = batch::validate(&b, 1 << 20).expect("valid");
        i.base_offset = base;
        i
    }

    #[test]
    fn duplicate_is_found_and_gap_refused() {
        let mut p = Producers::default();
        let a = info(7, 0, 0, 3, 100);
        assert_eq!(p.check(&a).expect("ok"), SeqCheck::Accept);
        p.record(&a, 10, 5);
        match p.check(&info(7, 0, 0, 3, 0)).expect("ok") {
            SeqCheck::Duplicate(b) => assert_eq!(b.base_offset, 100),
            SeqCheck::Accept => panic!("expected a duplicate"),
        }
        assert_eq!(p.check(&info(7, 0, 3, 1, 0)).expect("ok"), SeqCheck::Accept);
        assert!(matches!(
            p.check(&info(7, 0, 5, 1, 0)),
            Err(EngineError::OutOfOrderSequence { expected: 3, .. })
        ));
    }

    #[test]
    fn epochs() {
        let mut p = Producers::default();
        p.record(&info(1, 2, 0, 1, 0), 10, 5);
        assert!(matches!(
            p.check(&info(1, 1, 1, 1, 0)),
            Err(EngineError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(p.check(&info(1, 3, 0, 1, 0)).expect("ok"), SeqCheck::Accept);
        assert!(p.check(&info(1, 3, 4, 1, 0)).is_err());
    }

    #[test]
    fn forgotten_batches_can_be_sent_again() {
        let mut p = Producers::default();
        p.record(&info(7, 0, 0, 2, 10), 10, 5);
        p.record(&info(7, 0, 2, 2, 12), 10, 5);
        p.record(&info(8, 0, 0, 1, 14), 10, 5);
        p.forget_from(12);
        assert_eq!(p.len(), 1);
        assert_eq!(p.check(&info(7, 0, 2, 2, 0)).expect("ok"), SeqCheck::Accept);
        assert_eq!(p.check(&info(8, 0, 0, 1, 0)).expect("ok"), SeqCheck::Accept);
    }

    #[test]
    fn bounded() {
        let mut p = Producers::default();
        for id in 0..20 {
            p.record(&info(id, 0, 0, 1, id), 10, 5);
        }
        assert_eq!(p.len(), 10);
    }
}
