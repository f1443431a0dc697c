//! A minimal HTTP/1.1 server and client for the AWS test parts, and the one HTTP client of the tests and the
//! simulation.
//!
//! The recording endpoint, the fault proxy and the IMDS endpoint need only request/response exchanges with
//! `Content-Length` bodies, keep-alive, and forwarding to moto. A few hundred lines over `httparse` keep the
//! test kit free of a server framework whose features would change how the AWS SDK's own HTTP stack compiles.
//! Every server runs on its own thread with its own tokio runtime, so it serves equally a `#[test]`, a
//! `#[tokio::test]` or a process in a network namespace (bind the listener inside the namespace and pass it in).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The largest request or response head or body accepted (moto's describe answers stay far below this).
const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// One HTTP request as received.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `PUT`, `POST`, ...
    pub method: String,
    /// Path with the query string, e.g. `/latest/meta-data/instance-id`.
    pub target: String,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Query-string and form-body parameters (the AWS query protocol puts them in the body).
    pub fn params(&self) -> BTreeMap<String, String> {
        let query = self
            .target
            .split_once('?')
            .map(|(_, query)| query)
            .unwrap_or_default();
        let mut params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let form = self
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("application/x-www-form-urlencoded"));
        if form {
            params.extend(form_urlencoded::parse(&self.body).into_owned());
        }
        params
    }

    fn head_bytes(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            if matches!(
                name.as_str(),
                "connection" | "content-length" | "transfer-encoding"
            ) {
                continue;
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        head.into_bytes()
    }
}

/// One HTTP response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (without `content-length`, which is added when sending).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain", body.into())
    }

    /// A `text/xml` response (the AWS query protocol's answers).
    pub fn xml(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/xml", body.into())
    }

    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(&name))
            .map(|(_, value)| value.as_str())
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What a server does with each request.
pub type Handler = Arc<dyn Fn(Request) -> ResponseFuture + Send + Sync>;

/// A running server; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `address` (port 0 picks a free port) and serves `handler` on a thread of its own.
    pub fn bind(address: SocketAddr, handler: Handler) -> io::Result<Self> {
        Self::from_listener(std::net::TcpListener::bind(address)?, handler)
    }

    /// Serves on an already bound listener (e.g. one bound inside a network namespace).
    pub fn from_listener(listener: std::net::TcpListener, handler: Handler) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("http-{address}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            eprintln!("test http server {address}: {error}");
                            return;
                        }
                    };
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                if let Ok((stream, _)) = accepted {
                                    tokio::spawn(serve_connection(stream, handler.clone()));
                                }
                            }
                        }
                    }
                });
            })?;
        Ok(Self {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_connection(mut stream: TcpStream, handler: Handler) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buffer).await {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        let close = request
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        let response = handler(request).await;
        if stream.write_all(&response.to_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// Reads one request from a keep-alive connection; `None` at a clean end of stream.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Option<Request>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buffer) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut request = Request {
                    method: parsed.method.unwrap_or_default().to_owned(),
                    target: parsed.path.unwrap_or_default().to_owned(),
                    headers: header_pairs(parsed.headers),
                    body: Vec::new(),
                };
                let length: usize = request
                    .header("content-length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if length > MAX_MESSAGE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request body too large",
                    ));
                }
                while buffer.len() < head_len + length {
                    if read_more(stream, buffer).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                request.body = buffer[head_len..head_len + length].to_vec();
                buffer.drain(..head_len + length);
                return Ok(Some(request));
            }
            Ok(httparse::Status::Partial) => {
                if buffer.len() > MAX_MESSAGE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request head too large",
                    ));
                }
                if read_more(stream, buffer).await? == 0 {
                    return if buffer.is_empty() {
                        Ok(None)
                    } else {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    };
                }
            }
            Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        }
    }
}

/// Parsed headers as (lower-case name, value) pairs.
fn header_pairs(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let read = stream.read(&mut chunk).await?;
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read)
}

/// Sends `request` to `upstream` on a fresh connection and reads the whole response (forwarding to moto).
pub async fn forward(upstream: SocketAddr, request: &Request) -> io::Result<Response> {
    let mut stream = TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let mut bytes = request.head_bytes();
    bytes.extend_from_slice(&request.body);
    stream.write_all(&bytes).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(raw).map_err(|e| invalid(&e.to_string()))? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Err(invalid("truncated response head")),
    };
    let mut response = Response {
        status: parsed.code.unwrap_or(500),
        headers: header_pairs(parsed.headers),
        body: Vec::new(),
    };
    let rest = &raw[head_len..];
    response.body = if response
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        dechunk(rest).ok_or_else(|| invalid("bad chunked body"))?
    } else if let Some(length) = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        rest.get(..length)
            .ok_or_else(|| invalid("truncated body"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// GETs `path` from `address` on a fresh connection, answered within `timeout` (tests and the simulation
/// reading berth's `/state` and `/health`).
pub async fn get(
    address: SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> io::Result<Response> {
    let request = Request {
        method: "GET".into(),
        target: path.into(),
        headers: vec![("host".into(), address.to_string())],
        body: Vec::new(),
    };
    tokio::time::timeout(timeout, forward(address, &request))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("GET http://{address}{path}: no answer within {timeout:?}"),
            )
        })?
}

/// A blocking one-shot request for test code outside any runtime (e.g. the moto control endpoint).
pub fn blocking_request(url: &str, method: &str, body: &str) -> io::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other(format!("not an http URL: {url}")))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let address: SocketAddr = authority.parse().map_err(|_| {
        io::Error::other(format!("URL authority must be ip:port, got {authority:?}"))
    })?;
    let request = Request {
        method: method.to_owned(),
        target: path,
        headers: vec![
            ("host".into(), authority.to_owned()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.as_bytes().to_vec(),
    };
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(5))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut bytes = request.head_bytes();
    bytes.extend_from_slice(&request.body);
    stream.write_all(&bytes)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}
