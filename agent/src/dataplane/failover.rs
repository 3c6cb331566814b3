//! Local fast failover: which lines the data plane routes around, decided from line
//! health events alone, without the controller.
//!
//! A line reported down is avoided at once. A line reported up again is *not* used again
//! on its own word: with a controller the next rule set it pushes decides (the
//! controller's word), standalone the line must stay up for the hold-down first, and a
//! new down during the hold-down starts over. Pure: time comes in as an argument.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A line's health changed (from the probes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineEvent {
    pub line: String,
    pub up: bool,
}

/// What the data plane must do after an event or a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverChange {
    /// Route every class off this line now.
    Avoid(String),
    /// The line may carry its classes again.
    Restore(String),
}

/// The lines routed around, and those waiting out their hold-down.
#[derive(Debug, Clone)]
pub struct FailoverState {
    /// `Some` standalone (fail back after this much healthy time), `None` with a controller.
    hold_down: Option<Duration>,
    avoided: BTreeSet<String>,
    /// Avoided lines that are up again, with the time they came up.
    recovering: BTreeMap<String, Instant>,
}

impl FailoverState {
    /// With a controller: fail-back only when the controller pushes a new rule set.
    pub fn with_controller() -> Self {
        FailoverState {
            hold_down: None,
            avoided: BTreeSet::new(),
            recovering: BTreeMap::new(),
        }
    }

    /// Standalone: fail back after the line stayed up for `hold_down`.
    pub fn standalone(hold_down: Duration) -> Self {
        FailoverState {
            hold_down: Some(hold_down),
            ..FailoverState::with_controller()
        }
    }

    /// The lines to route around now.
    pub fn avoided(&self) -> &BTreeSet<String> {
        &self.avoided
    }

    /// Takes one health event.
    pub fn on_event(&mut self, event: &LineEvent, now: Instant) -> Option<FailoverChange> {
        if event.up {
            if self.avoided.contains(&event.line) {
                self.recovering.entry(event.line.clone()).or_insert(now);
            }
            None
        } else {
            self.recovering.remove(&event.line);
            self.avoided
                .insert(event.line.clone())
                .then(|| FailoverChange::Avoid(event.line.clone()))
        }
    }

    /// Lines whose hold-down ran out by `now` (standalone only).
    pub fn on_tick(&mut self, now: Instant) -> Vec<FailoverChange> {
        let Some(hold_down) = self.hold_down else {
            return Vec::new();
        };
        let due: Vec<String> = self
            .recovering
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= hold_down)
            .map(|(line, _)| line.clone())
            .collect();
        due.into_iter()
            .map(|line| {
                self.recovering.remove(&line);
                self.avoided.remove(&line);
                FailoverChange::Restore(line)
            })
            .collect()
    }

    /// When the next hold-down runs out, if any line is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        let hold_down = self.hold_down?;
        self.recovering
            .values()
            .map(|since| *since + hold_down)
            .min()
    }

    /// The outage of `line` was withdrawn before anyone else heard of it (late answers: the
    /// line was slow, not dead, and the controller was never told it was down): use it
    /// again at once, since no rule set from the controller will ever say so.
    pub fn withdraw(&mut self, line: &str) -> Option<FailoverChange> {
        self.recovering.remove(line);
        self.avoided
            .remove(line)
            .then(|| FailoverChange::Restore(line.to_string()))
    }

    /// The controller pushed a new rule set: lines that are up again are used as it says;
    /// lines still down stay avoided.
    pub fn on_controller_rules(&mut self) -> Vec<FailoverChange> {
        let back: Vec<String> = self.recovering.keys().cloned().collect();
        back.into_iter()
            .map(|line| {
                self.recovering.remove(&line);
                self.avoided.remove(&line);
                FailoverChange::Restore(line)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawn_outage_is_used_again_at_once_even_with_a_controller() {
        let mut state = FailoverState::with_controller();
        let now = Instant::now();
        assert_eq!(
            state.on_event(&down("mpls"), now),
            Some(FailoverChange::Avoid("mpls".into()))
        );
        assert_eq!(
            state.withdraw("mpls"),
            Some(FailoverChange::Restore("mpls".into()))
        );
        assert!(state.avoided().is_empty());
        // Nothing to give back for a line that was never avoided.
        assert_eq!(state.withdraw("inet"), None);
    }

    fn down(line: &str) -> LineEvent {
        LineEvent {
            line: line.into(),
            up: false,
        }
    }

    fn up(line: &str) -> LineEvent {
        LineEvent {
            line: line.into(),
            up: true,
        }
    }

    #[test]
    fn a_dead_line_is_avoided_at_once_and_only_once() {
        let mut state = FailoverState::with_controller();
        let now = Instant::now();
        assert_eq!(
            state.on_event(&down("mpls"), now),
            Some(FailoverChange::Avoid("mpls".into()))
        );
        assert_eq!(state.on_event(&down("mpls"), now), None);
        assert!(state.avoided().contains("mpls"));
    }

    #[test]
    fn with_a_controller_recovery_waits_for_its_word() {
        let mut state = FailoverState::with_controller();
        let start = Instant::now();
        state.on_event(&down("mpls"), start);
        state.on_event(&up("mpls"), start);
        assert!(state.on_tick(start + Duration::from_secs(3600)).is_empty());
        assert!(state.avoided().contains("mpls"), "no fail-back on its own");
        assert_eq!(
            state.on_controller_rules(),
            vec![FailoverChange::Restore("mpls".into())]
        );
        assert!(state.avoided().is_empty());
    }

    #[test]
    fn standalone_fails_back_after_the_hold_down_and_a_flap_restarts_it() {
        let mut state = FailoverState::standalone(Duration::from_secs(30));
        let start = Instant::now();
        state.on_event(&down("mpls"), start);
        state.on_event(&up("mpls"), start);
        let flap = start + Duration::from_secs(20);
        assert!(state.on_tick(flap).is_empty());
        state.on_event(&down("mpls"), flap);
        state.on_event(&up("mpls"), flap);
        assert_eq!(state.next_deadline(), Some(flap + Duration::from_secs(30)));
        assert!(
            state.on_tick(flap + Duration::from_secs(29)).is_empty(),
            "flap restarted the hold-down"
        );
        assert_eq!(
            state.on_tick(flap + Duration::from_secs(30)),
            vec![FailoverChange::Restore("mpls".into())]
        );
        assert!(state.avoided().is_empty());
    }

    #[test]
    fn a_line_still_down_stays_avoided_under_new_rules() {
        let mut state = FailoverState::with_controller();
        state.on_event(&down("lte"), Instant::now());
        assert!(state.on_controller_rules().is_empty());
        assert!(state.avoided().contains("lte"));
    }
}
