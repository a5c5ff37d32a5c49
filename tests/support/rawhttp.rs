//! Raw-socket HTTP/1.1 for tests that must see or send exact bytes: a backend that records
//! every request header as it arrived and can misbehave on cue, and a client that reads one
//! response at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that keeps every request header it receives (bytes as sent) and answers
/// `raw PATH`, reading a `Content-Length` body first. Some paths misbehave:
/// - `/slow…`: answers after 1.5 s (`/slow-continue`: a `100 Continue` first); `/big`: a
///   64 MiB body;
/// - `/reset`: `200` with `Content-Length: 200`, 20 bytes of it, then a TCP reset;
/// - `/reset-chunked`: `200` chunked, one 20-byte chunk, then a TCP reset;
/// - `/status600`: a `600` status line.
pub struct RawBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    /// Connections the proxy closed while the backend still waited for the rest of a body.
    cut: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    pub async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicUsize::new(0));
        let (log, cuts) = (Arc::clone(&seen), Arc::clone(&cut));
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(s, Arc::clone(&log), Arc::clone(&cuts)));
            }
        });
        RawBackend {
            addr,
            seen,
            cut,
            task,
        }
    }

    /// The request headers received so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// How many connections were closed on it in the middle of a request body.
    pub fn cut(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, log: Arc<Mutex<Vec<String>>>, cut: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        log.lock().unwrap().push(head.clone());
        let body_len = header(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + body_len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    cut.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + body_len);
        let reply = match path.as_str() {
            "/reset" => {
                let part = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n{}",
                    "x".repeat(20)
                );
                return reset_after(s, part.as_bytes()).await;
            }
            "/reset-chunked" => {
                let part = format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n{}\r\n",
                    "x".repeat(20)
                );
                return reset_after(s, part.as_bytes()).await;
            }
            "/status600" => "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok".to_owned(),
            _ => {
                if path == "/slow-continue"
                    && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
                {
                    return;
                }
                if path.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                let body = if path == "/big" {
                    "b".repeat(64 << 20)
                } else {
                    format!("raw {path}")
                };
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        if s.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Writes `part`, lets it go out, then closes with a reset (SO_LINGER 0).
async fn reset_after(mut s: TcpStream, part: &[u8]) {
    if s.write_all(part).await.is_err() {
        return;
    }
    let _ = s.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = s.set_zero_linger();
    drop(s);
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (lower case) in a header block.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One response read off `s`: (status, header block, body); `None` if the connection closed
/// (or reset) before a whole one arrived. Reads exactly the response, never into the next one
/// (pipelined answers follow it on the same connection).
pub async fn response(s: &mut TcpStream) -> Option<(u16, String, String)> {
    let read = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if s.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let len = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.ok()?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, head, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()?
}

/// Sends `request` on a new connection and reads one response.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    response(&mut s).await
}
