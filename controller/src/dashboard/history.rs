//! The last hour of every line's measurements, for the dashboard's charts.
//!
//! The service keeps only the latest measurement per line; a sampler copies each new one
//! (told apart by its arrival time) into a bounded ring per line. Pure data: the sampler
//! task owns the I/O.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::service::LineLive;

/// One measurement of one line, as charted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Wall-clock milliseconds when the controller received it.
    pub at_ms: u64,
    pub rtt_ms: f64,
    pub jitter_ms: f64,
    pub loss_percent: f64,
    pub health: wansteer_wire::session::LineHealth,
}

/// Measurements per (site, line), newest last, no older than `window_ms` and at most
/// `per_line` of them.
#[derive(Debug, Clone)]
pub struct LineHistory {
    window_ms: u64,
    per_line: usize,
    lines: BTreeMap<(String, String), VecDeque<Sample>>,
}

impl LineHistory {
    pub fn new(window_ms: u64, per_line: usize) -> Self {
        LineHistory {
            window_ms,
            per_line,
            lines: BTreeMap::new(),
        }
    }

    /// Takes in the controller's latest measurements; returns true if any was new.
    pub fn record(&mut self, latest: &BTreeMap<(String, String), LineLive>, now_ms: u64) -> bool {
        let mut changed = false;
        for (key, live) in latest {
            let ring = self.lines.entry(key.clone()).or_default();
            if ring.back().is_some_and(|last| last.at_ms >= live.at_ms) {
                continue;
            }
            if ring.len() == self.per_line {
                ring.pop_front();
            }
            let m = &live.measurement;
            ring.push_back(Sample {
                at_ms: live.at_ms,
                rtt_ms: m.rtt_ms,
                jitter_ms: m.jitter_ms,
                loss_percent: m.loss_percent,
                health: m.health,
            });
            changed = true;
        }
        let oldest = now_ms.saturating_sub(self.window_ms);
        for ring in self.lines.values_mut() {
            while ring.front().is_some_and(|s| s.at_ms < oldest) {
                ring.pop_front();
            }
        }
        changed
    }

    /// The samples of one line, oldest first.
    pub fn samples(&self, site: &str, line: &str) -> Vec<Sample> {
        self.lines
            .get(&(site.to_string(), line.to_string()))
            .map(|ring| ring.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wansteer_wire::session::{LineHealth, LineMeasurement};

    fn live(at_ms: u64, rtt_ms: f64) -> LineLive {
        LineLive {
            measurement: LineMeasurement {
                line: "mpls".into(),
                rtt_ms,
                loss_percent: 0.0,
                jitter_ms: 1.0,
                samples: 10,
                health: LineHealth::Up,
            },
            at_ms,
        }
    }

    fn latest(at_ms: u64, rtt_ms: f64) -> BTreeMap<(String, String), LineLive> {
        BTreeMap::from([(("hub".into(), "mpls".into()), live(at_ms, rtt_ms))])
    }

    #[test]
    fn a_measurement_seen_twice_is_kept_once() {
        let mut history = LineHistory::new(3_600_000, 100);
        assert!(history.record(&latest(1_000, 20.0), 1_000));
        assert!(!history.record(&latest(1_000, 20.0), 1_500));
        assert!(history.record(&latest(2_000, 30.0), 2_000));
        let rtts: Vec<f64> = history
            .samples("hub", "mpls")
            .iter()
            .map(|s| s.rtt_ms)
            .collect();
        assert_eq!(rtts, [20.0, 30.0]);
    }

    #[test]
    fn old_samples_and_overflow_are_dropped() {
        let mut history = LineHistory::new(10_000, 3);
        for at in [1_000, 2_000, 3_000, 4_000] {
            history.record(&latest(at, at as f64), at);
        }
        let ats: Vec<u64> = history
            .samples("hub", "mpls")
            .iter()
            .map(|s| s.at_ms)
            .collect();
        assert_eq!(ats, [2_000, 3_000, 4_000], "at most three per line");
        history.record(&latest(4_000, 0.0), 13_500);
        let ats: Vec<u64> = history
            .samples("hub", "mpls")
            .iter()
            .map(|s| s.at_ms)
            .collect();
        assert_eq!(ats, [4_000], "older than the window is gone");
        assert!(history.samples("hub", "lte").is_empty());
    }
}
