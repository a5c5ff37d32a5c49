//! Listen addresses, as `[server]` and `[[server.tls]]` take them.

use std::net::SocketAddr;

use toml::Spanned;

use super::Checker;

/// A listen address: `IP:PORT`, or `localhost:PORT`, which is 127.0.0.1 (only: not also ::1,
/// which a host without IPv6 cannot bind).
pub(super) fn listen_addr(c: &mut Checker, a: &Spanned<String>, field: &str) -> Option<SocketAddr> {
    match crate::config::listen_address(a.get_ref()) {
        Some(addr) => Some(addr),
        None => {
            let msg = format!(
                "invalid listen address \"{}\"; expected IP:PORT like \"127.0.0.1:8080\" or \"[::]:8080\", or localhost:PORT",
                a.get_ref()
            );
            c.error(a.span(), field, msg);
            None
        }
    }
}
