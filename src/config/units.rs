//! Human-written values in the config file: durations ("250ms", "2s", "1m 30s") and byte sizes
//! ("512KiB", "10MiB", "1GB", or a bare integer of bytes). They are parsed while the file is
//! deserialized, so a bad value is reported with its line and column.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written as a human string: "250ms", "2s", "1m", "1m 30s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration string like "250ms", "2s" or "1m""#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                parse_duration(s).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Longest accepted duration: one year as humantime counts it, 365.25 days (longer values are
/// typos, and overflow clock arithmetic).
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);

/// Parses a human duration; the error says what is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!(r#"invalid duration "{s}" ({e}); expected e.g. "250ms", "2s", "1m" or "1h""#)
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            r#"duration "{s}" is too long; at most a year ("1y")"#
        ));
    }
    Ok(d)
}

/// A size in bytes written as "10MiB", "512KiB", "1GB", "64k" or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a size like "10MiB", "512KiB", "1GB" or an integer of bytes"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                parse_size(s).map(ByteSize).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size must not be negative (got {n})")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
        }
        d.deserialize_any(V)
    }
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1_000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
];

/// Parses a byte size. Units are case-insensitive; `k`/`m`/`g` are binary (as in nginx),
/// `KB`/`MB`/`GB` decimal and `KiB`/`MiB`/`GiB` binary.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let accepted =
        r#"expected an integer with an optional unit: B, KB, KiB, MB, MiB, GB, GiB (e.g. "10MiB")"#;
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let n: u64 = digits
        .parse()
        .map_err(|_| format!(r#"invalid size "{s}"; {accepted}"#))?;
    let factor = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!(r#"invalid size unit in "{s}"; {accepted}"#))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!(r#"size "{s}" is too large"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10 mib"), Ok(10 << 20));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("10 MiBs").unwrap_err().contains("unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("10").unwrap_err().contains("expected e.g."));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("365d").is_ok());
        assert!(parse_duration("1y").is_ok());
        assert!(parse_duration("366d").is_err());
        assert!(parse_duration("500000000000y")
            .unwrap_err()
            .contains("too long"));
    }
}
