//! A loopback HTTP server that replies with scripted bytes, chunk by chunk.
//!
//! Each accepted connection takes the next [`Reply`] from a queue, or asks a
//! responder function for one (the model simulator, `sim.rs`). Bodies go
//! out with `Transfer-Encoding: chunked` and `Connection: close`, one HTTP
//! chunk per scripted piece, so a client really sees an SSE stream split
//! mid-line and mid-JSON, and a body that stops early is really incomplete.
//! Every request is recorded (method, path, headers, JSON body) for
//! assertions on what a provider sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How a scripted response ends after its last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The terminating chunk, then close: a complete response.
    Complete,
    /// Close the connection (FIN) without the terminating chunk.
    Close,
    /// Abort the connection with a TCP reset.
    Reset,
    /// Keep the connection open and send nothing more.
    Stall,
    /// Keep the connection open sending an SSE comment (`: keep-alive`)
    /// at this interval, and never anything else.
    KeepAlive(Duration),
}

/// One scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
    gap: Duration,
    end: End,
    /// Send nothing at all, not even the status line, and hold the connection.
    silent: bool,
}

impl Reply {
    /// `200 text/event-stream` with `body` sent in pieces of `size` bytes
    /// (cut anywhere: mid-line, mid-JSON, mid-UTF-8).
    pub fn sse(body: &str, size: usize) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: split(body.as_bytes(), size),
            gap: Duration::ZERO,
            end: End::Complete,
            silent: false,
        }
    }

    /// A JSON body with any status, sent whole.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![body.to_string().into_bytes()],
            gap: Duration::ZERO,
            end: End::Complete,
            silent: false,
        }
    }

    /// A body of any type and status, sent whole.
    pub fn body(status: u16, content_type: &str, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            chunks: vec![body.as_bytes().to_vec()],
            gap: Duration::ZERO,
            end: End::Complete,
            silent: false,
        }
    }

    /// Accept the request and never answer.
    pub fn silence() -> Reply {
        Reply {
            silent: true,
            ..Reply::sse("", 1).end(End::Stall)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Wait this long before each chunk after the first, and before a
    /// `Close` or `Reset`.
    pub fn gap(mut self, gap: Duration) -> Reply {
        self.gap = gap;
        self
    }

    pub fn end(mut self, end: End) -> Reply {
        self.end = end;
        self
    }
}

/// `bytes` cut into pieces of at most `size` bytes.
pub fn split(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect()
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
    /// When the whole request had arrived.
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What answers a request: the next scripted reply, or a function of the
/// request.
#[derive(Clone)]
enum Source {
    Queue(Arc<Mutex<VecDeque<Reply>>>),
    Responder(Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>),
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// The running server; dropping it stops the accept loop and every open
/// connection.
pub struct Server {
    addr: SocketAddr,
    requests: Log,
    accept: JoinHandle<()>,
}

impl Server {
    pub async fn start(replies: Vec<Reply>) -> Server {
        Server::serving(Source::Queue(Arc::new(Mutex::new(replies.into())))).await
    }

    /// A server that answers every request with `respond(request)`.
    pub async fn responding(
        respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::serving(Source::Responder(Arc::new(respond))).await
    }

    async fn serving(source: Source) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener has an address");
        let requests: Log = Arc::default();
        let log = requests.clone();
        let accept = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((socket, _)) = accepted {
                            connections.spawn(serve(socket, source.clone(), log.clone()));
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Server {
            addr,
            requests,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("request log").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(mut socket: TcpStream, source: Source, log: Log) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    log.lock().expect("request log").push(request.clone());
    let reply = match source {
        Source::Queue(queue) => queue.lock().expect("reply queue").pop_front(),
        Source::Responder(respond) => Some(respond(&request)),
    };
    let reply = reply.unwrap_or_else(|| {
        Reply::json(
            400,
            &serde_json::json!({"error": {"message": "test server: no scripted reply left"}}),
        )
    });
    // A write error means the client went away, which some tests intend.
    let _ = respond(&mut socket, &reply).await;
}

async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let mut buffer = Vec::new();
    let mut piece = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
        let read = socket.read(&mut piece).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&piece[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = socket.read(&mut piece).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&piece[..read]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    })
}

async fn respond(socket: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    if reply.silent {
        return hold(socket).await;
    }
    let mut head = format!("HTTP/1.1 {} Scripted\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;
    for (at, chunk) in reply.chunks.iter().enumerate() {
        if chunk.is_empty() {
            continue;
        }
        if at > 0 && !reply.gap.is_zero() {
            tokio::time::sleep(reply.gap).await;
        }
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(chunk);
        frame.extend_from_slice(b"\r\n");
        socket.write_all(&frame).await?;
        socket.flush().await?;
    }
    match reply.end {
        End::Complete => {
            socket.write_all(b"0\r\n\r\n").await?;
            socket.flush().await?;
            socket.shutdown().await
        }
        End::Close => {
            tokio::time::sleep(reply.gap).await;
            socket.shutdown().await
        }
        End::Reset => {
            tokio::time::sleep(reply.gap).await;
            socket.set_zero_linger()
        }
        End::Stall => hold(socket).await,
        End::KeepAlive(interval) => loop {
            tokio::time::sleep(interval).await;
            let comment = b": keep-alive\n\n";
            let mut frame = format!("{:x}\r\n", comment.len()).into_bytes();
            frame.extend_from_slice(comment);
            frame.extend_from_slice(b"\r\n");
            socket.write_all(&frame).await?;
            socket.flush().await?;
        },
    }
}

/// Keep the connection open, silent, until the client gives up on it.
async fn hold(socket: &mut TcpStream) -> std::io::Result<()> {
    let mut sink = [0u8; 1024];
    while socket.read(&mut sink).await? > 0 {}
    Ok(())
}
