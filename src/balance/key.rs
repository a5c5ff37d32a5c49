//! The hash key of a request, as `hash_key` names it: a header, a cookie, a query parameter,
//! the path, or the client IP. Borrowed from the request, never copied. An absent or empty
//! value is no key (the hash strategies then balance round-robin).

use std::net::IpAddr;

use http::header::COOKIE;
use pingora::http::RequestHeader;

use crate::config::HashKey;

/// Room for a client IP's bytes (16 for IPv6).
pub type IpBytes = [u8; 16];

/// The key bytes of `req` for `key`. `client` is the real client address (see
/// `proxy::forwarded::client_ip`); `buf` holds its bytes when the key is the client IP.
pub fn extract_key<'a>(
    key: &HashKey,
    req: &'a RequestHeader,
    client: Option<IpAddr>,
    buf: &'a mut IpBytes,
) -> Option<&'a [u8]> {
    let value: &[u8] = match key {
        HashKey::Header(name) => req.headers.get(name)?.as_bytes(),
        HashKey::Cookie(name) => cookie(req, name)?,
        HashKey::Query(name) => query(req.uri.query()?, name)?,
        HashKey::Path => req.uri.path().as_bytes(),
        HashKey::ClientIp => match client? {
            IpAddr::V4(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                &buf[..4]
            }
            IpAddr::V6(v6) => {
                *buf = v6.octets();
                &buf[..]
            }
        },
    };
    (!value.is_empty()).then_some(value)
}

fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers.get_all(COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
    })
}

fn query<'a>(query: &'a str, name: &str) -> Option<&'a [u8]> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn key(k: &HashKey, r: &RequestHeader, ip: Option<IpAddr>) -> Option<Vec<u8>> {
        let mut buf = IpBytes::default();
        extract_key(k, r, ip, &mut buf).map(<[u8]>::to_vec)
    }

    #[test]
    fn header_cookie_query_path() {
        let r = req(
            "/a/b?x=1&uid=42&flag",
            &[
                ("x-user", "u7"),
                ("cookie", "a=1; sid=s9"),
                ("cookie", "z=0"),
            ],
        );
        assert_eq!(
            key(&HashKey::Header("x-user".parse().unwrap()), &r, None),
            Some(b"u7".to_vec())
        );
        assert_eq!(
            key(&HashKey::Cookie("sid".into()), &r, None),
            Some(b"s9".to_vec())
        );
        assert_eq!(
            key(&HashKey::Cookie("z".into()), &r, None),
            Some(b"0".to_vec())
        );
        assert_eq!(
            key(&HashKey::Query("uid".into()), &r, None),
            Some(b"42".to_vec())
        );
        assert_eq!(key(&HashKey::Path, &r, None), Some(b"/a/b".to_vec()));
    }

    #[test]
    fn missing_or_empty_is_no_key() {
        let r = req("/?uid=&flag", &[("cookie", "sidx=1")]);
        assert_eq!(
            key(&HashKey::Header("x-user".parse().unwrap()), &r, None),
            None
        );
        assert_eq!(key(&HashKey::Cookie("sid".into()), &r, None), None);
        assert_eq!(key(&HashKey::Query("uid".into()), &r, None), None);
        assert_eq!(key(&HashKey::Query("flag".into()), &r, None), None);
        assert_eq!(key(&HashKey::ClientIp, &r, None), None);
    }

    #[test]
    fn client_ip_bytes() {
        let r = req("/", &[]);
        assert_eq!(
            key(&HashKey::ClientIp, &r, Some("10.1.2.3".parse().unwrap())),
            Some(vec![10, 1, 2, 3])
        );
        assert_eq!(
            key(&HashKey::ClientIp, &r, Some("::1".parse().unwrap())).map(|k| k.len()),
            Some(16)
        );
    }
}
