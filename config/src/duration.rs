//! Durations as people write them: `500ms`, `10s`, `2m`, `1h`, `1m30s`, `1.5s`.
//!
//! A bare number is refused on purpose: `grace: 60` could mean seconds or milliseconds, and the
//! original mixed both, so the error asks for a unit instead of guessing.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Unit → nanoseconds. Integer arithmetic so that `300ms` is exactly 300 ms (no float rounding).
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

const EXPECTED: &str = "expected a duration such as `500ms`, `10s`, `2m`, `1h` or `1m30s`";

/// The longest duration a declaration may hold. Nothing a pod waits for takes longer, and the
/// cap keeps `Instant::now() + damper` or `grace.mul_f64(1.25)` from overflowing (a panic) in the
/// actors, which can then use durations without checks.
pub const MAX: Duration = Duration::from_secs(86_400);

/// [`parse_duration`] within [`MAX`]: what a declaration's durations go through.
pub fn parse_bounded(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > MAX {
        return Err(format!("expected at most {}, got `{}`", format_duration(MAX), text.trim()));
    }
    Ok(d)
}

/// Parses a duration; the error says what was expected (without the field, which the caller
/// knows).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("{EXPECTED}, got an empty value"));
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bare_number(s));
    }
    let garbage = || format!("{EXPECTED}, got `{s}`");
    let mut nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() || frac.contains('.') || frac.len() > 9 {
            return Err(garbage());
        }
        let unit_len = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("{EXPECTED}, got `{s}` (units are ms, s, m, h, d)"));
        };
        let int: u128 = int.parse().map_err(|_| garbage())?;
        let frac_value: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| garbage())? };
        let part = int
            .checked_mul(*scale)
            .and_then(|n| n.checked_add(frac_value * scale / 10u128.pow(frac.len() as u32)))
            .and_then(|n| nanos.checked_add(n))
            .ok_or_else(|| format!("{EXPECTED}, got `{s}` (too large)"))?;
        nanos = part;
        rest = tail.trim_start();
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("{EXPECTED}, got `{s}` (too large)"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

fn bare_number(n: &str) -> String {
    format!("a duration needs a unit: write `{n}s` (or ms, m, h)")
}

/// The shortest spelling [`parse_duration`] reads back to the same value (`90s` → `1m30s`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    let nanos = d.subsec_nanos();
    let (ms, us, ns) = (nanos / 1_000_000, nanos / 1_000 % 1_000, nanos % 1_000);
    for (n, unit) in [(ms, "ms"), (us, "us"), (ns, "ns")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// A duration field of the raw YAML; parse errors carry the field's position (yaml_serde stamps
/// errors raised here with the node's mark and path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED.trim_start_matches("expected "))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_bounded(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(bare_number(&v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(bare_number(&v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                Err(E::custom(bare_number(&v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_compounds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 2m 3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("0.3s"), Ok(Duration::from_millis(300)));
    }

    #[test]
    fn bare_numbers_ask_for_a_unit() {
        assert_eq!(parse_duration("10"), Err("a duration needs a unit: write `10s` (or ms, m, h)".to_owned()));
        let yaml: Result<Dur, _> = serde_yaml::from_str("60");
        assert!(yaml.unwrap_err().to_string().contains("write `60s`"));
    }

    #[test]
    fn rejects_garbage_with_what_was_expected() {
        for bad in ["", "s", "10x", "ten seconds", "1.2.3s", "-5s", "5s-", "1e3s", ".5s", "99999999999999999999999h"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn declarations_hold_at_most_a_day() {
        assert_eq!(parse_bounded("24h"), Ok(MAX));
        assert_eq!(parse_bounded("1d"), Ok(MAX));
        assert_eq!(parse_bounded("1d1ns"), Err("expected at most 24h, got `1d1ns`".to_owned()));
        let e = serde_yaml::from_str::<Dur>("100000h").unwrap_err();
        assert!(e.to_string().contains("expected at most 24h, got `100000h`"), "{e}");
        // The CLI's own timeouts are not a declaration: no cap there.
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
    }

    #[test]
    fn formats_back_to_what_parses() {
        for (d, s) in [
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
    }
}
