//! One listener for everything: each accepted connection's request line is looked at; `GET /ws` goes
//! to the WebSocket session code, anything else to the axum router of the operational endpoints
//! (`/healthz`, `/readyz`, `/metrics`).
//!
//! Plain connections are peeked (nothing consumed). With TLS the handshake comes first, then the
//! request line is read from the decrypted stream and replayed by [`Conn`] to the code it goes to.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::metrics::Metrics;
use crate::tls::{Conn, EdgeTls};

/// Where a connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /ws` (query string allowed).
    Ws,
    /// Any other request: the operational endpoints.
    Http,
}

/// Longest request line prefix looked at; a longer target is not `/ws`.
const PEEK_BYTES: usize = 512;
/// Pause between peeks while the request line is still incomplete.
const PEEK_RETRY: Duration = Duration::from_millis(5);

/// Routes an accepted connection within `within` (TLS handshake, if any, included). `None`: it closed,
/// failed its TLS handshake, or sent no request line in time.
pub(crate) async fn classify(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&EdgeTls>,
    metrics: &Metrics,
    within: Duration,
) -> Option<(Route, Conn)> {
    let deadline = Instant::now() + within;
    let Some(tls) = tls else {
        let route = peek_route(&stream, deadline).await?;
        return Some((route, Conn::Plain(stream)));
    };
    let mut stream = match tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // A client that does not trust our certificate, or one speaking plain HTTP to us.
            debug!(%peer, error = %e, "TLS handshake failed.");
            metrics.tls_failed();
            return None;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out.");
            metrics.tls_failed();
            return None;
        }
    };
    let (route, read_ahead) = read_route(&mut stream, deadline).await?;
    Some((route, Conn::tls(stream, read_ahead)))
}

/// Reads the request line's method and path without consuming them.
async fn peek_route(stream: &TcpStream, deadline: Instant) -> Option<Route> {
    let mut buf = [0u8; PEEK_BYTES];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        if let Some(route) = parse_request_line(&buf[..n]) {
            return Some(route);
        }
        if n == buf.len() {
            return Some(Route::Http);
        }
        if Instant::now() + PEEK_RETRY >= deadline {
            return None;
        }
        tokio::time::sleep(PEEK_RETRY).await;
    }
}

/// Reads (a TLS stream cannot peek) up to [`PEEK_BYTES`] until the route is known; returns it with
/// the bytes read, for [`Conn`] to replay.
async fn read_route(
    stream: &mut TlsStream<TcpStream>,
    deadline: Instant,
) -> Option<(Route, Vec<u8>)> {
    let mut buf = vec![0u8; PEEK_BYTES];
    let mut filled = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf[filled..])).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        filled += n;
        let route = match parse_request_line(&buf[..filled]) {
            Some(route) => route,
            None if filled == buf.len() => Route::Http,
            None => continue,
        };
        buf.truncate(filled);
        return Some((route, buf));
    }
}

/// `Some` once the method and target are complete (or the line is clearly not ours).
pub(crate) fn parse_request_line(b: &[u8]) -> Option<Route> {
    // Until the second space, the target may still be arriving, unless the line already ended.
    let line_ended = b.contains(&b'\n');
    let mut parts = b.splitn(3, |&c| c == b' ');
    let method = parts.next()?;
    let Some(target) = parts.next() else {
        return line_ended.then_some(Route::Http);
    };
    if parts.next().is_none() {
        return line_ended.then_some(Route::Http);
    }
    let path = target.split(|&c| c == b'?').next().unwrap_or(target);
    Some(
        if method == b"GET" && path == vc_shared::ws::PATH.as_bytes() {
            Route::Ws
        } else {
            Route::Http
        },
    )
}

/// Answers a WebSocket upgrade with 503 (draining, or at the connection cap) and closes.
pub(crate) async fn refuse(mut stream: Conn, why: &str) {
    let body = format!("{{\"error\":\"{why}\",\"code\":\"UNAVAILABLE\"}}");
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Consume the request first: closing with unread bytes would reset the connection and could
    // destroy the response before the client reads it.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => req.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let _ = tokio::time::timeout_at(deadline, stream.write_all(resp.as_bytes())).await;
    let _ = tokio::time::timeout_at(deadline, stream.shutdown()).await;
}

/// The axum side of the shared listener: connections routed to HTTP arrive through a channel.
pub(crate) struct ChannelListener {
    pub(crate) rx: mpsc::Receiver<(Conn, SocketAddr)>,
    pub(crate) addr: SocketAddr,
}

impl axum::serve::Listener for ChannelListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The edge stopped routing connections: never accept again (graceful shutdown ends serve).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(parse_request_line(b"GET /ws HTTP/1.1\r\n"), Some(Route::Ws));
        assert_eq!(
            parse_request_line(b"GET /ws?x=1 HTTP/1.1\r\n"),
            Some(Route::Ws)
        );
        assert_eq!(
            parse_request_line(b"GET /wsx HTTP/1.1\r\n"),
            Some(Route::Http)
        );
        assert_eq!(
            parse_request_line(b"GET /readyz HTTP/1.1\r\n"),
            Some(Route::Http)
        );
        assert_eq!(
            parse_request_line(b"POST /ws HTTP/1.1\r\n"),
            Some(Route::Http)
        );
        assert_eq!(parse_request_line(b"GET /w"), None);
        assert_eq!(parse_request_line(b"GET"), None);
        assert_eq!(parse_request_line(b"GARBAGE\r\n"), Some(Route::Http));
    }
}
