//! Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be forwarded.
//! On the way to a backend pingora removes them itself, before `upstream_request_filter`
//! (`HttpUpstreamRequestPolicy`, which fulcrum leaves at its default: standard hop-by-hop
//! headers, the ones `Connection` names, and any upgrade but WebSocket's); this module does the
//! same for responses on their way to the client, which pingora does not. `Transfer-Encoding` is
//! left to pingora, which owns message framing, and an `Upgrade` handshake keeps
//! `Connection: upgrade` + `Upgrade` so that WebSockets pass through.

use http::header::{HeaderName, CONNECTION, TE, TRAILER, UPGRADE};
use http::HeaderMap;
use pingora::http::ResponseHeader;

const ALWAYS: [&str; 4] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Removes hop-by-hop headers from the response sent to the client. `Connection` itself stays
/// on a final response: pingora writes its own value over it (keep-alive or close, from the
/// client connection's state), and replacing a header is cheaper than removing it and having
/// pingora add it back.
pub fn strip_response(resp: &mut ResponseHeader) {
    let interim = resp.status.is_informational();
    for name in to_remove(&resp.headers, interim) {
        resp.remove_header(&name);
    }
}

/// The hop-by-hop headers present, including those named by `Connection`. One pass over the
/// header names (comparisons, no hashing); a `Connection` header's tokens are then looked up
/// only when it is there. Allocates only when there is something to remove. `Connection` is
/// listed only with `connection_too` (an interim response, which pingora leaves as it is).
fn to_remove(headers: &HeaderMap, connection_too: bool) -> Vec<HeaderName> {
    let mut out = Vec::new();
    let (mut connection, mut upgrade) = (false, false);
    for name in headers.keys() {
        if name == CONNECTION {
            connection = true;
        } else if name == UPGRADE {
            upgrade = true;
        } else if name == TE || name == TRAILER || ALWAYS.contains(&name.as_str()) {
            out.push(name.clone());
        }
    }
    if !connection {
        return out;
    }
    for v in headers.get_all(CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',').map(str::trim) {
            let keep = (upgrade && token.eq_ignore_ascii_case("upgrade"))
                || token.eq_ignore_ascii_case("transfer-encoding")
                || token.eq_ignore_ascii_case("keep-alive")
                || token.is_empty();
            // A Keep-Alive header is on the fixed list already.
            if !keep && headers.contains_key(token) {
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
        }
    }
    if connection_too && !upgrade {
        out.push(CONNECTION);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(pairs: &[(&str, &str)]) -> Vec<String> {
        stripped_with(103, pairs)
    }

    fn stripped_with(status: u16, pairs: &[(&str, &str)]) -> Vec<String> {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        for (k, v) in pairs {
            resp.append_header(k.to_string(), *v).unwrap();
        }
        let mut removed: Vec<String> = to_remove(&resp.headers, resp.status.is_informational())
            .iter()
            .map(|n| n.to_string())
            .collect();
        removed.sort();
        strip_response(&mut resp);
        for name in &removed {
            assert!(!resp.headers.contains_key(name.as_str()));
        }
        let kept = |k: &str| resp.headers.contains_key(k) || !pairs.iter().any(|(n, _)| *n == k);
        assert!(kept("accept") && kept("server"));
        removed
    }

    #[test]
    fn removes_fixed_and_connection_named_headers() {
        let r = stripped(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        assert_eq!(r, vec!["connection", "keep-alive", "te", "x-secret"]);
    }

    #[test]
    fn a_header_named_by_a_connection_option_goes_whatever_the_option() {
        let r = stripped(&[("connection", "close"), ("close", "x"), ("server", "s")]);
        assert_eq!(r, vec!["close", "connection"]);
    }

    #[test]
    fn a_final_response_keeps_connection_for_pingora_to_overwrite() {
        let r = stripped_with(200, &[("connection", "close, X-Secret"), ("x-secret", "1")]);
        assert_eq!(r, vec!["x-secret"]);
    }

    #[test]
    fn keeps_upgrade_handshake() {
        let r = stripped(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(r.is_empty(), "{r:?}");
    }
}
