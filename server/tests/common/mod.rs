//! What the broker tests share: start the real `keel` binary on a free port with a temporary
//! data dir, and talk to it over a real socket with requests encoded by kafka-protocol.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes},
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    },
};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A running `keel` process, stopped (SIGKILL, by its PID) when dropped.
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker on a fresh data dir.
    pub fn start(extra: &[&str]) -> TestResult<Broker> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut b = Broker::start_in(&data_dir, tmp.path(), extra)?;
        b._tmp = Some(tmp);
        Ok(b)
    }

    /// Starts a broker on `data_dir`, logging into `log_dir`.
    pub fn start_in(data_dir: &Path, log_dir: &Path, extra: &[&str]) -> TestResult<Broker> {
        Broker::start_with(data_dir, log_dir, extra, |_| {})
    }

    /// [`Broker::start_in`], with the command adjusted by `configure` before it is spawned
    /// (environment, a hook run in the child before exec).
    pub fn start_with(
        data_dir: &Path,
        log_dir: &Path,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> TestResult<Broker> {
        let log = log_dir.join(format!(
            "keel-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        let stderr = std::fs::File::create(&log)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--pin-cores",
                "false",
            ])
            .args(["--fsync", "never", "--io-memory-bytes", "262144"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr);
        configure(&mut command);
        let child = command.spawn()?;
        let mut b = Broker {
            child: Some(child),
            addr: "127.0.0.1:0".parse()?,
            data_dir: data_dir.to_path_buf(),
            log,
            _tmp: None,
        };
        b.addr = b.wait_ready()?;
        Ok(b)
    }

    fn wait_ready(&mut self) -> TestResult<SocketAddr> {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let text = std::fs::read_to_string(&self.log)?;
            if let Some(line) = text.lines().find(|l| l.contains("keel ready on ")) {
                let addr = line
                    .split("keel ready on ")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .ok_or("no address in the ready line")?;
                return Ok(addr.parse()?);
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(format!("keel exited early ({status}):\n{text}").into());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("keel not ready:\n{}", self.log_text()).into())
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to the broker (by PID).
    pub fn signal(&self, sig: libc::c_int) -> TestResult {
        let pid = self.child.as_ref().ok_or("not running")?.id();
        // SAFETY: kill on the PID of the child this test started.
        let rc = unsafe { libc::kill(libc::pid_t::try_from(pid)?, sig) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> TestResult<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        self.stop_after_signal()
    }

    /// Waits for the exit of a broker already signalled.
    pub fn stop_after_signal(&mut self) -> TestResult<ExitStatus> {
        let mut child = self.child.take().ok_or("not running")?;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("keel did not stop:\n{}", self.log_text()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new client connection.
    pub fn client(&self) -> TestResult<Client> {
        Client::connect(self.addr)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking Kafka client connection.
pub struct Client {
    pub stream: TcpStream,
    correlation_id: i32,
    expected: Option<i32>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> TestResult<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            correlation_id: 0,
            expected: None,
        })
    }

    /// Encodes a request (header and body) into one frame.
    pub fn frame<R: Request>(&mut self, version: i16, req: &R) -> TestResult<Bytes> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("keel-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::new();
        frame.put_u32(u32::try_from(body.len())?);
        frame.put_slice(&body);
        Ok(frame.freeze())
    }

    /// Sends a request and reads its response.
    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> TestResult<R::Response> {
        let frame = self.frame(version, req)?;
        self.stream.write_all(&frame)?;
        self.receive::<R>(version)
    }

    /// Makes the next [`Client::receive`] expect this correlation id: the first request made
    /// by this client is 1, the next 2, and so on.
    pub fn set_expected_correlation(&mut self, id: i32) {
        self.expected = Some(id);
    }

    /// Reads the response to a request of type `R`.
    pub fn receive<R: Request>(&mut self, version: i16) -> TestResult<R::Response> {
        let mut body = self.read_frame()?;
        let header = ResponseHeader::decode(
            &mut body,
            <R::Response as HeaderVersion>::header_version(version),
        )?;
        let expected = self.expected.take().unwrap_or(self.correlation_id);
        if header.correlation_id != expected {
            return Err(format!(
                "correlation id {} for request {expected}",
                header.correlation_id
            )
            .into());
        }
        let resp = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            return Err(format!("{} bytes left after the response", body.remaining()).into());
        }
        Ok(resp)
    }

    /// Reads one length-prefixed frame.
    pub fn read_frame(&mut self) -> TestResult<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; usize::try_from(u32::from_be_bytes(len))?];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Whether the broker closed this connection (EOF within the read timeout).
    pub fn is_closed(&mut self) -> bool {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 1];
        matches!(self.stream.read(&mut buf), Ok(0) | Err(_))
    }
}

/// `ApiKey` of a request type.
pub fn api<R: Request>() -> TestResult<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|()| "unknown api key".into())
}

/// One record batch (magic 2 unless `version` says otherwise) holding `values`.
pub fn batch_v(version: i8, values: &[&str]) -> TestResult<Bytes> {
    encode_batch(version, -1, -1, 0, values)
}

/// A magic 2 batch from an idempotent producer.
pub fn idempotent_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    values: &[&str],
) -> TestResult<Bytes> {
    encode_batch(2, producer_id, epoch, base_sequence, values)
}

fn encode_batch(
    version: i8,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    values: &[&str],
) -> TestResult<Bytes> {
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let records: Vec<Record> = values
        .iter()
        .zip(0i32..)
        .map(|(v, i)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: base_sequence + i,
            timestamp: now_ms + i64::from(i),
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

/// A magic 2 record batch holding `values`.
pub fn batch(values: &[&str]) -> TestResult<Bytes> {
    batch_v(2, values)
}

/// The values of every record in `records`.
pub fn values(records: &Bytes) -> TestResult<Vec<String>> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut buf)? {
        for r in set.records {
            let v = r.value.ok_or("null value")?;
            out.push(String::from_utf8(v.to_vec())?);
        }
    }
    Ok(out)
}

use kafka_protocol::messages::{
    create_topics_request::CreatableTopic,
    fetch_request::{FetchPartition, FetchTopic},
    fetch_response::PartitionData,
    produce_request::{PartitionProduceData, TopicProduceData},
    produce_response::PartitionProduceResponse,
    CreateTopicsRequest, FetchRequest, ProduceRequest, TopicName,
};

/// A topic name for a request.
pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A produce request for one partition.
pub fn produce_request(acks: i16, name: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

impl Client {
    /// Produces `records` to one partition with acks=all and returns its answer.
    pub fn produce(
        &mut self,
        version: i16,
        name: &str,
        partition: i32,
        records: Bytes,
    ) -> TestResult<PartitionProduceResponse> {
        let resp = self.send(version, &produce_request(-1, name, partition, records))?;
        let t = resp.responses.into_iter().next().ok_or("no topic")?;
        Ok(t.partition_responses
            .into_iter()
            .next()
            .ok_or("no partition")?)
    }

    /// Fetches one partition from `offset` and returns its answer.
    pub fn fetch(
        &mut self,
        version: i16,
        name: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> TestResult<PartitionData> {
        let resp = self.send(
            version,
            &fetch_request(name, &[(partition, offset)], max_wait_ms),
        )?;
        let t = resp.responses.into_iter().next().ok_or("no topic")?;
        Ok(t.partitions.into_iter().next().ok_or("no partition")?)
    }

    /// Creates a topic with `partitions` partitions (CreateTopics v5) and checks it worked.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> TestResult {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]);
        let resp = self.send(5, &req)?;
        let t = resp.topics.first().ok_or("no topic")?;
        if t.error_code != 0 {
            return Err(format!(
                "create {name}: error {} {:?}",
                t.error_code, t.error_message
            )
            .into());
        }
        Ok(())
    }
}

/// A fetch request for partitions of one topic, min_bytes 1, generous byte limits.
pub fn fetch_request(name: &str, partitions: &[(i32, i64)], max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(p, offset)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*offset)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )])
}
