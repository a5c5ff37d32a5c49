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
//! counted from its accept to its close, idle time between requests included. That count is
//! also where `max_connections` is enforced: pingora accepts without limit, so a connection past
//! it is closed as soon as it is accepted (it does not wait in the backlog).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};

use crate::snapshot::SharedSnapshot;

/// How long connections accepted before the listeners closed get to deliver a request.
pub const LINGER: Duration = Duration::from_millis(250);

/// A pingora app whose `cleanup` waits [`LINGER`] first and that counts open connections;
/// everything else is the wrapped app's.
pub struct Linger<A> {
    app: Arc<A>,
    snapshot: SharedSnapshot,
    open: AtomicUsize,
    connections: IntGauge,
    over_limit: IntCounter,
}

impl<A> Linger<A> {
    pub fn new(
        app: A,
        snapshot: SharedSnapshot,
        connections: IntGauge,
        refused: &prometheus::IntCounterVec,
    ) -> Linger<A> {
        Linger {
            app: Arc::new(app),
            snapshot,
            open: AtomicUsize::new(0),
            connections,
            over_limit: refused.with_label_values(&["max_connections"]),
        }
    }
}

/// Counts a connection from its accept to its close.
struct Open<'a>(&'a AtomicUsize, &'a IntGauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Linger<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let max = self.snapshot.load().max_connections;
        if self.open.fetch_add(1, Ordering::Relaxed) >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.over_limit.inc();
            return None;
        }
        self.connections.inc();
        let _open = Open(&self.open, &self.connections);
        ServerApp::process_new(&self.app, session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.app.cleanup().await;
    }
}
