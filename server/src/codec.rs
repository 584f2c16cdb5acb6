//! From a frame to a request, and from a response to a frame.
//!
//! A frame is checked cheaply before anything is parsed: its API key must be one keel serves
//! and its version within the range keel advertises ([`crate::handlers::supported`]). Only then
//! is the request header decoded, with the header version that API and version use (flexible
//! versions carry tagged fields in the header). The body stays `Bytes` until its handler decodes
//! it with the kafka-protocol crate; record batches inside it stay slices of the frame.
//!
//! An ApiVersions request of a version keel does not know is not an error: Kafka answers it
//! with a version 0 response holding UNSUPPORTED_VERSION and the supported ranges, so that the
//! client can retry with a version both sides know. [`Parsed::ApiVersionsFallback`] is that case.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable},
};

use crate::{error::ConnectionError, handlers};

/// A request whose header is decoded and whose body is not yet.
#[derive(Debug)]
pub struct RawRequest {
    /// The API.
    pub api: ApiKey,
    /// The request header.
    pub header: RequestHeader,
    /// The body, undecoded.
    pub body: Bytes,
}

impl RawRequest {
    /// The API version of the request.
    #[must_use]
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// Decodes the body as `T` at the request's version.
    ///
    /// # Errors
    /// A body that does not decode.
    pub fn decode_body<T: Decodable>(&self) -> Result<T, ConnectionError> {
        let mut body = self.body.clone();
        T::decode(&mut body, self.version()).map_err(|e| ConnectionError::Malformed {
            what: "request body",
            reason: e.to_string(),
        })
    }
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Parsed {
    /// A request keel serves.
    Request(RawRequest),
    /// An ApiVersions request of an unknown version: answer v0 with UNSUPPORTED_VERSION.
    ApiVersionsFallback {
        /// The correlation id to answer with.
        correlation_id: i32,
    },
}

/// Checks a frame and decodes its request header.
///
/// # Errors
/// An unknown API key, an unsupported version, or a header that does not decode. Each of
/// these closes the connection, as in Kafka.
pub fn parse_frame(frame: Bytes) -> Result<Parsed, ConnectionError> {
    // Every header version starts with api key (2), api version (2), correlation id (4). The
    // connection refuses shorter frames, but a frame is checked here on its own terms too.
    let fixed: [u8; 8] = frame
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| ConnectionError::Malformed {
            what: "request header",
            reason: format!("{} bytes", frame.len()),
        })?;
    let api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let api = ApiKey::try_from(api_key).map_err(|()| ConnectionError::UnknownApi(api_key))?;
    let Some(range) = handlers::supported(api) else {
        return Err(ConnectionError::UnknownApi(api_key));
    };
    if version < range.min || version > range.max {
        if api == ApiKey::ApiVersions {
            return Ok(Parsed::ApiVersionsFallback { correlation_id });
        }
        return Err(ConnectionError::UnsupportedVersion {
            api: api_key,
            version,
        });
    }
    let mut rest = frame;
    let header =
        RequestHeader::decode(&mut rest, api.request_header_version(version)).map_err(|e| {
            ConnectionError::Malformed {
                what: "request header",
                reason: e.to_string(),
            }
        })?;
    Ok(Parsed::Request(RawRequest {
        api,
        header,
        body: rest,
    }))
}

/// Encodes a response with its header into one length-prefixed frame.
///
/// # Errors
/// A response the encoder refuses (a field set that the version lacks): a broker bug.
pub fn encode_response<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &R,
) -> Result<Bytes, ConnectionError> {
    let encode_err = |e: anyhow::Error| ConnectionError::Encode {
        api: api as i16,
        version,
        reason: e.to_string(),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + response.compute_size(version)?))
        .map_err(encode_err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_u32(u32::try_from(size).map_err(|_| encode_err(anyhow::anyhow!("{size} bytes")))?);
    header
        .encode(&mut buf, header_version)
        .and_then(|()| response.encode(&mut buf, version))
        .map_err(encode_err)?;
    debug_assert_eq!(buf.len(), 4 + size, "compute_size agrees with encode");
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    fn frame(api: i16, version: i16, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(api);
        b.put_i16(version);
        b.put_i32(7);
        b.put_i16(-1); // null client id (header v1)
        b.put_slice(body);
        b.freeze()
    }

    #[test]
    fn unknown_api_is_refused() {
        assert!(matches!(
            parse_frame(frame(999, 0, &[])),
            Err(ConnectionError::UnknownApi(999))
        ));
    }

    #[test]
    fn unsupported_api_versions_falls_back() {
        assert!(matches!(
            parse_frame(frame(ApiKey::ApiVersions as i16, 99, &[])),
            Ok(Parsed::ApiVersionsFallback { correlation_id: 7 })
        ));
    }

    #[test]
    fn unsupported_version_is_refused() {
        assert!(matches!(
            parse_frame(frame(ApiKey::Metadata as i16, 99, &[])),
            Err(ConnectionError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn metadata_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let req = MetadataRequest::default().with_topics(None);
        let mut body = BytesMut::new();
        req.encode(&mut body, 4)?;
        let Parsed::Request(raw) = parse_frame(frame(ApiKey::Metadata as i16, 4, &body))? else {
            return Err("expected a request".into());
        };
        assert_eq!(raw.header.correlation_id, 7);
        assert_eq!(raw.decode_body::<MetadataRequest>()?, req);
        Ok(())
    }
}
