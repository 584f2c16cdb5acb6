//! The records the group coordinator keeps in `__consumer_offsets`, and their bytes.
//!
//! Every record is an ordinary Kafka record (key, value) inside an ordinary RecordBatch v2,
//! appended through `Shard::append`, so durability, CRCs and recovery are the engine's. The
//! key and value encodings are keel's own, little-endian, and documented byte by byte in
//! `docs/consumer-offsets.md`. A record with a null value is a tombstone: the offset (or the
//! group) named by its key is gone. Replay applies the records in log order; the last record
//! for a key wins.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Key kind of a committed offset.
const KIND_OFFSET: u8 = 0;
/// Key kind of a group's metadata.
const KIND_GROUP: u8 = 1;
/// Version of both value encodings.
const VALUE_VERSION: u8 = 0;
/// A null string is written with this length.
const NULL_LEN: u16 = u16::MAX;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The committed offset.
    pub offset: i64,
    /// The leader epoch the client gave (-1: none).
    pub leader_epoch: i32,
    /// When the commit was accepted (ms since the epoch).
    pub commit_ms: i64,
    /// The client's metadata string.
    pub metadata: String,
}

/// One member of a group as stored (with the protocol the group chose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// Member id.
    pub id: String,
    /// Static member id (`group.instance.id`).
    pub instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group's metadata as stored: written when a generation's assignment is settled (or the
/// group became empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// Generation.
    pub generation: i32,
    /// Protocol type (`consumer`), if any member ever joined.
    pub protocol_type: Option<String>,
    /// The chosen protocol (the assignor name).
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the group entered its state (ms since the epoch).
    pub state_ms: i64,
    /// The members of this generation.
    pub members: Vec<MemberValue>,
}

/// What a record in `__consumer_offsets` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRecord {
    /// A committed offset, or its deletion (`None`).
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset, or `None` for a tombstone.
        value: Option<OffsetValue>,
    },
    /// A group's metadata, or its deletion (`None`).
    Group {
        /// The group.
        group: String,
        /// The metadata, or `None` for a tombstone.
        value: Option<GroupValue>,
    },
}

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
#[error("bad __consumer_offsets record: {0}")]
pub struct DecodeError(pub &'static str);

fn put_str(b: &mut BytesMut, s: &str) {
    // Strings longer than u16::MAX - 1 are cut at a char boundary; every string stored here is
    // bounded far below that by the request limits (group ids and topics by the codec's i16
    // lengths, metadata by offset_metadata_bytes_max).
    let mut end = s.len().min(usize::from(NULL_LEN - 1));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    b.put_u16_le(u16::try_from(end).unwrap_or(0));
    b.put_slice(&s.as_bytes()[..end]);
}

fn put_nstr(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_u16_le(NULL_LEN),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32_le(u32::try_from(v.len()).unwrap_or(u32::MAX));
    b.put_slice(v);
}

/// A cursor over a stored key or value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError("truncated"))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn nstr(&mut self) -> Result<Option<String>, DecodeError> {
        let len = u16::from_le_bytes(self.array()?);
        if len == NULL_LEN {
            return Ok(None);
        }
        let raw = self.take(usize::from(len))?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| DecodeError("string is not UTF-8"))
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        self.nstr()?.ok_or(DecodeError("null string"))
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = u32::from_le_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| DecodeError("length"))?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
}

impl StoreRecord {
    /// The record's key and value bytes.
    #[must_use]
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            StoreRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_u8(KIND_OFFSET);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32_le(*partition);
                let value = value.as_ref().map(|v| {
                    let mut b = BytesMut::new();
                    b.put_u8(VALUE_VERSION);
                    b.put_i64_le(v.offset);
                    b.put_i32_le(v.leader_epoch);
                    b.put_i64_le(v.commit_ms);
                    put_str(&mut b, &v.metadata);
                    b.freeze()
                });
                (key.freeze(), value)
            }
            StoreRecord::Group { group, value } => {
                key.put_u8(KIND_GROUP);
                put_str(&mut key, group);
                (key.freeze(), value.as_ref().map(encode_group))
            }
        }
    }

    /// Reads a record from its key and value.
    ///
    /// # Errors
    /// Bytes that are not a record of this format.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<StoreRecord, DecodeError> {
        let mut k = Reader(key);
        let kind = k.u8()?;
        let group = k.str()?;
        let version = |r: &mut Reader| match r.u8()? {
            VALUE_VERSION => Ok(()),
            _ => Err(DecodeError("unknown value version")),
        };
        match kind {
            KIND_OFFSET => {
                let topic = k.str()?;
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        version(&mut r)?;
                        Some(OffsetValue {
                            offset: r.i64()?,
                            leader_epoch: r.i32()?,
                            commit_ms: r.i64()?,
                            metadata: r.str()?,
                        })
                    }
                };
                Ok(StoreRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            KIND_GROUP => {
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        version(&mut r)?;
                        Some(decode_group(&mut r)?)
                    }
                };
                Ok(StoreRecord::Group { group, value })
            }
            _ => Err(DecodeError("unknown key kind")),
        }
    }
}

fn encode_group(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(VALUE_VERSION);
    b.put_i32_le(v.generation);
    put_nstr(&mut b, v.protocol_type.as_deref());
    put_nstr(&mut b, v.protocol_name.as_deref());
    put_nstr(&mut b, v.leader.as_deref());
    b.put_i64_le(v.state_ms);
    b.put_u32_le(u32::try_from(v.members.len()).unwrap_or(u32::MAX));
    for m in &v.members {
        put_str(&mut b, &m.id);
        put_nstr(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32_le(m.session_timeout_ms);
        b.put_i32_le(m.rebalance_timeout_ms);
        put_bytes(&mut b, &m.metadata);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

fn decode_group(r: &mut Reader) -> Result<GroupValue, DecodeError> {
    let generation = r.i32()?;
    let protocol_type = r.nstr()?;
    let protocol_name = r.nstr()?;
    let leader = r.nstr()?;
    let state_ms = r.i64()?;
    let count = u32::from_le_bytes(r.array()?);
    let mut members = Vec::new();
    for _ in 0..count {
        members.push(MemberValue {
            id: r.str()?,
            instance_id: r.nstr()?,
            client_id: r.str()?,
            client_host: r.str()?,
            session_timeout_ms: r.i32()?,
            rebalance_timeout_ms: r.i32()?,
            metadata: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    Ok(GroupValue {
        generation,
        protocol_type,
        protocol_name,
        leader,
        state_ms,
        members,
    })
}

/// One RecordBatch v2 holding `records`, ready for `Shard::append`.
///
/// # Errors
/// The encoder's (it refuses nothing that this module builds).
pub fn batch(records: &[StoreRecord], now_ms: i64) -> anyhow::Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .zip(0i64..)
        .map(|(r, i)| {
            let (key, value) = r.encode();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i32::try_from(i).unwrap_or(i32::MAX),
                timestamp: now_ms,
                key: Some(key),
                value,
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() -> Result<(), DecodeError> {
        let records = [
            StoreRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: -1,
                    commit_ms: 7,
                    metadata: "m".into(),
                }),
            },
            StoreRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: None,
            },
            StoreRecord::Group {
                group: "g".into(),
                value: Some(GroupValue {
                    generation: 5,
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some("range".into()),
                    leader: Some("m1".into()),
                    state_ms: 9,
                    members: vec![MemberValue {
                        id: "m1".into(),
                        instance_id: None,
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        session_timeout_ms: 10_000,
                        rebalance_timeout_ms: 30_000,
                        metadata: Bytes::from_static(b"meta"),
                        assignment: Bytes::from_static(b"assign"),
                    }],
                }),
            },
            StoreRecord::Group {
                group: "g".into(),
                value: None,
            },
        ];
        for r in records {
            let (k, v) = r.encode();
            assert_eq!(StoreRecord::decode(&k, v.as_deref())?, r);
        }
        Ok(())
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(StoreRecord::decode(&[9, 0, 0], None).is_err());
        assert!(StoreRecord::decode(&[0, 5, 0, b'a'], None).is_err());
        assert!(StoreRecord::decode(&[1, 1, 0, b'g'], Some(&[1])).is_err());
    }
}
