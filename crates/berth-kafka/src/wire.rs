//! Kafka's framing, client side: a 4-byte big-endian size, then a header and a message encoded by
//! `kafka-protocol`. Requests out, responses in; the Kafka stand-in has its own server side, so a mistake here
//! cannot be mirrored there, and the probe meets real Kafka in this crate's tests.
//!
//! Each frame is built in one buffer and sent with one write: a separate 4-byte size write costs ~40 ms on
//! loopback (Nagle plus delayed ACK), which would dwarf the check itself.
//!
//! An answer is read as its bytes arrive (the buffer grows with them, never sized from the announced length
//! alone), so a large Metadata answer of a large cluster is read whole, and a bogus length costs nothing.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest answer read. Metadata without topics is a few hundred bytes; with every topic it takes about 45 bytes a
/// partition (replication factor 3), so 512 MiB holds some ten million partitions, several times what a Kafka
/// cluster supports. A larger answer is refused with its size (the checks then cannot judge, and say so).
pub const MAX_FRAME: usize = 512 * 1024 * 1024;
/// First allocation for an answer; it grows as the bytes arrive.
const FIRST_CHUNK: usize = 64 * 1024;

/// A frame that cannot be encoded, read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed or closed mid-frame.
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame larger than berth reads ([`MAX_FRAME`]), or a negative size.
    #[error("an answer of {size} bytes is larger than berth reads ({MAX_FRAME} bytes)")]
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
    /// The answer carries another request's correlation id.
    #[error("answer to request {answered} where request {expected} was asked")]
    Correlation {
        /// The request sent.
        expected: i32,
        /// The request answered.
        answered: i32,
    },
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
    read_frame_up_to(reader, MAX_FRAME).await
}

/// [`read_frame`] with another bound (tests use a small one).
pub async fn read_frame_up_to<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Bytes, WireError> {
    let size = reader.read_i32().await?;
    if size < 0 || size as usize > max {
        return Err(WireError::Size { size: size.into() });
    }
    let size = size as usize;
    let mut frame = Vec::with_capacity(size.min(FIRST_CHUNK));
    reader.take(size as u64).read_to_end(&mut frame).await?;
    if frame.len() < size {
        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer larger than the 8 MiB berth once refused is read whole, as it arrives in pieces.
    #[tokio::test]
    async fn a_large_answer_is_read_whole_and_a_too_large_one_is_refused_by_its_size() {
        let size = 9 * 1024 * 1024 + 7;
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            server
                .write_all(&(size as i32).to_be_bytes())
                .await
                .unwrap();
            server.write_all(&sent).await.unwrap();
            server
        });
        let frame = read_frame(&mut client).await.expect("read whole");
        assert_eq!(frame.len(), size);
        assert!(frame[..] == body[..], "every byte as sent");
        let mut server = writer.await.unwrap();

        use tokio::io::AsyncWriteExt as _;
        server.write_all(&1000i32.to_be_bytes()).await.unwrap();
        let error = read_frame_up_to(&mut client, 999).await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("an answer of 1000 bytes is larger than berth reads"),
            "{error}"
        );
        server.write_all(&10i32.to_be_bytes()).await.unwrap();
        server.write_all(b"short").await.unwrap();
        drop(server);
        let error = read_frame(&mut client).await.unwrap_err();
        assert!(matches!(error, WireError::Io(_)), "{error}");
    }
}
