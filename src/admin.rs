//! The admin listener. It never serves proxied traffic; today it answers `GET /healthz`.

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub struct AdminApp;

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (status, body): (StatusCode, &[u8]) = match (&req.method, req.uri.path()) {
            (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, b"ok\n"),
            (_, "/healthz") => (StatusCode::METHOD_NOT_ALLOWED, b"method not allowed\n"),
            _ => (StatusCode::NOT_FOUND, b"not found\n"),
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body.to_vec())
            .unwrap_or_default()
    }
}
