//! Units an operator writes in a policy: durations (`50ms`, `2s`, `5m`), percentages
//! (`1%`, `0.5%`), bit rates (`50mbit`, `1gbit`, `512kbit`) and DSCP code points
//! (`EF`, `AF41`, `CS6` or a number 0–63).
//!
//! Each type parses from and prints back to the same text, so a policy written out again
//! reads the way the operator wrote it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a unit value could not be read; the text says what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// A span of time written with a unit: `250us`, `50ms`, `2s`, `1.5s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

/// A percentage written with a `%` sign: `1%`, `0.5%`, `100%`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

/// A bit rate: `800kbit`, `50mbit`, `1gbit`, or plain bits per second (`64000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(pub u64);

/// A DSCP code point (0–63), written by its RFC 4594 name or as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dscp(pub u8);

fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

impl FromStr for Span {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let hint = || {
            UnitError(format!(
                "`{text}` is not a duration; write a number and a unit, e.g. `50ms`, `2s`, `5m`"
            ))
        };
        let (number, unit) = split_number(text.trim());
        let value: f64 = number.parse().map_err(|_| hint())?;
        let seconds_per_unit = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(hint()),
        };
        // try_from: a huge number of hours must be an error, not a panic.
        Duration::try_from_secs_f64(value * seconds_per_unit)
            .map(Span)
            .map_err(|_| UnitError(format!("`{text}` is too long a duration; write e.g. `10m`")))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_micros();
        if micros == 0 {
            write!(f, "0s")
        } else if micros.is_multiple_of(3_600_000_000) {
            write!(f, "{}h", micros / 3_600_000_000)
        } else if micros.is_multiple_of(60_000_000) {
            write!(f, "{}m", micros / 60_000_000)
        } else if micros.is_multiple_of(1_000_000) {
            write!(f, "{}s", micros / 1_000_000)
        } else if micros.is_multiple_of(1_000) {
            write!(f, "{}ms", micros / 1_000)
        } else {
            write!(f, "{micros}us")
        }
    }
}

impl Percent {
    /// The value as a fraction: `1%` is 0.01.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl FromStr for Percent {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let hint = || {
            UnitError(format!(
                "`{text}` is not a percentage; write a number and `%`, e.g. `1%` or `0.5%`"
            ))
        };
        let number = text.trim().strip_suffix('%').ok_or_else(hint)?.trim();
        let value: f64 = number.parse().map_err(|_| hint())?;
        if !(0.0..=100.0).contains(&value) {
            return Err(UnitError(format!(
                "`{text}` is outside 0%..100%; a percentage of a line cannot be more than all of it"
            )));
        }
        Ok(Percent(value))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Rate {
    /// Bits per second.
    pub fn bps(self) -> u64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let hint = || {
            UnitError(format!(
                "`{text}` is not a bit rate; write e.g. `800kbit`, `50mbit`, `1gbit` (bits per second)"
            ))
        };
        let (number, unit) = split_number(text.trim());
        let value: f64 = number.parse().map_err(|_| hint())?;
        let multiplier = match unit.to_ascii_lowercase().as_str() {
            "" | "bit" | "bps" => 1e0,
            "kbit" | "kbps" => 1e3,
            "mbit" | "mbps" => 1e6,
            "gbit" | "gbps" => 1e9,
            _ => return Err(hint()),
        };
        Ok(Rate((value * multiplier).round() as u64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bps = self.0;
        for (unit, size) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if bps >= size && bps.is_multiple_of(size) {
                return write!(f, "{}{unit}", bps / size);
            }
        }
        if bps >= 1_000_000 {
            write!(f, "{}mbit", bps as f64 / 1e6)
        } else {
            write!(f, "{bps}bit")
        }
    }
}

/// RFC 4594 / RFC 2474 names of DSCP code points.
const DSCP_NAMES: &[(&str, u8)] = &[
    ("CS0", 0),
    ("DF", 0),
    ("BE", 0),
    ("CS1", 8),
    ("LE", 1),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("CS2", 16),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("CS3", 24),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("CS4", 32),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("CS5", 40),
    ("VOICE-ADMIT", 44),
    ("EF", 46),
    ("CS6", 48),
    ("CS7", 56),
];

impl FromStr for Dscp {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let trimmed = text.trim();
        if let Ok(value) = trimmed.parse::<u8>() {
            return if value < 64 {
                Ok(Dscp(value))
            } else {
                Err(UnitError(format!(
                    "DSCP {value} is out of range; it is 6 bits (0–63)"
                )))
            };
        }
        DSCP_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
            .map(|&(_, value)| Dscp(value))
            .ok_or_else(|| {
                UnitError(format!(
                    "`{text}` is not a DSCP; write a name such as EF, AF41, CS6, DF or a number 0–63"
                ))
            })
    }
}

impl fmt::Display for Dscp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DSCP_NAMES
            .iter()
            .find(|&&(name, value)| value == self.0 && name != "CS0" && name != "BE")
        {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Implements serde for a unit type through its text form. Numbers are accepted where the
/// unit allows a bare number (rates in bit/s, DSCP values).
macro_rules! serde_via_text {
    ($type:ty, $expecting:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$type, E> {
                        text.parse().map_err(|e: UnitError| E::custom(e))
                    }
                    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<$type, E> {
                        self.visit_str(&value.to_string())
                    }
                    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<$type, E> {
                        self.visit_str(&value.to_string())
                    }
                    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<$type, E> {
                        self.visit_str(&value.to_string())
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }
    };
}

/// Where a line's probes go: `address` or `address:port` (`[v6]:port` for IPv6); the port
/// defaults to STAMP's 862.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reflector {
    pub address: std::net::IpAddr,
    pub port: u16,
}

impl Reflector {
    /// STAMP's well-known port (RFC 8762).
    pub const STAMP_PORT: u16 = 862;

    /// As a socket address.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.address, self.port)
    }
}

impl FromStr for Reflector {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        if let Ok(address) = text.parse::<std::net::IpAddr>() {
            return Ok(Reflector {
                address,
                port: Self::STAMP_PORT,
            });
        }
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.port() != 0 => Ok(Reflector {
                address: addr.ip(),
                port: addr.port(),
            }),
            Ok(_) => Err(UnitError(format!(
                "`{text}` has port 0; write a real port or leave it out for 862"
            ))),
            Err(_) => Err(UnitError(format!(
                "`{text}` is not a reflector address; write e.g. `192.0.2.1`, `192.0.2.1:862` or `[2001:db8::1]:862`"
            ))),
        }
    }
}

impl fmt::Display for Reflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.socket_addr())
    }
}

serde_via_text!(Span, "a duration such as `50ms` or `2s`");
serde_via_text!(
    Reflector,
    "an address or address:port such as `192.0.2.1:862`"
);
serde_via_text!(Percent, "a percentage such as `1%`");
serde_via_text!(Rate, "a bit rate such as `50mbit`");
serde_via_text!(Dscp, "a DSCP name such as `EF` or a number 0-63");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflectors_default_to_the_stamp_port() {
        let r: Reflector = "192.0.2.7".parse().unwrap();
        assert_eq!(r.socket_addr().to_string(), "192.0.2.7:862");
        let r: Reflector = "192.0.2.7:4862".parse().unwrap();
        assert_eq!(r.port, 4862);
        let r: Reflector = "[2001:db8::1]:900".parse().unwrap();
        assert_eq!(r.to_string(), "[2001:db8::1]:900");
        let r: Reflector = "2001:db8::1".parse().unwrap();
        assert_eq!(r.port, 862);
        assert!("192.0.2.7:0".parse::<Reflector>().is_err());
        assert!("gw.example:862".parse::<Reflector>().is_err());
        assert!("192.0.2.7:99999".parse::<Reflector>().is_err());
    }

    #[test]
    fn durations_read_and_print_back() {
        assert_eq!("50ms".parse::<Span>().unwrap().0, Duration::from_millis(50));
        assert_eq!(
            "1.5s".parse::<Span>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!("5m".parse::<Span>().unwrap().to_string(), "5m");
        assert_eq!("250us".parse::<Span>().unwrap().to_string(), "250us");
        let error = "50 parsecs".parse::<Span>().unwrap_err().to_string();
        assert!(error.contains("e.g. `50ms`"), "{error}");
        assert!("ms".parse::<Span>().is_err());
        let error = "99999999999999999999999h".parse::<Span>().unwrap_err();
        assert!(error.0.contains("too long"), "{error}");
    }

    #[test]
    fn percentages_need_the_sign_and_stay_in_range() {
        assert_eq!("0.5%".parse::<Percent>().unwrap().fraction(), 0.005);
        assert!("1".parse::<Percent>().is_err());
        assert!("120%".parse::<Percent>().is_err());
    }

    #[test]
    fn rates_use_decimal_prefixes_like_tc() {
        assert_eq!("50mbit".parse::<Rate>().unwrap().bps(), 50_000_000);
        assert_eq!("1.5Mbit".parse::<Rate>().unwrap().bps(), 1_500_000);
        assert_eq!("64000".parse::<Rate>().unwrap().bps(), 64_000);
        assert_eq!(Rate(20_000_000).to_string(), "20mbit");
        assert!("50mb/s".parse::<Rate>().is_err());
    }

    #[test]
    fn dscp_names_follow_rfc_4594() {
        assert_eq!("EF".parse::<Dscp>().unwrap(), Dscp(46));
        assert_eq!("af41".parse::<Dscp>().unwrap(), Dscp(34));
        assert_eq!("63".parse::<Dscp>().unwrap(), Dscp(63));
        assert!("64".parse::<Dscp>().is_err());
        assert!("AF44".parse::<Dscp>().is_err());
        assert_eq!(Dscp(46).to_string(), "EF");
        assert_eq!(Dscp(0).to_string(), "DF");
    }

    #[test]
    fn units_deserialize_from_yaml_text_and_numbers() {
        #[derive(Deserialize)]
        struct Sample {
            rate: Rate,
            dscp: Dscp,
            latency: Span,
        }
        let sample: Sample =
            yaml_serde::from_str("rate: 1000000\ndscp: 46\nlatency: 150ms\n").unwrap();
        assert_eq!(sample.rate, Rate(1_000_000));
        assert_eq!(sample.dscp, Dscp(46));
        assert_eq!(sample.latency.0, Duration::from_millis(150));
    }
}
