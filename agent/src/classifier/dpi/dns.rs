//! DNS: the name a query asks for, and the addresses an answer gives it.
//!
//! Answers feed [`DnsCache`], a bounded address → name map with TTLs, so that a later flow
//! to one of those addresses is classified on its very first packet — before any SNI or
//! Host header is on the wire (a flow steered late has already started on the wrong line).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag};

/// The parts of a DNS message classification uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsMessage {
    pub is_response: bool,
    /// The first question's name, lower-case, without the trailing dot.
    pub query: Option<String>,
    /// Addresses from A/AAAA answers with their TTLs.
    pub answers: Vec<(IpAddr, u32)>,
}

/// A cheap check of the 12-byte header before a full parse.
pub fn looks_like_dns(payload: &[u8]) -> bool {
    if payload.len() < 12 {
        return false;
    }
    let qdcount = u16::from_be_bytes([payload[4], payload[5]]);
    let ancount = u16::from_be_bytes([payload[6], payload[7]]);
    let opcode = (payload[2] >> 3) & 0x0f;
    (1..=4).contains(&qdcount) && ancount < 256 && matches!(opcode, 0 | 2 | 4 | 5)
}

/// Parses a DNS message (UDP payload, or a TCP payload with its 2-byte length prefix).
pub fn parse(payload: &[u8], over_tcp: bool) -> Option<DnsMessage> {
    let payload = if over_tcp { payload.get(2..)? } else { payload };
    if !looks_like_dns(payload) {
        return None;
    }
    let packet = Packet::parse(payload).ok()?;
    let query = packet
        .questions
        .first()
        .and_then(|q| super::tls::clean_host_name(q.qname.to_string().as_bytes()));
    let answers = packet
        .answers
        .iter()
        .filter_map(|record| match &record.rdata {
            RData::A(a) => Some((IpAddr::V4(Ipv4Addr::from(a.address)), record.ttl)),
            RData::AAAA(a) => Some((IpAddr::V6(Ipv6Addr::from(a.address)), record.ttl)),
            _ => None,
        })
        .collect();
    Some(DnsMessage {
        is_response: packet.has_flags(PacketFlag::RESPONSE),
        query,
        answers,
    })
}

/// Address → the name a client resolved to reach it, until the answer's TTL runs out.
#[derive(Debug, Clone)]
pub struct DnsCache {
    entries: HashMap<IpAddr, CacheEntry>,
    capacity: usize,
    /// Answers dropped because the cache was full of live entries.
    pub refused: u64,
    /// A full cache is swept for expired entries at most this often (capture time).
    next_sweep: Duration,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    name: String,
    expires: Duration,
}

/// TTLs are clamped to this range: zero-TTL answers still name the connection that follows,
/// and week-long TTLs should not pin stale names.
const MIN_TTL: u32 = 30;
const MAX_TTL: u32 = 24 * 3600;

impl DnsCache {
    pub fn new(capacity: usize) -> DnsCache {
        DnsCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            refused: 0,
            next_sweep: Duration::ZERO,
        }
    }

    /// Learns every address of an answer under the question's name.
    pub fn learn(&mut self, now: Duration, message: &DnsMessage) {
        let Some(name) = &message.query else { return };
        if !message.is_response {
            return;
        }
        for (address, ttl) in &message.answers {
            if self.entries.len() >= self.capacity && !self.entries.contains_key(address) {
                if now >= self.next_sweep {
                    self.entries.retain(|_, entry| entry.expires > now);
                    self.next_sweep = now + Duration::from_secs(1);
                }
                if self.entries.len() >= self.capacity {
                    self.refused += 1;
                    continue;
                }
            }
            let ttl = (*ttl).clamp(MIN_TTL, MAX_TTL);
            self.entries.insert(
                *address,
                CacheEntry {
                    name: name.clone(),
                    expires: now + Duration::from_secs(u64::from(ttl)),
                },
            );
        }
    }

    /// The name `address` was resolved from, if that answer is still live.
    pub fn name_of(&self, now: Duration, address: IpAddr) -> Option<&str> {
        self.entries
            .get(&address)
            .filter(|entry| entry.expires > now)
            .map(|entry| entry.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A response for `name` with one A record.
    pub fn a_response(name: &str, address: [u8; 4], ttl: u32) -> Vec<u8> {
        let mut out = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        for label in name.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out.extend_from_slice(&[0, 1, 0, 1]);
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&address);
        out
    }

    #[test]
    fn an_answer_names_its_addresses_until_the_ttl_runs_out() {
        let message = parse(&a_response("zoom.us", [170, 114, 10, 1], 60), false).unwrap();
        assert!(message.is_response);
        assert_eq!(message.query.as_deref(), Some("zoom.us"));
        let mut cache = DnsCache::new(16);
        let t0 = Duration::from_secs(1000);
        cache.learn(t0, &message);
        let address = IpAddr::from([170, 114, 10, 1]);
        assert_eq!(
            cache.name_of(t0 + Duration::from_secs(59), address),
            Some("zoom.us")
        );
        assert_eq!(cache.name_of(t0 + Duration::from_secs(61), address), None);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let mut cache = DnsCache::new(2);
        let now = Duration::from_secs(1);
        for i in 0..5u8 {
            let message = parse(&a_response("a.example", [10, 0, 0, i], 300), false).unwrap();
            cache.learn(now, &message);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.refused, 3);
    }

    #[test]
    fn queries_and_garbage() {
        let mut query = a_response("example.com", [1, 2, 3, 4], 1);
        query[2] = 0x01;
        query[7] = 0;
        let message = parse(&query, false).unwrap();
        assert!(!message.is_response);
        assert!(parse(b"\x00\x01garbage-garbage", false).is_none());
    }
}
