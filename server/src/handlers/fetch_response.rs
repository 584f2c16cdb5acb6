//! The Fetch response, v4-v12, encoded without copying large record batches.
//!
//! kafka-protocol encodes a response into one buffer, which would copy every batch a fetch
//! returns (and first concatenate the batches of a partition, since its `records` is one
//! `Bytes`). Here the response is a list of chunks instead: the fields go into small owned
//! buffers, and each batch of at least [`SHARED_BATCH_BYTES`] goes out as the very `Bytes`
//! the engine returned (from its batch cache or its read buffer). Smaller batches are copied
//! into the field buffer, where one write of many small pieces costs less than many writes.
//!
//! ```text
//! [len|header|fields..|records len] [batch (shared)] [batch (shared)] [fields..|records len] ...
//! ```
//! Everything but `records` is taken from a [`FetchResponse`] built as usual (with `records`
//! left `None`); the unit tests check the bytes against kafka-protocol's own encoding for
//! every version served.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse};

use crate::error::ConnectionError;

/// Batches of at least this size are sent as shared buffers rather than copied.
pub const SHARED_BATCH_BYTES: usize = 16 * 1024;

/// The first version whose Fetch response is flexible (compact strings, tagged fields).
const FLEXIBLE: i16 = 12;

/// Encodes `response` with the batches of each partition in `batches` (in request order,
/// one entry per partition) as a framed response: the chunks to write, in order.
///
/// # Errors
/// A version outside 4-12, fields set that those versions cannot carry, or a mismatch between
/// the partitions and `batches` (a broker bug each).
pub fn encode(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    batches: &[Vec<Bytes>],
) -> Result<Vec<Bytes>, ConnectionError> {
    let bug = |reason: &str| ConnectionError::Encode {
        api: ApiKey::Fetch as i16,
        version,
        reason: reason.to_string(),
    };
    if !(4..=FLEXIBLE).contains(&version) {
        return Err(bug("version outside 4-12"));
    }
    let flexible = version >= FLEXIBLE;
    let mut w = ChunkWriter::new();
    w.cur.put_i32(correlation_id);
    if flexible {
        w.uvarint(0); // response header v1: no tagged fields
    }
    w.cur.put_i32(response.throttle_time_ms);
    if version >= 7 {
        w.cur.put_i16(response.error_code);
        w.cur.put_i32(response.session_id);
    }
    w.array_len(flexible, response.responses.len());
    let mut batches = batches.iter();
    for topic in &response.responses {
        w.string(flexible, topic.topic.as_str());
        w.array_len(flexible, topic.partitions.len());
        for p in &topic.partitions {
            if !p.unknown_tagged_fields.is_empty() || p.records.is_some() {
                return Err(bug("a partition carries records or tagged fields itself"));
            }
            w.cur.put_i32(p.partition_index);
            w.cur.put_i16(p.error_code);
            w.cur.put_i64(p.high_watermark);
            w.cur.put_i64(p.last_stable_offset);
            if version >= 5 {
                w.cur.put_i64(p.log_start_offset);
            }
            match &p.aborted_transactions {
                Some(a) if a.is_empty() => w.array_len(flexible, 0),
                Some(_) => return Err(bug("aborted transactions are not encoded here")),
                None => w.null_array(flexible),
            }
            if version >= 11 {
                w.cur.put_i32(p.preferred_read_replica.0);
            }
            w.records(
                flexible,
                batches
                    .next()
                    .ok_or_else(|| bug("fewer batch lists than partitions"))?,
            );
            if flexible {
                w.uvarint(0); // no diverging epoch, current leader or snapshot id
            }
        }
        if flexible {
            w.uvarint(0);
        }
    }
    if flexible {
        w.uvarint(0);
    }
    if batches.next().is_some() {
        return Err(bug("more batch lists than partitions"));
    }
    Ok(w.finish())
}

/// Writes small fields into an owned buffer and large batches as shared chunks.
struct ChunkWriter {
    chunks: Vec<Bytes>,
    /// The first owned buffer, which starts with the frame length to patch at the end.
    head: Option<BytesMut>,
    cur: BytesMut,
}

impl ChunkWriter {
    fn new() -> Self {
        let mut cur = BytesMut::with_capacity(4096);
        cur.put_u32(0); // the frame length, patched by finish()
        ChunkWriter {
            chunks: Vec::new(),
            head: None,
            cur,
        }
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            // Truncation intended: the low 7 bits with the continuation bit.
            self.cur.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.cur.put_u8(v as u8);
    }

    fn array_len(&mut self, flexible: bool, n: usize) {
        if flexible {
            self.uvarint(n as u64 + 1);
        } else {
            self.cur.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
        }
    }

    fn null_array(&mut self, flexible: bool) {
        if flexible {
            self.uvarint(0);
        } else {
            self.cur.put_i32(-1);
        }
    }

    fn string(&mut self, flexible: bool, s: &str) {
        if flexible {
            self.uvarint(s.len() as u64 + 1);
        } else {
            self.cur.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
        }
        self.cur.put_slice(s.as_bytes());
    }

    fn records(&mut self, flexible: bool, batches: &[Bytes]) {
        let len: usize = batches.iter().map(Bytes::len).sum();
        if flexible {
            self.uvarint(len as u64 + 1);
        } else {
            self.cur.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
        }
        for b in batches {
            if b.len() < SHARED_BATCH_BYTES {
                self.cur.put_slice(b);
            } else {
                self.flush();
                self.chunks.push(b.clone());
            }
        }
    }

    /// Ends the owned buffer in progress (it becomes a chunk) and starts a new one.
    fn flush(&mut self) {
        let done = std::mem::replace(&mut self.cur, BytesMut::with_capacity(1024));
        match self.head {
            None => self.head = Some(done),
            Some(_) => self.chunks.push(done.freeze()),
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        let tail = std::mem::take(&mut self.cur);
        let (mut head, tail) = match self.head.take() {
            Some(head) => (head, Some(tail)),
            None => (tail, None),
        };
        let total = head.len()
            + self.chunks.iter().map(Bytes::len).sum::<usize>()
            + tail.as_ref().map_or(0, BytesMut::len);
        let frame_len = u32::try_from(total - 4).unwrap_or(u32::MAX);
        head[..4].copy_from_slice(&frame_len.to_be_bytes());
        let mut out = Vec::with_capacity(self.chunks.len() + 2);
        out.push(head.freeze());
        out.append(&mut self.chunks);
        if let Some(tail) = tail.filter(|t| !t.is_empty()) {
            out.push(tail.freeze());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_response;
    use kafka_protocol::messages::{
        fetch_response::{FetchableTopicResponse, PartitionData},
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    fn batch(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    /// A response with small, large and no batches, and an error partition.
    fn sample() -> (FetchResponse, Vec<Vec<Bytes>>) {
        let batches = vec![
            vec![batch(100, 1), batch(40_000, 2), batch(10, 3)],
            vec![],
            vec![batch(SHARED_BATCH_BYTES, 4)],
            vec![],
        ];
        let part = |i: i32| {
            PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(100 + i64::from(i))
                .with_last_stable_offset(100 + i64::from(i))
                .with_log_start_offset(i64::from(i))
                .with_records(None)
        };
        let resp = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("alpha")))
                .with_partitions(vec![part(0), part(1)]),
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("beta")))
                .with_partitions(vec![
                    part(7),
                    part(8).with_error_code(1).with_high_watermark(-1),
                ]),
        ]);
        (resp, batches)
    }

    #[test]
    fn bytes_match_kafka_protocol_for_every_version() -> Result<(), ConnectionError> {
        let (resp, batches) = sample();
        let mut whole = resp.clone();
        let mut lists = batches.iter();
        for t in &mut whole.responses {
            for p in &mut t.partitions {
                let joined: Vec<u8> = lists
                    .next()
                    .into_iter()
                    .flatten()
                    .flat_map(|b| b.to_vec())
                    .collect();
                p.records = Some(Bytes::from(joined));
            }
        }
        for version in 4..=FLEXIBLE {
            let expected = encode_response(ApiKey::Fetch, version, 42, &whole)?;
            let chunks = encode(version, 42, &resp, &batches)?;
            let got: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
            assert_eq!(got, expected.to_vec(), "v{version}");
            let shared = chunks
                .iter()
                .filter(|c| c.len() >= SHARED_BATCH_BYTES)
                .count();
            assert_eq!(shared, 2, "the two large batches go out uncopied");
        }
        Ok(())
    }

    #[test]
    fn small_responses_are_one_chunk() -> Result<(), ConnectionError> {
        let (resp, _) = sample();
        let chunks = encode(11, 1, &resp, &[vec![], vec![], vec![], vec![]])?;
        assert_eq!(chunks.len(), 1);
        Ok(())
    }

    #[test]
    fn mismatched_batch_lists_are_refused() {
        let (resp, _) = sample();
        assert!(encode(11, 1, &resp, &[vec![]]).is_err());
        assert!(encode(11, 1, &resp, &vec![vec![]; 5]).is_err());
    }
}
