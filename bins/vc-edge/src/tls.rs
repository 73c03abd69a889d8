//! TLS on the edge's one listener: the server side of `wss://` and `https://` (the operational
//! endpoints), from a certificate chain and its private key in PEM files.
//!
//! The TLS handshake comes first; the request line is then read from the decrypted stream (a TLS
//! stream cannot be peeked) and given back to whoever reads the connection next: see [`Conn`].

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why TLS material could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no certificate, or a broken PEM block.
    #[error("{}: not a PEM certificate chain ({reason})", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file holds no private key, or a broken PEM block.
    #[error("{}: not a PEM private key ({reason})", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Both files parse, but rustls refuses them together (the key is not the certificate's, or of
    /// a kind it does not support).
    #[error("{} with {}: {reason}", cert.display(), key.display())]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// The edge's TLS server settings, built once at start and shared by every connection.
#[derive(Clone)]
pub struct EdgeTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for EdgeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeTls").finish_non_exhaustive()
    }
}

impl EdgeTls {
    /// Loads the certificate chain (PEM, leaf first, any intermediates after it) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1). The first problem found is the error; see
    /// [`EdgeTls::from_pem_files_all_errors`] for every one.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<EdgeTls, TlsError> {
        EdgeTls::from_pem_files_all_errors(cert, key).map_err(|mut e| e.remove(0))
    }

    /// Like [`EdgeTls::from_pem_files`], with the problems of both files reported (never empty).
    pub fn from_pem_files_all_errors(cert: &Path, key: &Path) -> Result<EdgeTls, Vec<TlsError>> {
        match (load_chain(cert), load_key(key)) {
            (Ok(chain), Ok(k)) => EdgeTls::new(chain, k).map_err(|reason| {
                vec![TlsError::Unusable {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                    reason,
                }]
            }),
            (c, k) => Err(c.err().into_iter().chain(k.err()).collect()),
        }
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, String> {
        // ring: the provider the workspace already builds (reqwest, async-nats); named explicitly so
        // that a second provider enabled by some dependency never makes the choice ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the private key is not the certificate's".to_string()
                }
                e => e.to_string(),
            })?;
        // The listener routes by an HTTP/1.1 request line (`GET /ws`): never negotiate h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(EdgeTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Certificate {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(vc_shared::pem::reason(&e)))?;
    if chain.is_empty() {
        return Err(bad("no \"BEGIN CERTIFICATE\" block".into()));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block"
                    .into()
            }
            e => vc_shared::pem::reason(&e),
        },
    })
}

/// One accepted connection: plain TCP, or TLS with the bytes read to route it still to be replayed.
///
/// Plain connections are the stream itself (their request line was peeked, not read): reading and
/// writing cost one branch more than on a bare [`TcpStream`], and nothing is copied.
pub(crate) enum Conn {
    /// `ws://`, `http://`.
    Plain(TcpStream),
    /// `wss://`, `https://` (boxed: rustls's state is large, and plain connections should not pay
    /// for it).
    Tls(Box<TlsConn>),
}

/// A server-side TLS stream whose first decrypted bytes were read to route it.
pub(crate) struct TlsConn {
    /// Bytes read ahead (the start of the first request), given back before the stream's own.
    /// Emptied, and its memory freed, once given back.
    replay: Vec<u8>,
    /// How much of `replay` has been given back.
    pos: usize,
    stream: TlsStream<TcpStream>,
}

impl Conn {
    /// A TLS connection from which `read_ahead` was read (to be read again by its next reader).
    pub(crate) fn tls(stream: TlsStream<TcpStream>, read_ahead: Vec<u8>) -> Conn {
        Conn::Tls(Box::new(TlsConn {
            replay: read_ahead,
            pos: 0,
            stream,
        }))
    }

    /// `TCP_NODELAY` on the socket underneath.
    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.set_nodelay(on),
            Conn::Tls(t) => t.stream.get_ref().0.set_nodelay(on),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(t) => {
                if t.pos < t.replay.len() {
                    let n = buf.remaining().min(t.replay.len() - t.pos);
                    buf.put_slice(&t.replay[t.pos..t.pos + n]);
                    t.pos += n;
                    if t.pos == t.replay.len() {
                        t.replay = Vec::new();
                        t.pos = 0;
                    }
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut t.stream).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(t) => Pin::new(&mut t.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(t) => Pin::new(&mut t.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(t) => t.stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(t) => Pin::new(&mut t.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(t) => Pin::new(&mut t.stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    /// A certificate and its key, self-signed, as PEM.
    fn pair() -> (String, String) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        (c.pem(), k.serialize_pem())
    }

    #[test]
    fn good_pem_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair();
        let cert = write(dir.path(), "edge.crt", &c);
        let key = write(dir.path(), "edge.key", &k);
        EdgeTls::from_pem_files(&cert, &key).expect("usable");
    }

    #[test]
    fn bad_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair();
        let cert = write(dir.path(), "edge.crt", &c);
        let key = write(dir.path(), "edge.key", &k);
        let junk = write(dir.path(), "junk.pem", "not a pem file\n");
        let missing = dir.path().join("missing.pem");

        let e = EdgeTls::from_pem_files(&junk, &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("junk.pem") && e.contains("certificate"), "{e}");
        let e = EdgeTls::from_pem_files(&cert, &junk)
            .unwrap_err()
            .to_string();
        assert!(e.contains("junk.pem") && e.contains("private key"), "{e}");
        let e = EdgeTls::from_pem_files(&missing, &key)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );
        // The certificate where the key should be, and the other way round.
        let e = EdgeTls::from_pem_files(&key, &cert)
            .unwrap_err()
            .to_string();
        assert!(e.contains("edge.key"), "{e}");
        // Both broken: both reported.
        let all = EdgeTls::from_pem_files_all_errors(&junk, &missing).unwrap_err();
        assert_eq!(all.len(), 2, "{all:?}");
        // A key that is not the certificate's.
        let (_, other) = pair();
        let other = write(dir.path(), "other.key", &other);
        let e = EdgeTls::from_pem_files(&cert, &other)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("edge.crt")
                && e.contains("other.key")
                && e.contains("not the certificate's"),
            "{e}"
        );
    }
}
