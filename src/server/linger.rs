//! Stopping without cutting requests that are already on their way.
//!
//! When pingora stops a listening service (SIGTERM, or the end of a SIGQUIT hand-off) it closes
//! the listeners and then, in the app's `cleanup`, at once aborts every connection that is waiting
//! for a request. Among those are connections accepted an instant before the listeners closed,
//! whose client has already sent its request: aborting them fails a request that the process had
//! accepted. [`Linger`] wraps the proxy app and delays that cleanup by [`LINGER`], so such a
//! request is read and served (and counted in flight, so the drain waits for it); connections
//! still idle after it are closed as before.
//!
//! It also keeps `fulcrum_downstream_connections_active`: pingora 0.9 calls `process_new` once
//! per client connection and serves all of its keep-alive requests inside it, so a connection is
//! counted from its accept to its close, idle time between requests included.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;

/// How long connections accepted before the listeners closed get to deliver a request.
pub const LINGER: Duration = Duration::from_millis(250);

/// A pingora app whose `cleanup` waits [`LINGER`] first and that counts open connections;
/// everything else is the wrapped app's.
pub struct Linger<A> {
    app: Arc<A>,
    connections: IntGauge,
}

impl<A> Linger<A> {
    pub fn new(app: A, connections: IntGauge) -> Linger<A> {
        Linger {
            app: Arc::new(app),
            connections,
        }
    }
}

/// Counts a connection while a request of it is being served.
struct Open<'a>(&'a IntGauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Linger<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.connections.inc();
        let _open = Open(&self.connections);
        ServerApp::process_new(&self.app, session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.app.cleanup().await;
    }
}
