//! Stopping without cutting requests that are already on their way.
//!
//! When pingora stops a listening service (SIGTERM, or the end of a SIGQUIT hand-off) it closes
//! the listeners and then, in the app's `cleanup`, at once aborts every connection that is waiting
//! for a request. Among those are connections accepted an instant before the listeners closed,
//! whose client has already sent its request: aborting them fails a request that the process had
//! accepted. [`Linger`] wraps the proxy app and delays that cleanup by [`LINGER`], so such a
//! request is read and served (and counted in flight, so the drain waits for it); connections
//! still idle after it are closed as before.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

/// How long connections accepted before the listeners closed get to deliver a request.
pub const LINGER: Duration = Duration::from_millis(250);

/// A pingora app whose `cleanup` waits [`LINGER`] first; everything else is the wrapped app's.
pub struct Linger<A>(Arc<A>);

impl<A> Linger<A> {
    pub fn new(app: A) -> Linger<A> {
        Linger(Arc::new(app))
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Linger<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        ServerApp::process_new(&self.0, session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.0.cleanup().await;
    }
}
