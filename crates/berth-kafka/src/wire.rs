//! Kafka's framing, client side: a 4-byte big-endian size, then a header and a message encoded by
//! `kafka-protocol`. Requests out, responses in; the Kafka stand-in has its own server side, so a mistake here
//! cannot be mirrored there, and the probe meets real Kafka in this crate's tests.
//!
//! Each frame is built in one buffer and sent with one write: a separate 4-byte size write costs ~40 ms on
//! loopback (Nagle plus delayed ACK), which would dwarf the check itself.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest frame accepted (Metadata without topics is a few hundred bytes; Kafka's own limit is 100 MiB).
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// A frame that cannot be encoded, read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed or closed mid-frame.
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame larger than [`MAX_FRAME`] (or negative).
    #[error("frame of {size} bytes is out of bounds (max {MAX_FRAME})")]
    Size {
        /// The announced size.
        size: i64,
    },
    /// `kafka-protocol` could not encode or decode a message.
    #[error("{what} (api key {api_key}, version {version})")]
    Codec {
        /// Encoding or decoding what.
        what: &'static str,
        /// The API key.
        api_key: i16,
        /// The API version.
        version: i16,
        /// The codec's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request names an API key `kafka-protocol` does not know.
    #[error("unknown api key {0}")]
    UnknownApi(i16),
}

fn codec<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    what: &'static str,
    api_key: i16,
    version: i16,
) -> impl FnOnce(E) -> WireError {
    move |error| WireError::Codec {
        what,
        api_key,
        version,
        source: error.into(),
    }
}

/// Reads one size-prefixed frame.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Bytes, WireError> {
    let size = reader.read_i32().await?;
    if size < 0 || size as usize > MAX_FRAME {
        return Err(WireError::Size { size: size.into() });
    }
    let mut frame = vec![0u8; size as usize];
    reader.read_exact(&mut frame).await?;
    Ok(Bytes::from(frame))
}

fn finish(mut frame: BytesMut) -> Bytes {
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame.freeze()
}

/// Encodes a request (size, header in the version the API needs, body) into one buffer.
pub fn encode_request<M: Encodable>(header: &RequestHeader, body: &M) -> Result<Bytes, WireError> {
    let (key, version) = (header.request_api_key, header.request_api_version);
    let api = ApiKey::try_from(key).map_err(|_| WireError::UnknownApi(key))?;
    let mut frame = BytesMut::with_capacity(128);
    frame.put_i32(0);
    header
        .encode(&mut frame, api.request_header_version(version))
        .map_err(codec("encode header", key, version))?;
    body.encode(&mut frame, version)
        .map_err(codec("encode request", key, version))?;
    Ok(finish(frame))
}

/// Decodes a response frame to a request of `api_key`/`version`; returns its correlation id and body.
pub fn decode_response<M: Decodable>(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<(i32, M), WireError> {
    let key = api_key as i16;
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(codec("decode response header", key, version))?;
    let body = M::decode(&mut frame, version).map_err(codec("decode response", key, version))?;
    Ok((header.correlation_id, body))
}
