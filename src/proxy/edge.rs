//! The checks an edge proxy makes on a request header before routing it (RFC 9112 and the
//! smuggling and path-confusion defences of nginx and Envoy): one `Host`, a valid one, and one
//! for every HTTP/1.1 request; an absolute-form target routes by its authority; repeated
//! `Content-Length` values merge when they agree and are refused when they do not; a
//! `Transfer-Encoding` must be `chunked` alone; the path is normalised, and the normal form is
//! what routing sees and what the backend is sent.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Version};
use pingora::http::RequestHeader;

use super::error::ProxyError;
use super::normalize::normalize;

/// Checks `req` and rewrites it into the form fulcrum routes and forwards.
pub fn check(
    req: &mut RequestHeader,
    max_headers: usize,
    merge_slashes: bool,
) -> Result<(), ProxyError> {
    if req.headers.len() > max_headers {
        return Err(ProxyError::HeaderTooLarge("too many header lines"));
    }
    if req.version == Version::HTTP_2 {
        h2_authority(req)?;
    }
    let absolute = absolute_form(req.raw_path()).map(|(a, rest)| (a.to_vec(), rest.to_vec()));
    host(req, absolute.as_ref().map(|(a, _)| a.as_slice()))?;
    content_length(req)?;
    transfer_encoding(req)?;
    target(
        req,
        absolute.as_ref().map(|(_, rest)| rest.as_slice()),
        merge_slashes,
    )
}

/// HTTP/2 names the host in `:authority`, which pingora keeps in the URI: it becomes the `Host`
/// (what routing, logs and the backend see; nginx does the same). A `Host` sent beside it that
/// is not the same bytes pingora refuses (400) before fulcrum sees the request (RFC 9113
/// §8.3.1 lets a server treat it as malformed).
fn h2_authority(req: &mut RequestHeader) -> Result<(), ProxyError> {
    let Some(authority) = req.uri.authority() else {
        return Ok(());
    };
    if req.headers.contains_key(HOST) {
        return Ok(());
    }
    let value = HeaderValue::from_str(authority.as_str())
        .map_err(|_| ProxyError::Invalid("invalid :authority"))?;
    req.insert_header(HOST, value)
        .map_err(|_| ProxyError::Invalid("invalid :authority"))
}

/// An absolute-form target (`http://authority/path?query`, RFC 9112 §3.2.2) split into its
/// authority and the rest. pingora keeps such a target as it came and gives its `Uri` only the
/// path.
fn absolute_form(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme.as_bytes())
            .then(|| &target[scheme.len()..])
    })?;
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(rest.split_at(end))
}

/// One `Host`, well formed; HTTP/1.1 requires one unless the target carries the authority, in
/// which case the authority wins (RFC 9112 §3.2.2) and becomes the `Host` sent on.
fn host(req: &mut RequestHeader, authority: Option<&[u8]>) -> Result<(), ProxyError> {
    // A second Host (and userinfo in one) pingora refuses before fulcrum sees the request.
    let first = req.headers.get(HOST);
    if let Some(h) = first {
        if !valid_host(h.as_bytes()) {
            return Err(ProxyError::Invalid("Host is not a valid host[:port]"));
        }
    }
    match authority {
        Some(authority) => {
            if !valid_host(authority) || authority.is_empty() {
                return Err(ProxyError::Invalid(
                    "the request target's authority is not a valid host[:port]",
                ));
            }
            if first.is_none_or(|h| h.as_bytes() != authority) {
                let value = HeaderValue::from_bytes(authority)
                    .map_err(|_| ProxyError::Invalid("invalid authority"))?;
                req.insert_header(HOST, value)
                    .map_err(|_| ProxyError::Invalid("invalid authority"))?;
            }
        }
        None if first.is_none() && req.version == Version::HTTP_11 => {
            return Err(ProxyError::Invalid("HTTP/1.1 request without Host"));
        }
        None => {}
    }
    Ok(())
}

/// The bytes of a registered name (RFC 3986 §3.2.2: unreserved and sub-delims; not the `%` of
/// a percent-encoding, which no real host name needs), as a table: one lookup per byte.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        c += 1;
    }
    table
};

/// `host[:port]`: a registered name (unreserved, sub-delims), an IPv4
/// address or a bracketed IPv6 literal, then an optional port of at most five digits. Empty is
/// allowed (a request without an authority, RFC 9112 §3.2).
fn valid_host(b: &[u8]) -> bool {
    let (host, port) = if b.first() == Some(&b'[') {
        let Some(end) = b.iter().position(|&c| c == b']') else {
            return false;
        };
        let inner = &b[1..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
        {
            return false;
        }
        match &b[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b[..0], port),
            _ => return false,
        }
    } else {
        match b.iter().rposition(|&c| c == b':') {
            Some(i) => (&b[..i], &b[i + 1..]),
            None => (b, &b[..0]),
        }
    };
    let name_ok = host.iter().all(|&c| REG_NAME[usize::from(c)]);
    let port_ok = port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && (port.is_empty() || std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok()));
    name_ok && port_ok
}

/// Every `Content-Length` value (repeated headers and comma lists) must be the same number;
/// when it is given more than once it is sent on once (RFC 9110 §8.6, RFC 9112 §6.3). pingora
/// already refuses differing values when it reads the request, but leaves the header as it came:
/// the merge is this function's job (the refusal stays, for requests that reach it otherwise).
fn content_length(req: &mut RequestHeader) -> Result<(), ProxyError> {
    let mut value: Option<u64> = None;
    let mut count = 0;
    for v in req.headers.get_all(CONTENT_LENGTH) {
        let text = v
            .to_str()
            .map_err(|_| ProxyError::Invalid("Content-Length is not a number"))?;
        for part in text.split(',') {
            let part = part.trim_matches([' ', '\t']);
            let n =
                (!part.is_empty() && part.len() <= 19 && part.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| part.parse::<u64>().ok())
                    .flatten()
                    .ok_or(ProxyError::Invalid("Content-Length is not a number"))?;
            count += 1;
            if value.is_some_and(|v| v != n) {
                return Err(ProxyError::Invalid("conflicting Content-Length values"));
            }
            value = Some(n);
        }
    }
    if let (Some(n), true) = (value, count > 1) {
        req.insert_header(CONTENT_LENGTH, n)
            .map_err(|_| ProxyError::Invalid("Content-Length"))?;
    }
    Ok(())
}

/// A request body is framed by `Transfer-Encoding: chunked` alone. Another coding before it
/// (`gzip, chunked`) pingora would read as chunked and send on as `chunked` without the `gzip`,
/// so the backend would get a body it cannot tell is compressed; `chunked` twice, `identity` or
/// a coding without `chunked` leave the framing in doubt. Each is refused with 400 (RFC 9112
/// §6.1 allows a 501 for an unknown coding; a 400 is what nginx answers for these), as is any
/// `Transfer-Encoding` in an HTTP/1.0 request (§6.1: its framing is faulty).
fn transfer_encoding(req: &RequestHeader) -> Result<(), ProxyError> {
    let mut values = req.headers.get_all(TRANSFER_ENCODING).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    let chunked = values.next().is_none()
        && first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
        && req.version != Version::HTTP_10;
    if chunked {
        Ok(())
    } else {
        Err(ProxyError::Invalid(
            "Transfer-Encoding must be chunked alone (and HTTP/1.1)",
        ))
    }
}

/// Normalises the path of the request target and, when that changes it (or the target was in
/// absolute form), sets the origin-form target the backend will be sent.
fn target(
    req: &mut RequestHeader,
    absolute: Option<&[u8]>,
    merge_slashes: bool,
) -> Result<(), ProxyError> {
    // An absolute form without a path (`http://a.example?q`) means the path `/`.
    let rooted: Vec<u8>;
    let target = match absolute {
        Some(rest) if !rest.starts_with(b"/") => {
            rooted = [&b"/"[..], rest].concat();
            &rooted
        }
        Some(rest) => rest,
        None => req.raw_path(),
    };
    if target == b"*" {
        return Ok(());
    }
    let (path, query) = match target.iter().position(|&c| c == b'?') {
        Some(i) => target.split_at(i),
        None => (target, &target[target.len()..]),
    };
    let normal = normalize(path, merge_slashes).map_err(|e| ProxyError::Invalid(e.reason()))?;
    let rebuilt = match normal {
        Some(mut p) => {
            p.extend_from_slice(query);
            p
        }
        None if absolute.is_some() => target.to_vec(),
        None => return Ok(()),
    };
    req.set_raw_path(&rebuilt)
        .map_err(|_| ProxyError::Invalid("unparsable request target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_encoding_must_be_chunked_alone() {
        let te = |version, lines: &[&str]| {
            let mut r = RequestHeader::build("POST", b"/", None).unwrap();
            r.set_version(version);
            for v in lines {
                r.append_header(TRANSFER_ENCODING, *v).unwrap();
            }
            transfer_encoding(&r)
        };
        assert!(te(Version::HTTP_11, &[]).is_ok());
        assert!(te(Version::HTTP_11, &["chunked"]).is_ok());
        assert!(te(Version::HTTP_11, &[" Chunked "]).is_ok());
        for bad in [
            &["gzip, chunked"][..],
            &["chunked, chunked"],
            &["gzip", "chunked"],
            &["identity"],
            &["chunked;x=1"],
        ] {
            assert!(te(Version::HTTP_11, bad).is_err(), "{bad:?}");
        }
        assert!(te(Version::HTTP_10, &["chunked"]).is_err());
    }

    #[test]
    fn hosts() {
        for ok in [
            "a.example",
            "a.example:8080",
            "127.0.0.1",
            "[::1]:80",
            "[2001:db8::1]",
            "",
            "x_y",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a b",
            "user@a.example",
            "a.example:80:80",
            "a.example:99999",
            "a.example:8o",
            "a/b",
            "[::1",
            "[]",
            "[::1]x",
            "a\\b",
            "evil.example%2f",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    fn req(lines: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in lines {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn content_length_merges_equal_values_and_refuses_others() {
        let mut r = req(&[("content-length", "5, 5"), ("content-length", "5")]);
        content_length(&mut r).unwrap();
        let all: Vec<_> = r.headers.get_all(CONTENT_LENGTH).iter().collect();
        assert_eq!(all, [&HeaderValue::from_static("5")]);
        for bad in [
            &["5, 6"][..],
            &["5", "6"],
            &["-1"],
            &["+5"],
            &["5x"],
            &[""],
            &["5,"],
        ] {
            let pairs: Vec<_> = bad.iter().map(|v| ("content-length", *v)).collect();
            assert!(content_length(&mut req(&pairs)).is_err(), "{bad:?}");
        }
        let mut single = req(&[("content-length", "7")]);
        content_length(&mut single).unwrap();
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        let mut r = req(&[]);
        assert!(host(&mut r, None).is_err());
        r.set_version(Version::HTTP_10);
        assert!(host(&mut r, None).is_ok());
        assert!(host(&mut req(&[("host", "a b")]), None).is_err());
        assert!(host(&mut req(&[("host", "a.example")]), None).is_ok());
        assert!(host(&mut req(&[]), Some(b"a.example")).is_ok());
    }

    #[test]
    fn absolute_form_splits_at_the_authority() {
        let split = |t: &'static str| absolute_form(t.as_bytes());
        assert_eq!(
            split("HTTP://a.example/x?y"),
            Some((&b"a.example"[..], &b"/x?y"[..]))
        );
        assert_eq!(
            split("https://a.example"),
            Some((&b"a.example"[..], &b""[..]))
        );
        assert_eq!(
            split("http://a.example?q"),
            Some((&b"a.example"[..], &b"?q"[..]))
        );
        assert_eq!(split("/http://x"), None);
    }

    #[test]
    fn absolute_form_routes_and_forwards_by_its_authority() {
        let mut r = RequestHeader::build("GET", b"http://evil.example/x/../y?q=1", None).unwrap();
        r.append_header("host", "other.example").unwrap();
        check(&mut r, 100, true).unwrap();
        assert_eq!(r.headers.get(HOST).unwrap(), "evil.example");
        assert_eq!(r.uri.path(), "/y");
        assert_eq!(r.raw_path(), b"/y?q=1");
        for (target, forwarded) in [("http://a.example", "/"), ("http://a.example?q", "/?q")] {
            let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
            check(&mut r, 100, true).unwrap();
            assert_eq!(r.raw_path(), forwarded.as_bytes());
        }
    }
}
