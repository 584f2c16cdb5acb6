//! A small blocking Kafka client: one TCP connection, requests encoded and responses decoded
//! by kafka-protocol, API versions negotiated once per connection.
//!
//! Requests may be pipelined: [`Connection::send`] writes a request and returns its
//! correlation id, [`Connection::receive`] reads the next response (Kafka answers one
//! connection's requests in order). The producer side splits a connection into its two
//! halves with [`Connection::split`] so one thread writes while another reads.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Largest response frame read; a longer length prefix means a broken stream.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// Kafka error code TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// The highest version of each API this client uses. Produce v13 names topics by id only,
/// so it stops at v12. Fetch stops at v11, the last version without tagged fields (the one
/// librdkafka 2.0.2 uses too), the same for every system measured: Tansu 0.6 puts the
/// `node_endpoints` tagged field, which Kafka defines from v16 on, into its v12 answers, and
/// kafka-protocol refuses those.
const VERSION_CAPS: [(ApiKey, i16); 5] = [
    (ApiKey::Produce, 12),
    (ApiKey::Fetch, 11),
    (ApiKey::ListOffsets, 7),
    (ApiKey::Metadata, 12),
    (ApiKey::CreateTopics, 7),
];

/// The versions used with one broker, the highest both sides speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub list_offsets: i16,
    pub metadata: i16,
    pub create_topics: i16,
}

/// One blocking connection to a broker.
#[derive(Debug)]
pub struct Connection {
    writer: RequestWriter,
    reader: ResponseReader,
    pub versions: Versions,
    /// Every API the broker offers, as (api key, min version, max version), for requests
    /// outside [`Versions`] (see [`Connection::version`]).
    offered: Vec<(i16, i16, i16)>,
}

/// The writing half of a connection.
#[derive(Debug)]
pub struct RequestWriter {
    stream: TcpStream,
    correlation_id: i32,
    scratch: BytesMut,
}

/// The reading half of a connection.
#[derive(Debug)]
pub struct ResponseReader {
    stream: BufReader<TcpStream>,
}

/// Resolves `bootstrap` (host:port) to its first address.
pub fn resolve(bootstrap: &str) -> anyhow::Result<SocketAddr> {
    bootstrap
        .to_socket_addrs()
        .with_context(|| format!("resolving {bootstrap}"))?
        .next()
        .with_context(|| format!("{bootstrap} resolves to no address"))
}

impl Connection {
    /// Connects (within `timeout`) and negotiates API versions.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to {addr}: is the broker running there?"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .context("read timeout")?;
        let reader = BufReader::with_capacity(256 << 10, stream.try_clone().context("clone")?);
        let mut connection = Self {
            writer: RequestWriter {
                stream,
                correlation_id: 0,
                scratch: BytesMut::with_capacity(64 << 10),
            },
            reader: ResponseReader { stream: reader },
            versions: Versions {
                produce: 3,
                fetch: 4,
                list_offsets: 1,
                metadata: 1,
                create_topics: 2,
            },
            offered: Vec::new(),
        };
        connection.versions = connection
            .negotiate()
            .with_context(|| format!("ApiVersions with {addr}"))?;
        Ok(connection)
    }

    fn negotiate(&mut self) -> anyhow::Result<Versions> {
        let response = self.call(&ApiVersionsRequest::default(), 0)?;
        anyhow::ensure!(
            response.error_code == 0,
            "ApiVersions error {}",
            response.error_code
        );
        self.offered = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let cap = |key: ApiKey| {
            VERSION_CAPS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(0, |c| c.1)
        };
        let version = |key: ApiKey| self.version(key, cap(key));
        Ok(Versions {
            produce: version(ApiKey::Produce)?,
            fetch: version(ApiKey::Fetch)?,
            list_offsets: version(ApiKey::ListOffsets)?,
            metadata: version(ApiKey::Metadata)?,
            create_topics: version(ApiKey::CreateTopics)?,
        })
    }

    /// The version of `key` to use with this broker: the highest it offers, capped at `cap`
    /// (the highest version the caller builds its request for correctly).
    pub fn version(&self, key: ApiKey, cap: i16) -> anyhow::Result<i16> {
        let &(_, min, max) = self
            .offered
            .iter()
            .find(|(k, _, _)| *k == key as i16)
            .with_context(|| format!("the broker does not offer {key:?}"))?;
        let version = max.min(cap);
        anyhow::ensure!(
            version >= min,
            "{key:?}: broker versions {min}..={max} above ours ({cap})"
        );
        Ok(version)
    }

    /// Sends one request and waits for its response.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<R::Response> {
        let id = self.writer.send(request, version)?;
        self.reader.receive::<R>(version, id)
    }

    /// The two halves, for one writer thread and one reader thread.
    pub fn split(self) -> (RequestWriter, ResponseReader, Versions) {
        (self.writer, self.reader, self.versions)
    }

    /// Creates `topic` with `partitions` partitions; an existing topic with that many
    /// partitions is fine, one with another count is an error.
    pub fn create_topic(&mut self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]);
        let response = self.call(&request, self.versions.create_topics)?;
        let result = response.topics.first().context("CreateTopics: no topic")?;
        match result.error_code {
            0 => Ok(()),
            TOPIC_ALREADY_EXISTS => {
                let count = self.partition_count(topic)?;
                anyhow::ensure!(
                    count == partitions,
                    "topic {topic} exists with {count} partitions, the workload wants {partitions}"
                );
                Ok(())
            }
            code => bail!(
                "CreateTopics {topic}: error {code} {:?}",
                result.error_message
            ),
        }
    }

    /// How many partitions `topic` has, from Metadata.
    pub fn partition_count(&mut self, topic: &str) -> anyhow::Result<i32> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let response = self.call(&request, self.versions.metadata)?;
        let found = response.topics.first().context("Metadata: no topic")?;
        anyhow::ensure!(
            found.error_code == 0,
            "Metadata {topic}: error {}",
            found.error_code
        );
        Ok(i32::try_from(found.partitions.len())?)
    }

    /// The end offset (next offset to be written) of each partition.
    pub fn end_offsets(&mut self, topic: &str, partitions: &[i32]) -> anyhow::Result<Vec<i64>> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(-1)
                        })
                        .collect(),
                )]);
        let response = self.call(&request, self.versions.list_offsets)?;
        let found = response.topics.first().context("ListOffsets: no topic")?;
        partitions
            .iter()
            .map(|&p| {
                let answer = found
                    .partitions
                    .iter()
                    .find(|a| a.partition_index == p)
                    .with_context(|| format!("ListOffsets: no partition {p}"))?;
                anyhow::ensure!(
                    answer.error_code == 0,
                    "ListOffsets {topic}-{p}: error {}",
                    answer.error_code
                );
                Ok(answer.offset)
            })
            .collect()
    }

    /// One Fetch of `partitions` (partition, offset) of `topic`.
    pub fn fetch(
        &mut self,
        topic: &str,
        partitions: &[(i32, i64)],
        max_wait_ms: i32,
        partition_bytes_max: i32,
    ) -> anyhow::Result<FetchResponse> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(64 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&(partition, offset)| {
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(partition_bytes_max)
                        })
                        .collect(),
                )]);
        self.call(&request, self.versions.fetch)
    }
}

impl RequestWriter {
    /// Encodes and writes one request; returns its correlation id.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<i32> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("keel-bench")));
        let frame = &mut self.scratch;
        frame.clear();
        frame.put_u32(0);
        header
            .encode(frame, R::header_version(version))
            .context("encoding a request header")?;
        request
            .encode(frame, version)
            .context("encoding a request")?;
        let body_bytes = u32::try_from(frame.len() - 4)?;
        frame[..4].copy_from_slice(&body_bytes.to_be_bytes());
        self.stream
            .write_all(frame)
            .context("writing a request: the broker closed the connection?")?;
        Ok(self.correlation_id)
    }

    /// The correlation id the next [`RequestWriter::send`] will use.
    pub fn next_correlation_id(&self) -> i32 {
        self.correlation_id.wrapping_add(1)
    }

    /// Closes both directions, so a reader blocked on this connection returns.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Writes a produce request.
    pub fn send_produce(&mut self, request: &ProduceRequest, version: i16) -> anyhow::Result<i32> {
        self.send(request, version)
    }
}

impl ResponseReader {
    /// Reads the next response, which must answer request `correlation_id`.
    pub fn receive<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> anyhow::Result<R::Response> {
        let mut body = self.read_frame()?;
        let header = ResponseHeader::decode(
            &mut body,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .context("decoding a response header")?;
        anyhow::ensure!(
            header.correlation_id == correlation_id,
            "response to request {} where {correlation_id} was next",
            header.correlation_id
        );
        let response = R::Response::decode(&mut body, version).context("decoding a response")?;
        anyhow::ensure!(
            !body.has_remaining(),
            "{} bytes after a response",
            body.remaining()
        );
        Ok(response)
    }

    fn read_frame(&mut self) -> anyhow::Result<Bytes> {
        let mut length = [0u8; 4];
        self.stream
            .read_exact(&mut length)
            .context("reading a response: the broker closed the connection or timed out")?;
        let length = u32::from_be_bytes(length) as usize;
        anyhow::ensure!(
            length <= RESPONSE_BYTES_MAX,
            "response of {length} bytes is over {RESPONSE_BYTES_MAX}"
        );
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .context("reading a response body")?;
        Ok(Bytes::from(body))
    }
}

/// A topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}
