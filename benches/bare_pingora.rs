//! The engine's own reference for `benches/compare.py`: the smallest pingora `ProxyHttp` that
//! round-robins over its backends, with one worker thread and everything else at pingora's
//! defaults. Nothing of fulcrum is in it. `bare_pingora_tuned.rs` runs the same proxy with
//! fulcrum's engine settings.
//!
//!   bare_pingora LISTEN BACKEND [BACKEND ...]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct RoundRobin {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
}

#[async_trait]
impl ProxyHttp for RoundRobin {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.backends.len();
        Ok(Box::new(HttpPeer::new(
            self.backends[i],
            false,
            String::new(),
        )))
    }
}

/// Serves until killed; `l4_read_buffer: false` drops the listener's L4 read buffer, as
/// fulcrum does.
pub fn run(l4_read_buffer: bool) {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .expect("usage: bare_pingora LISTEN BACKEND [BACKEND ...]");
    let backends: Vec<SocketAddr> = args.map(|a| a.parse().expect("backend address")).collect();
    assert!(!backends.is_empty(), "at least one backend");

    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = RoundRobin {
        backends,
        next: AtomicUsize::new(0),
    };
    let mut service = http_proxy_service(&server.configuration, proxy);
    let mut listener = ListenerConfig::tcp(listen);
    if !l4_read_buffer {
        listener = listener.l4_buffer(L4BufferSettings::default().read(0));
    }
    service.add_listener(listener);
    server.add_service(service);
    server.run_forever();
}

#[allow(dead_code)] // bare_pingora_tuned.rs includes this file as a module and has its own main
fn main() {
    run(true);
}
