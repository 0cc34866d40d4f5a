//! Readiness and liveness probes run from outside a service: TCP connect and HTTP GET.
//!
//! Each function is one attempt, bounded as a whole (name resolution, connect, request, reading
//! the answer) by its `timeout`; the schedule (`every`, `failures`, `within`) is the caller's.
//! Neither keeps anything between attempts: a probe opens its connection and drops it.
//!
//! The HTTP client is hand-written, a few dozen lines over [`TcpStream`]: a probe needs the
//! status code and nothing else (no body, no keep-alive, no TLS, no redirects followed), and an
//! HTTP crate such as hyper would add some twenty crates to a supervisor whose job is to be small
//! and to stay up. The request asks the server to close the connection, and only the status line
//! and the headers are read, at most [`MAX_HEAD`] bytes of them; the body is never read, so a
//! health endpoint that streams or answers a large page costs nothing more.
//!
//! # Caveats
//!
//! Only `http://`: an `https://` URL is refused with an error that says so (a `tcp` probe of the
//! port, or an `exec` probe running `curl`, covers those services). A host name is resolved on
//! tokio's blocking pool (`getaddrinfo` cannot be cancelled): the attempt still ends at its
//! timeout, but a hung resolver keeps that thread until it answers; an IP address skips it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an HTTP answer's status line and headers a probe reads.
pub const MAX_HEAD: usize = 16 * 1024;

/// Why a probe attempt failed. Each message reads on its own in an event or an incident:
/// `connection refused by 127.0.0.1:8080`, `timed out after 1s`, `HTTP 503 from http://…`.
/// The OS error, where there is one, is part of the message rather than a `source()`, because
/// the message is what the event log keeps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The `tcp` address is not `host:port`.
    #[error(
        "invalid address `{addr}`: {reason} (expected host:port, e.g. 127.0.0.1:5432 or [::1]:80)"
    )]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The `http` URL cannot be used.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `https://` URL: the probe speaks plain HTTP only.
    #[error(
        "invalid URL `{url}`: https is not supported by the http probe (probe the port with `tcp`, \
         or use an `exec` probe such as `curl -fsS URL`)"
    )]
    HttpsUnsupported {
        /// The URL as given.
        url: String,
    },
    /// The host name did not resolve.
    #[error("cannot resolve `{host}`: {error}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        error: io::Error,
    },
    /// The host name resolved to no address.
    #[error("`{host}` resolves to no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// Nothing listens on the port.
    #[error("connection refused by {addr}")]
    Refused {
        /// The address tried last.
        addr: SocketAddr,
    },
    /// The connection failed for another reason (unreachable network, reset, …).
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// The error of that attempt.
        error: io::Error,
    },
    /// The attempt as a whole did not finish in time.
    #[error("timed out after {}", humantime::format_duration(*.timeout))]
    TimedOut {
        /// The bound of the attempt.
        timeout: Duration,
    },
    /// Sending the request or reading the answer failed.
    #[error("{about} {url}: {error}")]
    Io {
        /// What failed, to be followed by the URL: "cannot send the request to".
        about: &'static str,
        /// The URL probed.
        url: String,
        /// The socket's error.
        error: io::Error,
    },
    /// The answer is not HTTP, or its head is too long.
    #[error("malformed HTTP answer from {url}: {reason}")]
    Malformed {
        /// The URL probed.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server answered with a status outside 200–399.
    #[error("HTTP {status} from {url}")]
    Status {
        /// The status code.
        status: u16,
        /// The URL probed.
        url: String,
    },
}

impl ProbeError {
    /// Whether the attempt failed for want of something on hangwatch's side (its descriptors,
    /// the machine's buffers or local ports) rather than because of the service: such a
    /// failure says nothing of the service, so it must not count against it.
    #[must_use]
    pub fn is_local_shortage(&self) -> bool {
        match self {
            ProbeError::Resolve { error, .. }
            | ProbeError::Connect { error, .. }
            | ProbeError::Io { error, .. } => is_shortage(error),
            _ => false,
        }
    }
}

/// An OS error that means hangwatch (or the machine) ran short, whoever it was talking to:
/// out of descriptors (`EMFILE`, `ENFILE`), buffers (`ENOBUFS`), memory (`ENOMEM`) or local
/// ports (`EADDRNOTAVAIL` on a connect).
#[must_use]
pub fn is_shortage(error: &io::Error) -> bool {
    use nix::errno::Errno;
    error.raw_os_error().is_some_and(|code| {
        [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOBUFS,
            Errno::ENOMEM,
            Errno::EADDRNOTAVAIL,
        ]
        .contains(&Errno::from_raw(code))
    })
}

/// One TCP probe attempt: resolves `addr` (`host:port`, `[v6]:port`) and connects to it; the
/// connection is closed at once. Bounded by `timeout` as a whole.
pub async fn tcp(addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    let (host, port) = split_host_port(addr).map_err(|reason| ProbeError::InvalidAddress {
        addr: addr.to_owned(),
        reason,
    })?;
    bounded(timeout, async {
        connect(host, port).await?;
        Ok(())
    })
    .await
}

/// One HTTP probe attempt: a `GET` of `url` (`http://` only); succeeds with the status code when
/// it is 200–399 (a redirect is not followed: the server answered, which is what a probe asks).
/// Reads the status line and headers only. Bounded by `timeout` as a whole.
pub async fn http(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let target = HttpTarget::parse(url)?;
    bounded(timeout, async {
        let mut stream = connect(target.host, target.port).await?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hangwatch\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n",
            target.request_target(),
            target.authority
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| ProbeError::Io {
                about: "cannot send the request to",
                url: url.to_owned(),
                error,
            })?;
        let status = read_status(&mut stream, url).await?;
        if (200..400).contains(&status) {
            Ok(status)
        } else {
            Err(ProbeError::Status {
                status,
                url: url.to_owned(),
            })
        }
    })
    .await
}

async fn bounded<T>(
    timeout: Duration,
    attempt: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(ProbeError::TimedOut { timeout }))
}

/// Splits `host:port` or `[v6]:port`; a bare IPv6 address without brackets is ambiguous and
/// refused.
fn split_host_port(addr: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("`[` without `]`")?;
        (host, after.strip_prefix(':').ok_or("no `:port` after `]`")?)
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or("no `:port`")?;
        if host.contains(':') {
            return Err("an IPv6 address needs brackets");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = port
        .parse()
        .map_err(|_| "the port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("the port is not a number from 1 to 65535");
    }
    Ok((host, port))
}

/// Connects to the first address of `host` that accepts, as `getaddrinfo`'s order ranks them;
/// the error is the last address's.
async fn connect(host: &str, port: u16) -> Result<TcpStream, ProbeError> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| ProbeError::Resolve {
                host: host.to_owned(),
                error,
            })?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                last = Some(ProbeError::Refused { addr });
            }
            Err(error) => last = Some(ProbeError::Connect { addr, error }),
        }
    }
    Err(last.unwrap_or_else(|| ProbeError::NoAddress {
        host: host.to_owned(),
    }))
}

/// The parts of an `http://` URL a request needs.
#[derive(Debug, PartialEq, Eq)]
struct HttpTarget<'a> {
    /// `host[:port]` as written, for the `Host` header.
    authority: &'a str,
    host: &'a str,
    port: u16,
    /// Path and query as written (possibly empty); the fragment is dropped.
    path: &'a str,
}

impl<'a> HttpTarget<'a> {
    fn parse(url: &'a str) -> Result<Self, ProbeError> {
        let invalid = |reason| ProbeError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let scheme_end = url
            .find("://")
            .ok_or_else(|| invalid("expected http://host[:port]/path"))?;
        match &url[..scheme_end] {
            s if s.eq_ignore_ascii_case("http") => {}
            s if s.eq_ignore_ascii_case("https") => {
                return Err(ProbeError::HttpsUnsupported {
                    url: url.to_owned(),
                });
            }
            _ => return Err(invalid("only http:// URLs are supported")),
        }
        // What goes on the request line must not break it.
        if url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid("it contains a space or a control character"));
        }
        let rest = &url[scheme_end + 3..];
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
        {
            (v6, 80)
        } else if authority.contains(':') {
            split_host_port(authority).map_err(invalid)?
        } else {
            (authority, 80)
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(Self {
            authority,
            host,
            port,
            path,
        })
    }

    /// The request target: the path and query, with the leading `/` that `http://host` and
    /// `http://host?q` leave out.
    fn request_target(&self) -> String {
        if self.path.starts_with('/') {
            self.path.to_owned()
        } else {
            format!("/{}", self.path)
        }
    }
}

/// Reads the head of the answer (skipping any interim `1xx` head) and returns the final status.
async fn read_status(stream: &mut TcpStream, url: &str) -> Result<u16, ProbeError> {
    let malformed = |reason| ProbeError::Malformed {
        url: url.to_owned(),
        reason,
    };
    let mut buf = Vec::with_capacity(1024);
    let mut start = 0;
    loop {
        if let Some(end) = find_head_end(&buf[start..]) {
            let status = parse_status_line(&buf[start..start + end])
                .ok_or_else(|| malformed("no HTTP status line"))?;
            if !(100..200).contains(&status) {
                return Ok(status);
            }
            start += end;
            continue;
        }
        if buf.len() >= MAX_HEAD {
            return Err(malformed("the status line and headers exceed 16 KiB"));
        }
        let mut chunk = [0u8; 2048];
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        let n = stream
            .read(&mut chunk[..room])
            .await
            .map_err(|error| ProbeError::Io {
                about: "cannot read the answer of",
                url: url.to_owned(),
                error,
            })?;
        if n == 0 {
            return Err(if buf.is_empty() {
                malformed("the connection closed without an answer")
            } else {
                malformed("the connection closed before the end of the headers")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        // Reject a non-HTTP answer at once rather than waiting for a blank line it may never send.
        let head = &buf[start..];
        let prefix = &b"HTTP/"[..head.len().min(5)];
        if !head.starts_with(prefix) {
            return Err(malformed("no HTTP status line"));
        }
    }
}

/// The length of the head including its blank line (`\r\n\r\n`, or a bare `\n\n` as lenient
/// clients accept), if it is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let status: u16 = code.parse().ok()?;
    (100..600).contains(&status).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// Generous against a loaded machine, short enough that a hang fails fast.
    const BOUND: Duration = Duration::from_secs(5);

    async fn listener() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address").to_string();
        (listener, addr)
    }

    /// A port nothing listens on: bound, then released.
    async fn free_port() -> String {
        let (listener, addr) = listener().await;
        drop(listener);
        addr
    }

    /// Serves one connection: reads the request head, sends `answer`, then keeps the connection
    /// open until the test ends (so a probe that waited for EOF or a body would time out). The
    /// request received comes back on the channel.
    fn serve_once(listener: TcpListener, answer: &'static [u8]) -> oneshot::Receiver<String> {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept the probe");
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while find_head_end(&request).is_none() {
                let n = conn.read(&mut chunk).await.expect("read the request");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
            conn.write_all(answer).await.expect("send the answer");
            std::future::pending::<()>().await;
        });
        rx
    }

    async fn http_answer(answer: &'static [u8], path: &str) -> (Result<u16, ProbeError>, String) {
        let (listener, addr) = listener().await;
        let request = serve_once(listener, answer);
        let url = format!("http://{addr}{path}");
        let result = http(&url, BOUND).await;
        let request = tokio::time::timeout(BOUND, request)
            .await
            .expect("the server saw the request in time")
            .unwrap_or_default();
        (result, request)
    }

    #[tokio::test]
    async fn tcp_succeeds_when_something_listens() {
        let (_listener, addr) = listener().await;
        tcp(&addr, BOUND).await.expect("the connect succeeds");
        let port = addr.rsplit_once(':').expect("host:port").1;
        tcp(&format!("localhost:{port}"), BOUND)
            .await
            .or_else(|err| match err {
                // `localhost` may resolve to ::1 first on some hosts; v4 is what listens.
                ProbeError::Refused { addr } if addr.is_ipv6() => Ok(()),
                other => Err(other),
            })
            .expect("a host name resolves");
    }

    #[tokio::test]
    async fn tcp_refused_says_by_whom() {
        let addr = free_port().await;
        let err = tcp(&addr, BOUND).await.expect_err("nothing listens");
        assert!(matches!(err, ProbeError::Refused { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("connection refused by {addr}"));
    }

    #[tokio::test]
    async fn tcp_times_out_when_the_accept_queue_is_full() {
        // Linux drops a SYN when the listener's accept queue is full, so a connect to a listener
        // that never accepts hangs once the queue holds its backlog: a real loopback timeout.
        // Each probe's connection stays queued (closed, never accepted) and fills it.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("local address").to_string();
        let timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let mut err = None;
        for _ in 0..16 {
            if let Err(e) = tcp(&addr, timeout).await {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("the accept queue fills up within 16 connections");
        assert!(matches!(err, ProbeError::TimedOut { .. }), "{err:?}");
        assert_eq!(err.to_string(), "timed out after 200ms");
        assert!(started.elapsed() < BOUND);
    }

    #[tokio::test]
    async fn tcp_rejects_addresses_that_are_not_host_port() {
        for addr in [
            "127.0.0.1",
            "::1:80",
            "[::1]",
            "[::1:80",
            ":80",
            "host:http",
            "host:0",
        ] {
            let err = tcp(addr, BOUND).await.expect_err(addr);
            assert!(
                matches!(err, ProbeError::InvalidAddress { .. }),
                "{addr}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn tcp_and_http_over_ipv6_loopback() {
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            eprintln!("skipped: no IPv6 loopback on this machine");
            return;
        };
        let addr = listener.local_addr().expect("local address");
        let request = serve_once(listener, b"HTTP/1.1 204 No Content\r\n\r\n");
        let url = format!("http://{addr}/v6");
        assert_eq!(http(&url, BOUND).await.expect("the v6 probe succeeds"), 204);
        let request = request.await.expect("the request");
        assert!(
            request.contains(&format!("Host: [::1]:{}\r\n", addr.port())),
            "{request}"
        );
        // A v6 port bound and released at once: nothing listens there.
        let free = TcpListener::bind("[::1]:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let err = tcp(&free.to_string(), BOUND).await.expect_err("refused");
        assert_eq!(err.to_string(), format!("connection refused by {free}"));
    }

    #[tokio::test]
    async fn http_200_sends_a_minimal_request() {
        let (result, request) = http_answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "/healthz?full=1#x",
        )
        .await;
        assert_eq!(result.expect("200 succeeds"), 200);
        let mut lines = request.split("\r\n");
        assert_eq!(lines.next(), Some("GET /healthz?full=1 HTTP/1.1"));
        let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
        assert!(
            headers.iter().any(|h| h.starts_with("Host: 127.0.0.1:")),
            "{headers:?}"
        );
        assert!(headers.contains(&"Connection: close"), "{headers:?}");
        assert!(headers.contains(&"User-Agent: hangwatch"), "{headers:?}");
    }

    #[tokio::test]
    async fn http_never_waits_for_the_body() {
        // A body of a megabyte that never comes, on a connection that stays open.
        let (result, _) = http_answer(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1000000\r\n\r\nstart",
            "",
        )
        .await;
        assert_eq!(result.expect("the head is enough"), 200);
    }

    #[tokio::test]
    async fn http_redirect_counts_as_alive() {
        let (result, request) = http_answer(
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: /elsewhere\r\n\r\n",
            "",
        )
        .await;
        assert_eq!(result.expect("3xx succeeds"), 301);
        assert!(request.starts_with("GET / HTTP/1.1\r\n"), "{request}");
    }

    #[tokio::test]
    async fn http_interim_answer_is_skipped() {
        let (result, _) = http_answer(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            "/",
        )
        .await;
        assert_eq!(result.expect("the final status counts"), 200);
    }

    #[tokio::test]
    async fn http_503_is_a_failure_naming_the_url() {
        let (listener, addr) = listener().await;
        let _request = serve_once(listener, b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let url = format!("http://{addr}/healthz");
        let err = http(&url, BOUND).await.expect_err("503 fails");
        assert!(
            matches!(err, ProbeError::Status { status: 503, .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), format!("HTTP 503 from {url}"));
    }

    #[tokio::test]
    async fn http_malformed_answers_fail_at_once() {
        let cases: [&'static [u8]; 3] = [
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 9999 Huge\r\n\r\n",
        ];
        for answer in cases {
            let (result, _) = http_answer(answer, "/").await;
            let err = result.expect_err("not HTTP");
            assert!(matches!(err, ProbeError::Malformed { .. }), "{err:?}");
            assert!(
                err.to_string()
                    .starts_with("malformed HTTP answer from http://127.0.0.1:")
            );
        }
    }

    #[tokio::test]
    async fn http_head_is_bounded() {
        static HUGE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            while head.len() <= MAX_HEAD {
                head.extend_from_slice(b"X-Filler: 0123456789abcdef0123456789abcdef\r\n");
            }
            head
        });
        let (result, _) = http_answer(HUGE.as_slice(), "/").await;
        let err = result.expect_err("too long");
        assert!(
            err.to_string()
                .ends_with("the status line and headers exceed 16 KiB"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn http_closed_without_answer_fails() {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.expect("accept");
            drop(conn);
        });
        let err = http(&format!("http://{addr}/"), BOUND)
            .await
            .expect_err("no answer");
        // The close may come before or after the request is written.
        assert!(
            matches!(err, ProbeError::Malformed { .. } | ProbeError::Io { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn http_times_out_when_the_server_never_answers() {
        let (listener, addr) = listener().await;
        let _request = serve_once(listener, b"");
        let started = std::time::Instant::now();
        let err = http(&format!("http://{addr}/"), Duration::from_millis(300))
            .await
            .expect_err("no answer");
        assert_eq!(err.to_string(), "timed out after 300ms");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < BOUND);
    }

    #[tokio::test]
    async fn http_refused_names_the_address() {
        let addr = free_port().await;
        let err = http(&format!("http://{addr}/healthz"), BOUND)
            .await
            .expect_err("refused");
        assert_eq!(err.to_string(), format!("connection refused by {addr}"));
    }

    #[tokio::test]
    async fn http_rejects_https_and_bad_urls() {
        let err = http("https://127.0.0.1/", BOUND).await.expect_err("https");
        assert!(
            matches!(err, ProbeError::HttpsUnsupported { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("https is not supported"), "{err}");
        for url in [
            "127.0.0.1:8080/healthz",
            "ftp://host/",
            "http:///path",
            "http://user:pw@host/",
            "http://host/a b",
            "http://host:99999/",
            "http://::1/",
        ] {
            let err = http(url, BOUND).await.expect_err(url);
            assert!(
                matches!(err, ProbeError::InvalidUrl { .. }),
                "{url}: {err:?}"
            );
            assert!(
                err.to_string().starts_with(&format!("invalid URL `{url}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn url_parts() {
        let t = HttpTarget::parse("http://[::1]:8080/x").expect("v6 with port");
        assert_eq!(
            (t.host, t.port, t.authority, t.request_target().as_str()),
            ("::1", 8080, "[::1]:8080", "/x")
        );
        let t = HttpTarget::parse("HTTP://[::1]?q=1").expect("v6 without port");
        assert_eq!(
            (t.host, t.port, t.request_target().as_str()),
            ("::1", 80, "/?q=1")
        );
        let t = HttpTarget::parse("http://example.test").expect("bare host");
        assert_eq!(
            (t.host, t.port, t.authority, t.request_target().as_str()),
            ("example.test", 80, "example.test", "/")
        );
    }
}
