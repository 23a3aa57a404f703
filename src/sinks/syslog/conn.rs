//! Syslog transports: UDP sockets and TCP/TLS streams to one receiver, with the timeouts,
//! the liveness check and the end-of-batch confirmation the syslog sink builds its
//! acknowledgement on.
//!
//! Owns: name resolution (again at every connect, so DNS changes are followed), connecting
//! (each resolved address in turn), the TLS handshake (tokio-rustls, client config from
//! [`crate::http::rustls_client_config`]), and turning I/O failures into [`ConnError`]s
//! that name the sink, the address and what to check.
//!
//! Must not: encode messages (that is `format`) or decide when a batch counts as
//! delivered (that is `sinks::syslog`); it only reports what the connection proved.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::config::Mode;

/// A byte stream to the receiver: plain TCP or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A transport failure. `fatal` ones need a human (e.g. a certificate the receiver's CA
/// did not sign); the others may pass (receiver restarting, network blip). `held_open`:
/// the receiver neither closed nor reset the connection within `timeout` after our end
/// of stream (stuck, or one that keeps connections open); not set for a receiver that
/// refused or dropped the connection (a TLS alert, a reset), which is no sign of that.
#[derive(Debug)]
pub struct ConnError {
    pub fatal: bool,
    pub held_open: bool,
    pub message: String,
}

impl ConnError {
    fn retryable(message: String) -> Self {
        ConnError {
            fatal: false,
            held_open: false,
            message,
        }
    }
}

/// TLS settings resolved at build time.
#[derive(Clone)]
pub struct TlsTarget {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// Where and how to connect; cheap to clone.
#[derive(Clone)]
pub struct Target {
    pub sink_id: String,
    /// `host:port` as configured.
    pub address: String,
    pub mode: Mode,
    /// Limit for each step: connect (with handshake), write a batch, confirm it.
    pub timeout: Duration,
    /// Set when `mode` is TLS.
    pub tls: Option<TlsTarget>,
}

impl Target {
    fn err(&self, what: String) -> ConnError {
        ConnError::retryable(format!(
            "sink `{}`: {} ({}): {what}",
            self.sink_id,
            self.address,
            self.mode.as_str()
        ))
    }

    async fn resolve(&self) -> Result<Vec<SocketAddr>, ConnError> {
        let lookup = tokio::time::timeout(self.timeout, tokio::net::lookup_host(&self.address));
        match lookup.await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err(self
                        .err("the host name resolves to no address; check `address`".to_string()))
                } else {
                    Ok(addrs)
                }
            }
            Ok(Err(e)) => Err(self.err(format!(
                "cannot resolve the host name: {e}; check `address` and DNS"
            ))),
            Err(_) => Err(self.err(format!(
                "resolving the host name timed out after {:?}; check DNS",
                self.timeout
            ))),
        }
    }

    /// Connect a stream (TCP, then the TLS handshake when configured).
    pub async fn connect(&self) -> Result<Box<dyn Stream>, ConnError> {
        let addrs = self.resolve().await?;
        let mut last = String::new();
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: timed out after {:?}", self.timeout),
            }
        }
        let Some(tcp) = tcp else {
            return Err(self.err(format!(
                "cannot connect ({last}); check that the receiver is running and listens on that address (firewalls?)"
            )));
        };
        // Batches are written in one go; don't let Nagle hold back their last segment.
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let handshake = connector.connect(tls.server_name.clone(), tcp);
        match tokio::time::timeout(self.timeout, handshake).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(e)) => {
                let fatal = is_certificate_error(&e);
                let hint = if fatal {
                    "set `tls.ca_file` to the CA that signed the receiver's certificate, or `tls.server_name` to a name in it"
                } else {
                    "check that the receiver speaks TLS on this port (RFC 5425) and accepts our client certificate, if it requires one"
                };
                let mut err = self.err(format!("TLS handshake failed: {e}; {hint}"));
                err.fatal = fatal;
                Err(err)
            }
            Err(_) => Err(self.err(format!(
                "TLS handshake timed out after {:?}; check that the receiver speaks TLS on this port",
                self.timeout
            ))),
        }
    }

    /// Write `buf` and flush it.
    pub async fn write(&self, stream: &mut dyn Stream, buf: &[u8]) -> Result<(), ConnError> {
        let write = async {
            stream.write_all(buf).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err(format!(
                "writing {} bytes failed: {e}; the batch will be sent again on a new connection",
                buf.len()
            ))),
            Err(_) => Err(self.err(format!(
                "writing {} bytes timed out after {:?} (the receiver is not reading); raise `timeout` for very slow links",
                buf.len(),
                self.timeout
            ))),
        }
    }

    /// Close our sending side and wait for the receiver to close its side. A receiver
    /// only sees our end of stream after it has read every byte before it, so a clean
    /// close proves it read the whole batch; a reset means it went away without reading
    /// all of it, and no close within `timeout` proves nothing (an error either way).
    pub async fn confirm_close(&self, mut stream: Box<dyn Stream>) -> Result<(), ConnError> {
        let confirm = async {
            // A receiver that closed before our FIN closed for its own reasons (shutting
            // down, an idle timeout), not because it read the batch: what it had not read
            // yet is gone, so the batch is not confirmed (re-sent: duplicates, never loss).
            // The write may not have yielded: let the I/O driver take in what arrived.
            tokio::task::yield_now().await;
            if peer_closed(stream.as_mut()) {
                return Err(io::Error::other(
                    "it closed the connection before the end of the batch",
                ));
            }
            stream.shutdown().await?;
            let mut scratch = [0u8; 512];
            // Receivers send nothing but TLS records (session tickets, close_notify),
            // which rustls consumes; bound the loop all the same.
            for _ in 0..10_000 {
                match stream.read(&mut scratch).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    // The receiver closed TCP without a TLS close_notify: still a close.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            Err(io::Error::other(
                "the receiver keeps sending data instead of closing",
            ))
        };
        match tokio::time::timeout(self.timeout, confirm).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err(format!(
                "the receiver did not confirm the batch ({e}): it went away before reading all of it (restarted?) or dropped the connection (TLS: does it require a client certificate, `tls.client_cert_file`? see its log); the batch will be sent again"
            ))),
            Err(_) => Err(ConnError {
                held_open: true,
                ..self.err(format!(
                    "the receiver did not close the connection within {:?} after the batch: it is overloaded or stuck (the batch will be sent again; raise `timeout` for a slow one), or it keeps half-closed connections open (then set `confirm = \"flush\"`)",
                    self.timeout
                ))
            }),
        }
    }

    /// A UDP socket connected to the receiver.
    pub async fn connect_udp(&self) -> Result<UdpSocket, ConnError> {
        let addrs = self.resolve().await?;
        let addr = addrs[0];
        let local: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| self.err(format!("cannot open a UDP socket: {e}")))?;
        socket
            .connect(addr)
            .await
            .map_err(|e| self.err(format!("cannot address {addr}: {e}; check `address`")))?;
        Ok(socket)
    }
}

/// Whether the receiver has closed (or reset) a connection we still hold. Syslog
/// receivers never send application data, so anything readable is either TLS
/// housekeeping (consumed by rustls), end of stream or an error. Does not wait, so it sees
/// only what the I/O driver has taken in: callers yield once first (`yield_now` resumes
/// after the driver has run).
pub fn peer_closed(stream: &mut dyn Stream) -> bool {
    let mut scratch = [0u8; 512];
    for _ in 0..64 {
        match stream.read(&mut scratch).now_or_never() {
            None => return false,
            Some(Ok(0)) | Some(Err(_)) => return true,
            Some(Ok(_)) => continue,
        }
    }
    false
}

fn is_certificate_error(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}
