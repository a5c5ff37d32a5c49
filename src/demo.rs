//! `fulcrum demo`: small built-in HTTP backends on the addresses the bundled `config/demo.toml`
//! names, so that the proxy can be tried with nothing else running.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::config::Config;

/// Where the demo config lives in the repository; used to name it in messages.
pub const CONFIG_PATH: &str = "config/demo.toml";
/// The demo config, built into the binary so that `fulcrum demo` runs from any directory.
pub const CONFIG: &str = include_str!("../config/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start demo backend on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the demo runtime: {0}")]
    Runtime(std::io::Error),
}

/// Starts one demo backend per backend address in `config`, on a thread of their own. Each
/// answers every request with its name and the path it was asked for.
pub fn start_backends(config: &Config) -> Result<Vec<SocketAddr>, DemoError> {
    let mut listeners = Vec::new();
    for b in config.upstreams.iter().flat_map(|u| &u.backends) {
        let addr = b.addr;
        let l =
            std::net::TcpListener::bind(addr).map_err(|source| DemoError::Bind { addr, source })?;
        l.set_nonblocking(true).map_err(DemoError::Runtime)?;
        listeners.push(l);
    }
    let addrs: Vec<SocketAddr> = config
        .upstreams
        .iter()
        .flat_map(|u| &u.backends)
        .map(|b| b.addr)
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || {
            runtime.block_on(async move {
                for (n, l) in listeners.into_iter().enumerate() {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            tokio::spawn(serve(l, format!("backend-{}", n + 1)));
                        }
                        Err(e) => tracing::error!(%e, "demo backend cannot start"),
                    }
                }
                std::future::pending::<()>().await
            })
        })
        .map_err(DemoError::Runtime)?;
    Ok(addrs)
}

async fn serve(listener: tokio::net::TcpListener, name: String) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(%e, "demo backend accept failed");
                continue;
            }
        };
        let (name, addr) = (name.clone(), addr.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = format!("hello from {name} ({addr}) — you asked for {}\n", req.uri());
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%e, "demo backend connection ended");
            }
        });
    }
}
