//! `X-Forwarded-For`, `-Proto` and `-Host`. An incoming chain is believed only when the
//! connection comes from one of `trusted_proxies`; from anyone else it is replaced, so a client
//! cannot forge the address a backend sees. For the same reason `Forwarded` (RFC 7239) and
//! `X-Real-IP`, which fulcrum does not write, are removed from a request that does not come
//! from a trusted proxy, and passed on from one that does.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::{ErrorType::InvalidHTTPHeader, OrErr, Result};

// The names as `&'static str` for pingora's insert_header, which keeps such a name as it is
// (a non-standard `HeaderName` is copied into a new buffer on every insert), and as
// `HeaderName`s for lookups.
const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static(XFF);
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static(XFP);
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static(XFH);
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The connection's peer address. An IPv4 client of a dual-stack (`[::]`) listener arrives as
/// `::ffff:a.b.c.d`; it is returned as the IPv4 address it is, so that IPv4 `trusted_proxies`,
/// `X-Forwarded-For` and `ip_hash` see the same client on either kind of listener.
pub fn peer_ip(session: &pingora::proxy::Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
}

pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&peer))
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy (read right to left, as each proxy
/// appends). A malformed entry stops the walk at the last address known good.
pub fn client_ip(peer: Option<IpAddr>, req: &RequestHeader, trusted: &[IpNet]) -> Option<IpAddr> {
    let mut client = peer?;
    if !is_trusted(client, trusted) {
        return Some(client);
    }
    for value in req.headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            return Some(client);
        };
        for hop in value.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return Some(client);
            };
            let ip = ip.to_canonical();
            client = ip;
            if !is_trusted(ip, trusted) {
                return Some(ip);
            }
        }
    }
    Some(client)
}

/// Sets the forwarding headers on the request to the backend.
/// `host` is the client's `Host` (or authority); `proto` is "http" or "https".
pub fn apply(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    trusted: bool,
    proto: &'static str,
    host: Option<HeaderValue>,
) -> Result<()> {
    let prior = trusted.then(|| joined(req, &X_FORWARDED_FOR)).flatten();
    match (prior, peer) {
        (Some(chain), Some(ip)) => req.insert_header(XFF, format!("{chain}, {ip}"))?,
        (None, Some(ip)) => {
            // Written without the formatting machinery, into the buffer the value then owns.
            let mut text = Vec::with_capacity(15);
            crate::access_log::ip_addr(ip, &mut text);
            let value = HeaderValue::from_maybe_shared(Bytes::from(text))
                .or_err(InvalidHTTPHeader, "client address")?;
            req.insert_header(XFF, value)?
        }
        // A Unix-socket client has no address to append.
        (Some(chain), None) => req.insert_header(XFF, chain)?,
        (None, None) => {
            req.remove_header(&X_FORWARDED_FOR);
        }
    }
    if !trusted {
        req.remove_header(&http::header::FORWARDED);
        req.remove_header(&X_REAL_IP);
    }
    if !(trusted && req.headers.contains_key(&X_FORWARDED_PROTO)) {
        req.insert_header(XFP, HeaderValue::from_static(proto))?;
    }
    if !(trusted && req.headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => req.insert_header(XFH, h)?,
            None => {
                req.remove_header(&X_FORWARDED_HOST);
            }
        }
    }
    Ok(())
}

/// All values of a header joined with ", " (a chain may arrive split over several lines).
fn joined(req: &RequestHeader, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in req.headers.get_all(name) {
        let v = v.to_str().ok()?.trim();
        if v.is_empty() {
            continue;
        }
        match out.as_mut() {
            Some(s) => {
                s.push_str(", ");
                s.push_str(v);
            }
            None => out = Some(v.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn get<'a>(r: &'a RequestHeader, name: &HeaderName) -> &'a str {
        r.headers.get(name).unwrap().to_str().unwrap()
    }

    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)));

    #[test]
    fn untrusted_peer_replaces_spoofed_chain() {
        let mut r = req(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        apply(
            &mut r,
            PEER,
            false,
            "http",
            Some(HeaderValue::from_static("a.test")),
        )
        .unwrap();
        assert_eq!(get(&r, &X_FORWARDED_FOR), "10.1.2.3");
        assert_eq!(get(&r, &X_FORWARDED_PROTO), "http");
        assert_eq!(get(&r, &X_FORWARDED_HOST), "a.test");
    }

    #[test]
    fn trusted_peer_extends_chain_and_keeps_proto_and_host() {
        let mut r = req(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.test"),
        ]);
        apply(
            &mut r,
            PEER,
            true,
            "http",
            Some(HeaderValue::from_static("internal.test")),
        )
        .unwrap();
        assert_eq!(get(&r, &X_FORWARDED_FOR), "1.1.1.1, 2.2.2.2, 10.1.2.3");
        assert_eq!(get(&r, &X_FORWARDED_PROTO), "https");
        assert_eq!(get(&r, &X_FORWARDED_HOST), "public.test");
    }

    #[test]
    fn client_ip_believes_only_trusted_hops() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let r = req(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // from a trusted proxy: skip trusted hops from the right
        assert_eq!(client_ip(ip("10.1.1.1"), &r, &nets), ip("1.2.3.4"));
        // from anyone else: the peer, whatever the header says
        assert_eq!(client_ip(ip("8.8.8.8"), &r, &nets), ip("8.8.8.8"));
        let mapped = req(&[("x-forwarded-for", "::ffff:1.2.3.4, ::ffff:10.0.0.9")]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &mapped, &nets),
            ip("1.2.3.4"),
            "mapped hops are IPv4"
        );
        let bad = req(&[("x-forwarded-for", "junk, 10.0.0.7")]);
        assert_eq!(client_ip(ip("10.1.1.1"), &bad, &nets), ip("10.0.0.7"));
    }

    #[test]
    fn trust_is_by_cidr() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted("10.9.9.9".parse().unwrap(), &nets));
        assert!(!is_trusted("11.0.0.1".parse().unwrap(), &nets));
    }

    #[test]
    fn forwarded_and_x_real_ip_pass_only_from_a_trusted_proxy() {
        let sent = [("forwarded", "for=6.6.6.6"), ("x-real-ip", "6.6.6.6")];
        let peer = Some("8.8.8.8".parse().unwrap());
        let mut untrusted = req(&sent);
        apply(&mut untrusted, peer, false, "http", None).unwrap();
        assert!(untrusted.headers.get("forwarded").is_none());
        assert!(untrusted.headers.get("x-real-ip").is_none());
        let mut trusted = req(&sent);
        apply(&mut trusted, peer, true, "http", None).unwrap();
        assert_eq!(trusted.headers["forwarded"], "for=6.6.6.6");
        assert_eq!(trusted.headers["x-real-ip"], "6.6.6.6");
    }
}
