//! Human units in topology files and on the command line: durations (`10ms`, `1.5s`, `250us`),
//! bit rates (`50mbit`, `512kbit`, `1gbit`) and ratios (`5%`, `0.5%`).
//!
//! Parsing is strict: a bad value is refused with a message naming what was expected, never
//! guessed (a bare `10` could mean seconds or milliseconds, so it is an error).

use std::time::Duration;

/// A value the user wrote that is not a valid quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: expected {expected}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    expected: &'static str,
}

fn split_number(input: &str) -> Option<(f64, &str)> {
    let s = input.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].parse().ok()?;
    number.is_finite().then_some((number, s[end..].trim()))
}

/// Parses `10ms`, `1.5s`, `250us`, `0`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        what: "duration",
        input: input.to_string(),
        expected: "a number with a unit: us, ms, s (e.g. 10ms)",
    };
    let (number, unit) = split_number(input).ok_or_else(err)?;
    let seconds = match unit {
        "us" | "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "" if number == 0.0 => 0.0,
        _ => return Err(err()),
    };
    if seconds > 3600.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `50mbit`, `512kbit`, `1gbit`, `9600bit` into bits per second.
pub fn parse_rate(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        what: "rate",
        input: input.to_string(),
        expected: "a number with a unit: bit, kbit, mbit, gbit (e.g. 50mbit)",
    };
    let (number, unit) = split_number(input).ok_or_else(err)?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "bit" | "bps" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(err()),
    };
    let bits = number * factor;
    if !(1000.0..=100e9).contains(&bits) {
        return Err(UnitError {
            what: "rate",
            input: input.to_string(),
            expected: "between 1kbit and 100gbit",
        });
    }
    Ok(bits.round() as u64)
}

/// Parses `5%` (or a plain fraction `0.05`) into a probability in 0..=1.
pub fn parse_ratio(input: &str) -> Result<f64, UnitError> {
    let err = || UnitError {
        what: "ratio",
        input: input.to_string(),
        expected: "a percentage between 0% and 100% (e.g. 5%)",
    };
    let (number, unit) = split_number(input).ok_or_else(err)?;
    let ratio = match unit {
        "%" => number / 100.0,
        "" => number,
        _ => return Err(err()),
    };
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(err())
    }
}

/// Formats a rate for people: `50mbit`, `512kbit`.
pub fn format_rate(bits_per_second: u64) -> String {
    if bits_per_second.is_multiple_of(1_000_000) {
        format!("{}mbit", bits_per_second / 1_000_000)
    } else if bits_per_second.is_multiple_of(1_000) {
        format!("{}kbit", bits_per_second / 1_000)
    } else {
        format!("{bits_per_second}bit")
    }
}

/// Serde helpers so files say `delay: 10ms` and `rate: 50mbit`.
pub mod serde_units {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }

    pub fn opt_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_rate(&s).map_err(serde::de::Error::custom))
            .transpose()
    }

    pub fn opt_ratio<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_ratio(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-5ms").is_err());
        assert!(parse_duration("10 parsecs").is_err());
    }

    #[test]
    fn rates_in_bits_per_second() {
        assert_eq!(parse_rate("50mbit").unwrap(), 50_000_000);
        assert_eq!(parse_rate("512kbit").unwrap(), 512_000);
        assert_eq!(parse_rate("1.5Gbit").unwrap(), 1_500_000_000);
        assert!(parse_rate("50").is_err());
        assert!(parse_rate("50mb").is_err());
        assert!(parse_rate("10bit").is_err());
        assert_eq!(format_rate(50_000_000), "50mbit");
        assert_eq!(format_rate(512_000), "512kbit");
    }

    #[test]
    fn ratios_as_percent_or_fraction() {
        assert_eq!(parse_ratio("5%").unwrap(), 0.05);
        assert_eq!(parse_ratio("0.5%").unwrap(), 0.005);
        assert_eq!(parse_ratio("0.05").unwrap(), 0.05);
        assert!(parse_ratio("150%").is_err());
        assert!(parse_ratio("5 percent").is_err());
    }
}
