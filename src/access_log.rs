//! The access log: one line per request, however it ended, written off the request path.
//!
//! The logging phase formats an [`Entry`] into a line and hands it to a bounded channel
//! ([`CHANNEL_LINES`] lines) without ever waiting; a dedicated thread takes the queued lines
//! every 10 ms and writes them through a 64 KiB buffer, flushed at least every 100 ms (like
//! nginx's `access_log ... buffer= flush=`). The thread never parks on the channel, so a request
//! never pays for waking it. When the writer falls behind (a slow
//! disk, a blocked pipe) lines are dropped and counted in `fulcrum_access_log_dropped_total`,
//! never the request. SIGUSR1 makes the writer reopen its file (after logrotate moved it); a
//! reload that changes `access_log` switches the destination. Internal logs are not here: they
//! go to stderr through `tracing`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;

use crate::config::{AccessLogFormat, AccessLogTarget, ConfigError, Places};
use crate::outcome::Outcome;

/// Lines the channel holds before new ones are dropped.
pub const CHANNEL_LINES: usize = 8192;
/// How often the writer takes the lines queued since it last looked.
const POLL: Duration = Duration::from_millis(10);
/// Buffered lines reach the destination at most this long after they were written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One finished request. Borrowed: building it allocates nothing.
#[derive(Debug)]
pub struct Entry<'a> {
    /// When the request started.
    pub time: SystemTime,
    pub request_id: &'a str,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    /// "" when none.
    pub host: &'a str,
    pub path: &'a str,
    /// Logged only with `access_log_query = true`.
    pub query: Option<&'a str>,
    /// The client's protocol: "HTTP/1.0", "HTTP/1.1" or "HTTP/2"; "" when no request was parsed.
    pub version: &'a str,
    /// The client connection's TLS version ("TLSv1.3"); "" on a plain connection.
    pub tls_version: &'a str,
    /// The server name the TLS client asked for (SNI); "" on a plain connection or without SNI.
    pub sni: &'a str,
    pub status: u16,
    /// How the request ended beside its status (a `200` cut short is `aborted`).
    pub outcome: Outcome,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    pub duration: Duration,
    /// "" when none.
    pub route: &'a str,
    pub upstream: &'a str,
    pub backend: &'a str,
    pub attempts: u32,
    /// The status the backend sent (which a `502` of fulcrum's may have replaced); `None` when
    /// no backend answered.
    pub upstream_status: Option<u16>,
    /// The last attempt's time from picking its backend to having a connection (a reused one:
    /// about 0); `None` when it got none.
    pub upstream_connect: Option<Duration>,
    /// The last attempt's time from picking its backend to the backend's response header;
    /// `None` when none came.
    pub upstream_header: Option<Duration>,
    pub user_agent: &'a str,
    pub referer: &'a str,
    pub error: Option<&'a str>,
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub format: AccessLogFormat,
    /// Keep the query string.
    pub query: bool,
}

/// Appends one line (ending in `\n`) for `e` to `out`.
pub fn format(e: &Entry<'_>, style: Style, out: &mut Vec<u8>) {
    match style.format {
        AccessLogFormat::Json => json(e, style.query, out),
        AccessLogFormat::Combined => combined(e, style.query, out),
    }
}

fn json(e: &Entry<'_>, query: bool, out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"time\":\"");
    rfc3339(e.time, out);
    out.extend_from_slice(b"\",\"request_id\":");
    json_str(e.request_id, out);
    out.extend_from_slice(b",\"client\":");
    match e.client {
        Some(ip) => {
            out.push(b'"');
            ip_addr(ip, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    for (key, value) in [("method", e.method), ("host", e.host)] {
        field(key, out);
        json_str(value, out);
    }
    field("path", out);
    match e.query.filter(|_| query) {
        Some(q) => {
            out.push(b'"');
            json_escaped(e.path, out);
            out.push(b'?');
            json_escaped(q, out);
            out.push(b'"');
        }
        None => json_str(e.path, out),
    }
    field("protocol", out);
    json_str(e.version, out);
    field("tls_version", out);
    json_str(e.tls_version, out);
    field("sni", out);
    json_str(e.sni, out);
    field("status", out);
    out.extend_from_slice(num.format(e.status).as_bytes());
    field("outcome", out);
    json_str(e.outcome.as_str(), out);
    field("bytes_in", out);
    out.extend_from_slice(num.format(e.bytes_in).as_bytes());
    field("bytes_out", out);
    out.extend_from_slice(num.format(e.bytes_out).as_bytes());
    field("duration_ms", out);
    millis(e.duration, out);
    for (key, value) in [
        ("route", e.route),
        ("upstream", e.upstream),
        ("backend", e.backend),
    ] {
        field(key, out);
        json_str(value, out);
    }
    field("attempts", out);
    out.extend_from_slice(num.format(e.attempts).as_bytes());
    field("upstream_status", out);
    match e.upstream_status {
        Some(s) => out.extend_from_slice(num.format(s).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    for (key, value) in [
        ("upstream_connect_ms", e.upstream_connect),
        ("upstream_header_ms", e.upstream_header),
    ] {
        field(key, out);
        match value {
            Some(d) => millis(d, out),
            None => out.extend_from_slice(b"null"),
        }
    }
    field("referer", out);
    json_str(e.referer, out);
    field("user_agent", out);
    json_str(e.user_agent, out);
    if let Some(error) = e.error {
        field("error", out);
        json_str(error, out);
    }
    out.extend_from_slice(b"}\n");
}

/// A duration in milliseconds to the microsecond: `1.234`.
fn millis(d: Duration, out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    let micros = d.as_micros();
    out.extend_from_slice(num.format(micros / 1000).as_bytes());
    out.push(b'.');
    padded((micros % 1000) as u64, 3, out);
}

fn field(key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    json_escaped(s, out);
    out.push(b'"');
}

/// `s` as the inside of a JSON string: `"` and `\` escaped, control characters as `\u00XX`.
/// Runs of plain bytes are copied whole.
fn json_escaped(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut plain = 0;
    loop {
        let i = plain + first_to_escape(&bytes[plain..]);
        out.extend_from_slice(&bytes[plain..i]);
        let Some(&b) = bytes.get(i) else {
            return;
        };
        plain = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
}

/// The index of the first byte of `bytes` that JSON needs escaped (`"`, `\`, a control
/// character or DEL), or its length. Eight bytes per step: a byte is flagged when it is below
/// 0x20 or equal to one of the three (the classic "has zero byte" bit trick on `x ^ pattern`).
fn first_to_escape(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let x = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        // Bytes below 0x20 have their top three bits clear.
        let flagged = zero_in(x & u64::from_ne_bytes([0xe0; 8]))
            | zero_in(x ^ u64::from_ne_bytes([b'"'; 8]))
            | zero_in(x ^ u64::from_ne_bytes([b'\\'; 8]))
            | zero_in(x ^ u64::from_ne_bytes([0x7f; 8]));
        if flagged != 0 {
            break;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
        .unwrap_or(bytes.len() - at)
}

/// An address as `Display` writes it, without the formatting machinery for IPv4.
pub(crate) fn ip_addr(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(num.format(octet).as_bytes());
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// `n` in decimal, zero-padded to `width` digits.
fn padded(n: u64, width: usize, out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    let digits = num.format(n).as_bytes();
    out.resize(out.len() + width.saturating_sub(digits.len()), b'0');
    out.extend_from_slice(digits);
}

/// `client - - [24/Nov/2026:22:40:00 +0000] "GET /path HTTP/1.1" 200 1234 "referer" "agent"`
fn combined(e: &Entry<'_>, query: bool, out: &mut Vec<u8>) {
    match e.client {
        Some(ip) => ip_addr(ip, out),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    clf_time(e.time, out);
    out.extend_from_slice(b"] \"");
    // A request refused before its request line was understood: nginx's `"-"`.
    if e.method.is_empty() {
        out.push(b'-');
    } else {
        quoted_escaped(e.method, out);
        out.push(b' ');
        quoted_escaped(e.path, out);
        if let Some(q) = e.query.filter(|_| query) {
            out.push(b'?');
            quoted_escaped(q, out);
        }
        out.push(b' ');
        // nginx's and Apache's spelling, which `%r` parsers expect (JSON keeps `HTTP/2`).
        match e.version {
            "HTTP/2" => out.extend_from_slice(b"HTTP/2.0"),
            v => quoted_escaped(v, out),
        }
    }
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(num.format(e.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(num.format(e.bytes_out).as_bytes());
    for value in [e.referer, e.user_agent] {
        out.extend_from_slice(b" \"");
        if value.is_empty() {
            out.push(b'-');
        } else {
            quoted_escaped(value, out);
        }
        out.push(b'"');
    }
    out.push(b'\n');
}

/// Inside a quoted combined-log field: `"` and `\` escaped, control characters as `\xXX`.
fn quoted_escaped(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

/// Year, month (1–12), day, and seconds into the day of a Unix time, in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's days_from_civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs % 86_400, d.subsec_millis())
}

/// `2026-11-24T22:40:00.123Z`
fn rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let (y, mo, d, s, ms) = civil(t);
    padded(y as u64, 4, out);
    for (sep, n, width) in [
        (b'-', mo as u64, 2),
        (b'-', d as u64, 2),
        (b'T', s / 3600, 2),
        (b':', s / 60 % 60, 2),
        (b':', s % 60, 2),
        (b'.', ms as u64, 3),
    ] {
        out.push(sep);
        padded(n, width, out);
    }
    out.push(b'Z');
}

/// `24/Nov/2026:22:40:00 +0000`
fn clf_time(t: SystemTime, out: &mut Vec<u8>) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, s, _) = civil(t);
    let _ = write!(
        out,
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(mo - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

/// What the writer thread is told.
enum Msg {
    Line(Vec<u8>),
    /// Write to this destination from now on (`None`: nowhere; the old file is closed).
    Switch(Option<Sink>),
    /// Flush, then answer.
    Flush(SyncSender<()>),
}

/// An open destination.
enum Sink {
    Stdout(BufWriter<io::Stdout>),
    Stderr(BufWriter<io::Stderr>),
    File {
        path: std::path::PathBuf,
        out: BufWriter<File>,
    },
}

impl Sink {
    fn open(target: &AccessLogTarget) -> io::Result<Option<Sink>> {
        Ok(match target {
            AccessLogTarget::Off => None,
            AccessLogTarget::Stdout => Some(Sink::Stdout(BufWriter::with_capacity(
                64 * 1024,
                io::stdout(),
            ))),
            AccessLogTarget::Stderr => Some(Sink::Stderr(BufWriter::with_capacity(
                64 * 1024,
                io::stderr(),
            ))),
            AccessLogTarget::File(path) => Some(Sink::File {
                out: BufWriter::with_capacity(64 * 1024, open_file(path)?),
                path: path.clone(),
            }),
        })
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(line),
            Sink::Stderr(out) => out.write_all(line),
            Sink::File { out, .. } => out.write_all(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::Stderr(out) => out.flush(),
            Sink::File { out, .. } => out.flush(),
        }
    }

    /// Reopens a file at its path (logrotate moved the old one away).
    fn reopen(&mut self) {
        let Sink::File { path, out } = self else {
            return;
        };
        if let Err(e) = out.flush() {
            tracing::error!(path = %path.display(), error = %e, "access log: cannot flush before reopening");
        }
        match open_file(path) {
            Ok(f) => *out = BufWriter::with_capacity(64 * 1024, f),
            Err(e) => {
                tracing::error!(error = %e, "access log: cannot reopen; still writing to the old file")
            }
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open access log {}: {e}", path.display()),
            )
        })
}

/// SIGUSR1 sets this; the writer reopens its file when it sees it. Registered once per process.
fn reopen_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&flag)) {
            tracing::error!(error = %e, "access log: cannot handle SIGUSR1; files will not be reopened");
        }
        flag
    })
}

/// The located error of an `access_log` destination that cannot be opened (`file`: the config
/// file, `None` for a built-in config).
pub fn open_error(places: &Places, file: Option<&Path>, e: &io::Error) -> ConfigError {
    let message = format!("{e}; a writable file, \"stdout\", \"stderr\" or \"off\"");
    places.error(file, "server.access_log", message)
}

/// A destination opened by [`AccessLog::open`], not yet written to.
pub struct Opened(Option<Sink>);

/// The writer: a bounded channel to a thread that writes lines to the destination.
pub struct AccessLog {
    tx: SyncSender<Msg>,
    /// Whether lines are wanted at all (`access_log = "off"` formats nothing).
    on: AtomicBool,
    dropped: IntCounter,
    /// SIGUSR1's flag, or a test's.
    #[cfg(test)]
    reopen: Arc<AtomicBool>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

impl AccessLog {
    /// Starts the writer for `target`; lines dropped because it fell behind count in `dropped`.
    pub fn start(target: &AccessLogTarget, dropped: IntCounter) -> io::Result<AccessLog> {
        AccessLog::with_capacity(target, dropped, CHANNEL_LINES, Arc::clone(reopen_flag()))
    }

    fn with_capacity(
        target: &AccessLogTarget,
        dropped: IntCounter,
        lines: usize,
        reopen: Arc<AtomicBool>,
    ) -> io::Result<AccessLog> {
        let sink = Sink::open(target)?;
        let (tx, rx) = mpsc::sync_channel(lines);
        let on = AtomicBool::new(sink.is_some());
        let flag = Arc::clone(&reopen);
        // Detached: it ends when the last sender (this value) is gone.
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, sink, &flag))?;
        Ok(AccessLog {
            tx,
            on,
            dropped,
            #[cfg(test)]
            reopen,
        })
    }

    /// Whether lines are written at all.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Queues the line of `e` without waiting; a full channel drops it and counts it.
    pub fn log(&self, e: &Entry<'_>, style: Style) {
        if !self.is_on() {
            return;
        }
        let mut line = Vec::with_capacity(384);
        format(e, style, &mut line);
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped.inc(),
            Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Opens `target` without using it yet: a reload opens the new destination before it
    /// publishes anything, so that a file that cannot be opened rejects the whole reload.
    pub fn open(target: &AccessLogTarget) -> io::Result<Opened> {
        Sink::open(target).map(Opened)
    }

    /// Writes to `opened` from now on; lines already queued go to the old destination. May
    /// wait (at most 2 s) for room in the channel: call it off the async workers.
    pub fn switch(&self, opened: Opened) {
        let on = opened.0.is_some();
        self.send_control(Msg::Switch(opened.0));
        self.on.store(on, Ordering::Relaxed);
    }

    /// Reopens the current file, as SIGUSR1 does.
    #[cfg(test)]
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
        self.flush();
    }

    /// Writes what is queued and waits for it (at most 2 s); called at shutdown and by tests.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        self.send_control(Msg::Flush(done));
        if wait.recv_timeout(Duration::from_secs(2)).is_err() {
            tracing::warn!("access log: writer did not flush within 2 s");
        }
    }

    /// Control messages wait for room, up to 2 s, rather than being dropped like lines.
    fn send_control(&self, msg: Msg) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut msg = msg;
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    tracing::error!("access log: the writer is stuck or gone; message dropped");
                    return;
                }
            }
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The writer thread: lines into the sink, a flush whenever the channel runs empty.
fn write_lines(rx: Receiver<Msg>, mut sink: Option<Sink>, reopen: &AtomicBool) {
    let reopen_now = |sink: &mut Option<Sink>| {
        if reopen.swap(false, Ordering::Relaxed) {
            if let Some(s) = sink.as_mut() {
                s.reopen();
            }
        }
    };
    let (mut dirty, mut flushed) = (false, Instant::now());
    loop {
        // Never parked on the channel: a sender then never has to wake this thread (a syscall
        // on the request path); it finds the lines when it looks.
        std::thread::sleep(POLL);
        reopen_now(&mut sink);
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(line)) => {
                    if let Some(s) = sink.as_mut() {
                        if let Err(e) = s.write(&line) {
                            tracing::error!(error = %e, "access log: write failed");
                        }
                        dirty = true;
                    }
                }
                Ok(Msg::Switch(new)) => {
                    flush(&mut sink);
                    sink = new;
                }
                Ok(Msg::Flush(done)) => {
                    reopen_now(&mut sink);
                    flush(&mut sink);
                    (dirty, flushed) = (false, Instant::now());
                    let _ = done.try_send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    flush(&mut sink);
                    return;
                }
            }
        }
        if dirty && flushed.elapsed() >= FLUSH_EVERY {
            flush(&mut sink);
            (dirty, flushed) = (false, Instant::now());
        }
    }
}

fn flush(sink: &mut Option<Sink>) {
    if let Some(s) = sink.as_mut() {
        if let Err(e) = s.flush() {
            tracing::error!(error = %e, "access log: flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            // 2024-02-29T13:05:09.042Z: a leap day.
            time: UNIX_EPOCH + Duration::from_millis(1_709_211_909_042),
            request_id: "r1",
            client: Some("10.0.0.1".parse().unwrap()),
            method: "GET",
            host: "api.test",
            path: "/v1/users",
            query: Some("token=secret"),
            version: "HTTP/1.1",
            tls_version: "TLSv1.3",
            sni: "api.test",
            status: 200,
            outcome: Outcome::Ok,
            bytes_in: 3,
            bytes_out: 1234,
            duration: Duration::from_micros(1_234_567),
            route: "api",
            upstream: "pool",
            backend: "10.0.0.5:80",
            attempts: 1,
            upstream_status: Some(200),
            upstream_connect: Some(Duration::from_micros(250)),
            upstream_header: Some(Duration::from_micros(1_200_001)),
            user_agent: "curl/8.0 \"x\"",
            referer: "",
            error: None,
        }
    }

    fn line(e: &Entry<'_>, format: AccessLogFormat, query: bool) -> String {
        let mut out = Vec::new();
        super::format(e, Style { format, query }, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_lines_have_every_field_and_strip_the_query() {
        assert_eq!(
            line(&entry(), AccessLogFormat::Json, false),
            "{\"time\":\"2024-02-29T13:05:09.042Z\",\"request_id\":\"r1\",\"client\":\"10.0.0.1\",\"method\":\"GET\",\"host\":\"api.test\",\"path\":\"/v1/users\",\"protocol\":\"HTTP/1.1\",\"tls_version\":\"TLSv1.3\",\"sni\":\"api.test\",\"status\":200,\"outcome\":\"ok\",\"bytes_in\":3,\"bytes_out\":1234,\"duration_ms\":1234.567,\"route\":\"api\",\"upstream\":\"pool\",\"backend\":\"10.0.0.5:80\",\"attempts\":1,\"upstream_status\":200,\"upstream_connect_ms\":0.250,\"upstream_header_ms\":1200.001,\"referer\":\"\",\"user_agent\":\"curl/8.0 \\\"x\\\"\"}\n"
        );
        let kept = line(&entry(), AccessLogFormat::Json, true);
        assert!(
            kept.contains("\"path\":\"/v1/users?token=secret\""),
            "{kept}"
        );
        let failed = Entry {
            client: None,
            error: Some("connect refused\n\u{1}"),
            upstream_status: None,
            upstream_connect: None,
            upstream_header: None,
            ..entry()
        };
        let failed = line(&failed, AccessLogFormat::Json, false);
        assert!(failed.contains("\"client\":null"), "{failed}");
        assert!(
            failed.contains(
                "\"upstream_status\":null,\"upstream_connect_ms\":null,\"upstream_header_ms\":null"
            ),
            "{failed}"
        );
        assert!(
            failed.ends_with(",\"error\":\"connect refused\\n\\u0001\"}\n"),
            "{failed}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&failed).unwrap();
        assert_eq!(parsed["error"], "connect refused\n\u{1}");
    }

    #[test]
    fn combined_lines_are_what_nginx_writes() {
        assert_eq!(
            line(&entry(), AccessLogFormat::Combined, false),
            "10.0.0.1 - - [29/Feb/2024:13:05:09 +0000] \"GET /v1/users HTTP/1.1\" 200 1234 \"-\" \"curl/8.0 \\\"x\\\"\"\n"
        );
        let h2 = Entry {
            version: "HTTP/2",
            ..entry()
        };
        let h2 = line(&h2, AccessLogFormat::Combined, false);
        assert!(h2.contains("\"GET /v1/users HTTP/2.0\" 200"), "{h2}");
        let refused = Entry {
            method: "",
            path: "",
            query: None,
            version: "",
            status: 400,
            ..entry()
        };
        let refused = line(&refused, AccessLogFormat::Combined, false);
        assert!(refused.contains("] \"-\" 400 1234 "), "{refused}");
    }

    #[test]
    fn the_eight_byte_scan_finds_the_same_byte_as_a_plain_one() {
        let naive = |b: &[u8]| {
            b.iter()
                .position(|&c| c < 0x20 || c == b'"' || c == b'\\' || c == 0x7f)
                .unwrap_or(b.len())
        };
        for len in 0..20 {
            for at in 0..=len {
                for special in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    if at < len {
                        bytes[at] = special;
                    }
                    // A high byte before the special one must not hide it.
                    if at > 0 {
                        bytes[at - 1] = 0xc3;
                    }
                    assert_eq!(first_to_escape(&bytes), naive(&bytes), "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn escaping_keeps_plain_runs_and_addresses_print_as_display_does() {
        let mut out = Vec::new();
        json_escaped("plain \"q\" back\\slash\u{7f}tab\tend", &mut out);
        assert_eq!(out, br#"plain \"q\" back\\slash\u007ftab\tend"#);
        for ip in [
            "10.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let mut out = Vec::new();
            ip_addr(ip.parse().unwrap(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), ip);
        }
    }

    #[test]
    fn dates_are_right_across_years_and_months() {
        let at = |secs: u64| {
            let mut out = Vec::new();
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59.000Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00.000Z");
    }

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "dropped").unwrap()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_file_is_written_and_reopened_after_logrotate_moves_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let target = AccessLogTarget::File(path.clone());
        let log = AccessLog::with_capacity(&target, counter(), 16, Arc::default()).unwrap();
        let style = Style {
            format: AccessLogFormat::Json,
            query: false,
        };
        log.log(&entry(), style);
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.log(
            &Entry {
                status: 404,
                ..entry()
            },
            style,
        );
        log.flush();
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(
            now.contains("\"status\":404") && now.lines().count() == 1,
            "{now}"
        );
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            1
        );
    }

    #[test]
    fn a_full_channel_drops_lines_and_counts_them() {
        // A pipe nobody reads: the writer blocks on it once the pipe buffer is full, and the
        // 4-line channel fills up behind it.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Keep a reader open (so opening for writing does not fail) but never read.
        let opener = {
            let fifo = fifo.clone();
            std::thread::spawn(move || File::open(fifo).unwrap())
        };
        let dropped = counter();
        let log = AccessLog::with_capacity(
            &AccessLogTarget::File(fifo),
            dropped.clone(),
            4,
            Arc::default(),
        )
        .unwrap();
        let _reader = opener.join().unwrap();
        let style = Style {
            format: AccessLogFormat::Json,
            query: false,
        };
        let long = "x".repeat(64 * 1024);
        let big = Entry {
            user_agent: &long,
            ..entry()
        };
        for _ in 0..64 {
            log.log(&big, style);
        }
        wait_for("lines dropped", || dropped.get() > 0);
        assert!(dropped.get() < 64, "some lines went through or queued");
        std::mem::forget(log); // its writer is blocked on the pipe for good
    }
}
