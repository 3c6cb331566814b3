//! The push stream: one long-lived SSE response per connected agent.
//!
//! The first event says where the agent stands: `in-sync` when the hash it reports running
//! is the one published (a reconnect after a blip pushes nothing), otherwise the full
//! `rule-set`. After that every newly published version follows as a `rule-set` event.
//! Keep-alive comments hold idle connections open through proxies.
//!
//! At a graceful shutdown every stream ends with a `restarting` event carrying a window
//! sized to the number of connected agents ([`reconnect_window`]): agents retry within it
//! instead of backing off as after an outage, so they are back soon after the controller
//! is, spread at a rate it can take.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::watch;
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{EVENT_RULE_SET, InSync, Push, Restarting};

use crate::service::{Controller, Pushed, StreamGuard};

/// Reconnections (register + push stream + `in-sync`) the window is sized for. With
/// `examples/loadgen.rs --restart --ignore-restart-hint` on this shared 2-core machine,
/// 10,000 agents backing off exponentially came back with their 50th and 99th percentiles
/// 0.6–2.8 s apart, i.e. the restarted controller took 3,500–8,000 a second with the
/// generator on the same cores (docs/benchmarks/controller.md). A fleet arriving faster
/// queues in the accept backlog and the agents' retries stay within the window.
pub const RECONNECTS_PER_SECOND: u64 = 5_000;

/// The window agents are asked to reconnect within after a restart: long enough that
/// `connected` agents arrive at [`RECONNECTS_PER_SECOND`] at most, never under 1 s, never
/// over 30 s.
pub fn reconnect_window(connected: u64) -> Duration {
    let ms = connected.saturating_mul(1000) / RECONNECTS_PER_SECOND;
    Duration::from_millis(ms.clamp(1_000, 30_000))
}

struct StreamState {
    rx: watch::Receiver<Option<Pushed>>,
    closing: watch::Receiver<bool>,
    /// Hash the agent runs; only the first event compares against it.
    have_hash: Option<String>,
    first: bool,
    /// The `restarting` event went out; the stream ends next.
    said_restarting: bool,
    controller: Controller,
    _guard: StreamGuard,
}

/// The first push for an agent that runs `have_hash`, given what is published.
pub fn first_push(published: &RuleSet, have_hash: Option<&str>) -> Push {
    if have_hash == Some(published.hash.as_str()) {
        Push::InSync(InSync {
            version: published.version,
            hash: published.hash.clone(),
        })
    } else {
        Push::RuleSet(Box::new(published.clone()))
    }
}

fn event(push: &Push) -> Event {
    let (name, data) = push.encode();
    Event::default().event(name).data(data)
}

/// The SSE response for `site`'s agent, which runs `have_hash` (if anything).
pub fn stream(
    controller: &Controller,
    site: &str,
    have_hash: Option<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let state = StreamState {
        rx: controller.subscribe(site),
        closing: controller.closing(),
        have_hash,
        first: true,
        said_restarting: false,
        controller: controller.clone(),
        _guard: controller.stream_opened(site),
    };
    let events = futures::stream::unfold(state, |mut state| async move {
        loop {
            if *state.closing.borrow() {
                if std::mem::replace(&mut state.said_restarting, true) {
                    return None;
                }
                let window = reconnect_window(state.controller.connected_agents());
                let restarting = Push::Restarting(Restarting {
                    reconnect_within_ms: window.as_millis() as u64,
                });
                return Some((Ok(event(&restarting)), state));
            }
            if !state.first {
                tokio::select! {
                    changed = state.rx.changed() => changed.ok()?,
                    _ = state.closing.wait_for(|closing| *closing) => continue,
                }
            }
            let current = state.rx.borrow_and_update().clone();
            let Some(pushed) = current else {
                state.first = false;
                continue;
            };
            let rule_set = &pushed.rule_set;
            let in_sync = state.first && state.have_hash.as_deref() == Some(rule_set.hash.as_str());
            let event = if in_sync {
                event(&first_push(rule_set, state.have_hash.as_deref()))
            } else {
                // The JSON was serialised once when the version was published.
                Event::default()
                    .event(EVENT_RULE_SET)
                    .data(pushed.json.as_ref())
            };
            state.first = false;
            state.have_hash = Some(rule_set.hash.clone());
            return Some((Ok(event), state));
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reconnect_window_grows_with_the_fleet() {
        assert_eq!(reconnect_window(0), Duration::from_secs(1));
        assert_eq!(reconnect_window(1_000), Duration::from_secs(1));
        assert_eq!(reconnect_window(10_000), Duration::from_secs(2));
        assert_eq!(reconnect_window(50_000), Duration::from_secs(10));
        assert_eq!(reconnect_window(u64::MAX), Duration::from_secs(30));
    }

    #[test]
    fn reconnect_with_current_hash_gets_in_sync_not_the_rule_set() {
        let published = RuleSet {
            site: "b1".into(),
            version: 3,
            hash: String::new(),
            classes: vec![],
            default_class: "default".into(),
            lines: vec![],
            routes: vec![],
        }
        .seal();
        assert!(matches!(
            first_push(&published, Some(&published.hash)),
            Push::InSync(InSync { version: 3, .. })
        ));
        assert!(matches!(
            first_push(&published, Some("0000")),
            Push::RuleSet(_)
        ));
        assert!(matches!(first_push(&published, None), Push::RuleSet(_)));
    }
}
