//! `X-Request-Id`: kept from a trusted proxy, otherwise made here; sent to the backend, back to
//! the client, and logged as the access log's `request_id`.

use http::HeaderValue;
use pingora::http::RequestHeader;

pub const HEADER: &str = "x-request-id";

/// The longest incoming ID kept; a longer one is replaced.
const MAX_LEN: usize = 128;

/// The request's ID: the last `X-Request-Id` when the connection comes from a trusted proxy (the
/// one that proxy set or appended, as with X-Forwarded-For) and the value is 1 to 128 visible
/// ASCII characters, else a new random one.
pub fn pick(req: &RequestHeader, trusted: bool) -> HeaderValue {
    if trusted {
        if let Some(v) = req.headers.get_all(HEADER).iter().next_back() {
            let b = v.as_bytes();
            if !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_graphic()) {
                return v.clone();
            }
        }
    }
    generate()
}

/// 32 lowercase hex digits (128 random bits).
fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut out = [0u8; 32];
    for c in out.iter_mut().rev() {
        *c = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(id) = id {
            r.insert_header(HEADER, id).unwrap();
        }
        r
    }

    #[test]
    fn trusted_ids_are_kept_others_replaced() {
        assert_eq!(pick(&req(Some("abc-1")), true), "abc-1");
        let fresh = pick(&req(Some("abc-1")), false);
        assert_ne!(fresh, "abc-1", "an untrusted client does not choose its ID");
        assert_eq!(fresh.len(), 32);
        assert!(fresh.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(pick(&req(None), true), pick(&req(None), true));
        assert_ne!(pick(&req(Some("a b")), true), "a b", "spaces are not kept");
        let long = "x".repeat(129);
        assert_eq!(pick(&req(Some(&long)), true).len(), 32);
    }

    #[test]
    fn of_several_ids_the_one_the_trusted_proxy_appended_is_kept() {
        let mut r = req(Some("from-the-client"));
        r.append_header(HEADER, "from-the-edge").unwrap();
        assert_eq!(pick(&r, true), "from-the-edge");
    }
}
