//! Short-lived, single-use tickets that open the dashboard's event stream.
//!
//! A browser's `EventSource` cannot send an `Authorization` header, and a bearer token in a
//! URL ends up in logs and history. So the page asks for a ticket with its bearer token
//! (`POST /api/v1/events/ticket`) and opens the stream with `?ticket=…`. A ticket is 256
//! random bits, works once, and expires after [`TICKET_LIFETIME_MS`]; spending it is a
//! constant-time comparison against each live ticket. Pure data; the caller passes the time.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

/// How long a ticket may wait before it is used.
pub const TICKET_LIFETIME_MS: u64 = 30_000;
/// Live tickets kept at most (oldest dropped first) so a client cannot grow the table.
const MAX_LIVE: usize = 1024;

/// Who a ticket was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
}

#[derive(Debug, Default)]
pub struct Tickets {
    /// Issue time → (ticket, holder); ordered so expiry and overflow drop the oldest.
    live: BTreeMap<(u64, u64), (String, Holder)>,
    issued: u64,
}

impl Tickets {
    /// Issues a fresh ticket for `holder` at `now_ms`.
    pub fn issue(&mut self, holder: Holder, now_ms: u64) -> String {
        self.expire(now_ms);
        while self.live.len() >= MAX_LIVE {
            self.live.pop_first();
        }
        let ticket = crate::auth::fresh_token();
        self.issued += 1;
        self.live
            .insert((now_ms, self.issued), (ticket.clone(), holder));
        ticket
    }

    /// Spends a ticket: its holder if it is live, and it never works again.
    pub fn spend(&mut self, presented: &str, now_ms: u64) -> Option<Holder> {
        self.expire(now_ms);
        let key = self
            .live
            .iter()
            .find(|(_, (ticket, _))| bool::from(ticket.as_bytes().ct_eq(presented.as_bytes())))
            .map(|(key, _)| *key)?;
        self.live.remove(&key).map(|(_, holder)| holder)
    }

    fn expire(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(TICKET_LIFETIME_MS);
        while self
            .live
            .first_key_value()
            .is_some_and(|((at, _), _)| *at < oldest)
        {
            self.live.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            name: "viewer".into(),
        }
    }

    #[test]
    fn a_ticket_works_once() {
        let mut tickets = Tickets::default();
        let ticket = tickets.issue(holder(), 1_000);
        assert_eq!(tickets.spend(&ticket, 1_500), Some(holder()));
        assert_eq!(tickets.spend(&ticket, 1_600), None);
    }

    #[test]
    fn a_ticket_expires_and_a_guess_fails() {
        let mut tickets = Tickets::default();
        let ticket = tickets.issue(holder(), 1_000);
        assert_eq!(tickets.spend("not-a-ticket", 1_100), None);
        assert_eq!(tickets.spend("", 1_100), None);
        assert_eq!(tickets.spend(&ticket, 1_000 + TICKET_LIFETIME_MS + 1), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut tickets = Tickets::default();
        let first = tickets.issue(holder(), 0);
        for _ in 0..MAX_LIVE {
            tickets.issue(holder(), 0);
        }
        assert_eq!(tickets.live.len(), MAX_LIVE);
        assert_eq!(tickets.spend(&first, 1), None, "the oldest was dropped");
    }
}
