//! TLS termination as a transport layer (beside [`super::guard`] and [`super::linger`]): the
//! handshake under a deadline, counted, with the certificate chosen by SNI from the snapshot's
//! [`CertSet`](crate::cert_set::CertSet).
//!
//! **How it plugs into pingora, and why.** pingora 0.9.1 offers two ways to terminate TLS with
//! rustls: a listener built from `TlsSettings` (optionally with `set_cert_resolver`), which
//! handshakes inside pingora's accept loop, and `Acceptor::from_server_config`, which handshakes
//! a stream given to it. fulcrum uses the second, from its own app layer ([`TlsApp`]), on
//! listeners added as plain TCP:
//!
//! - the rustls `ServerConfig` is fulcrum's: `min_version` (TlsSettings always allows 1.2),
//!   ALPN, session tickets, and a [`ResolvesServerCert`] ([`SniResolver`]) that reads the
//!   certificate set of the snapshot published now, so a certificate reload is the snapshot's
//!   one `ArcSwap` store (new handshakes get the new set; established connections keep theirs);
//! - a handshake that fails, or that the client does not finish within
//!   `request_header_timeout`, is seen and counted (`fulcrum_tls_handshakes_total{listener,
//!   result}`); inside pingora's accept loop it would be neither (pingora has no handshake
//!   timeout: a client that opens a TCP connection and says nothing would hold it for ever);
//! - everything after the handshake is pingora's as before: the TLS stream is handed to the
//!   HTTP app, which picks HTTP/2 or HTTP/1.1 from ALPN.
//!
//! No fork or patch of pingora: both types are its public API.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::listeners::TlsAccept;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::runtime::{TlsListenerConfig, TlsVersion};
use crate::snapshot::SharedSnapshot;

/// rustls asks this for the certificate of each handshake on one listener: the listener's
/// [`CertSet`](crate::cert_set::CertSet) in the snapshot published now.
#[derive(Debug)]
pub struct SniResolver {
    listen: SocketAddr,
    snapshot: SharedSnapshot,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshot.load();
        let set = snapshot.tls.iter().find(|s| s.listen == self.listen)?;
        set.resolve(hello.server_name())
    }
}

/// The rustls config of one listener: fixed for the process's life but for the certificates,
/// which [`SniResolver`] reads at every handshake.
pub fn server_config(listener: &TlsListenerConfig, snapshot: SharedSnapshot) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match listener.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            listen: listener.listen,
            snapshot,
        }));
    config.alpn_protocols = if listener.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // Stateless resumption (nginx's ssl_session_tickets on): keys rotate every 6 hours.
    match rustls::crypto::ring::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(e) => tracing::warn!(error = %e, "no TLS session tickets"),
    }
    config
}

/// The server name a TLS client asked for (SNI), kept in its connection's TLS digest
/// (`SslDigest::extension`) for the access log: one allocation per handshake, none per request.
#[derive(Debug)]
pub struct Sni(pub Box<str>);

/// Keeps each handshake's SNI as [`Sni`].
struct KeepSni;

#[async_trait]
impl TlsAccept for KeepSni {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let name = tls.server_name()?;
        Some(Arc::new(Sni(name.into())))
    }
}

/// An acceptor that runs `config` and keeps each handshake's SNI. pingora attaches handshake
/// callbacks only to an acceptor built from its `TlsSettings`, which makes its own rustls config;
/// the one it builds is replaced by `config` (its `acceptor` is public for this).
fn acceptor(config: ServerConfig) -> Acceptor {
    let mut settings = match TlsSettings::with_callbacks(Box::new(KeepSni)) {
        Ok(settings) => settings,
        Err(e) => unreachable!("pingora's TlsSettings::with_callbacks cannot fail: {e}"),
    };
    settings.set_cert_resolver(Arc::clone(&config.cert_resolver));
    let mut acceptor = settings.build();
    acceptor.acceptor = pingora::tls::TlsAcceptor::from(Arc::new(config));
    acceptor
}

/// A TLS listener as the app layer runs it.
struct Listener {
    listen: SocketAddr,
    acceptor: Acceptor,
    ok: IntCounter,
    failed: IntCounter,
    timeout: IntCounter,
}

/// A pingora app that terminates TLS on the connections of its TLS listeners (found by the
/// connection's local address) and hands the decrypted stream to the wrapped app; connections
/// of the other listeners pass as they are.
pub struct TlsApp<A> {
    app: Arc<A>,
    snapshot: SharedSnapshot,
    listeners: Vec<Listener>,
}

impl<A> TlsApp<A> {
    pub fn new(
        app: A,
        listeners: &[TlsListenerConfig],
        snapshot: SharedSnapshot,
        handshakes: &IntCounterVec,
    ) -> TlsApp<A> {
        let listeners = listeners
            .iter()
            .map(|l| {
                let config = server_config(l, Arc::clone(&snapshot));
                let name = l.listen.to_string();
                let count = |result| handshakes.with_label_values(&[name.as_str(), result]);
                Listener {
                    listen: l.listen,
                    acceptor: acceptor(config),
                    ok: count("success"),
                    failed: count("failure"),
                    timeout: count("timeout"),
                }
            })
            .collect();
        TlsApp {
            app: Arc::new(app),
            snapshot,
            listeners,
        }
    }

    /// The TLS listener a connection came in on: its local address, or a wildcard listener
    /// (`0.0.0.0`, `[::]`) on its port.
    fn listener(&self, stream: &Stream) -> Result<Option<&Listener>, ()> {
        if self.listeners.is_empty() {
            return Ok(None);
        }
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied())
            .ok_or(())?;
        let found = self
            .listeners
            .iter()
            .find(|l| l.listen == local)
            .or_else(|| {
                self.listeners.iter().find(|l| {
                    l.listen.port() == local.port()
                        && l.listen.ip().is_unspecified()
                        && l.listen.is_ipv4() == local.is_ipv4()
                })
            });
        Ok(found)
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let listener = match self.listener(&stream) {
            Ok(Some(listener)) => listener,
            Ok(None) => return ServerApp::process_new(&self.app, stream, shutdown).await,
            // Which listener it came in on is unknown: a TLS client must not get plain HTTP.
            Err(()) => {
                tracing::warn!("cannot read a connection's local address; closed");
                return None;
            }
        };
        // pingora hands a plain listener's connection over as its TCP stream, boxed.
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => *tcp,
            Err(_) => {
                tracing::error!(listener = %listener.listen, "not a TCP connection; closed");
                return None;
            }
        };
        let deadline = self.snapshot.load().client.request_header_timeout;
        let handshake = listener.acceptor.tls_handshake(tcp);
        let stream: Stream = match tokio::time::timeout(deadline, handshake).await {
            Ok(Ok(tls)) => {
                listener.ok.inc();
                Box::new(tls)
            }
            Ok(Err(e)) => {
                listener.failed.inc();
                tracing::debug!(listener = %listener.listen, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                listener.timeout.inc();
                tracing::debug!(listener = %listener.listen, "TLS handshake timed out");
                return None;
            }
        };
        ServerApp::process_new(&self.app, stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}
