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
    /// Throughput per class on the line, bits per second (see [`LineLive::class_bps`]).
    pub class_bps: BTreeMap<String, u64>,
}

/// Measurements per (site, line), newest last, no older than `window_ms`.
///
/// Memory is bounded by a total `budget` of samples shared by all lines: a small network
/// keeps up to `per_line_max` samples per line (every report), a large one fewer per line,
/// spaced evenly over the window (a sample that changes the line's health is always kept).
#[derive(Debug, Clone)]
pub struct LineHistory {
    window_ms: u64,
    per_line_max: usize,
    budget: usize,
    lines: BTreeMap<(String, String), VecDeque<Sample>>,
}

/// Fewest samples per line however large the network (a chart needs some points).
const PER_LINE_MIN: usize = 60;

impl LineHistory {
    pub fn new(window_ms: u64, per_line_max: usize, budget: usize) -> Self {
        LineHistory {
            window_ms,
            per_line_max,
            budget,
            lines: BTreeMap::new(),
        }
    }

    /// Samples one line may keep, and the least spacing between them, for `lines` lines.
    fn allowance(&self, lines: usize) -> (usize, u64) {
        let per_line = (self.budget / lines.max(1))
            .clamp(PER_LINE_MIN.min(self.per_line_max), self.per_line_max);
        let spacing_ms = if per_line >= self.per_line_max {
            0
        } else {
            self.window_ms / per_line as u64
        };
        (per_line, spacing_ms)
    }

    /// Takes in the controller's latest measurements (the whole map, or the updates since
    /// the last call, oldest first); returns true if any was new.
    pub fn record<'a>(
        &mut self,
        latest: impl IntoIterator<Item = (&'a (String, String), &'a LineLive)>,
        now_ms: u64,
    ) -> bool {
        let latest: Vec<_> = latest.into_iter().collect();
        let unseen = latest
            .iter()
            .filter(|(key, _)| !self.lines.contains_key(*key))
            .count();
        let (per_line, spacing_ms) = self.allowance(self.lines.len() + unseen);
        let mut changed = false;
        for (key, live) in latest {
            let ring = match self.lines.get_mut(key) {
                Some(ring) => ring,
                None => self.lines.entry(key.clone()).or_default(),
            };
            let m = &live.measurement;
            let keep = match ring.back() {
                None => true,
                Some(last) => {
                    live.at_ms > last.at_ms
                        && (live.at_ms - last.at_ms >= spacing_ms || m.health != last.health)
                }
            };
            if !keep {
                continue;
            }
            while ring.len() >= per_line {
                ring.pop_front();
            }
            ring.push_back(Sample {
                at_ms: live.at_ms,
                rtt_ms: m.rtt_ms,
                jitter_ms: m.jitter_ms,
                loss_percent: m.loss_percent,
                health: m.health,
                class_bps: live.class_bps.clone(),
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
                loss_bounds_percent: None,
                jitter_ms: 1.0,
                samples: 10,
                health: LineHealth::Up,
            },
            at_ms,
            class_bps: BTreeMap::from([("voice".into(), 64_000)]),
        }
    }

    fn latest(at_ms: u64, rtt_ms: f64) -> BTreeMap<(String, String), LineLive> {
        BTreeMap::from([(("hub".into(), "mpls".into()), live(at_ms, rtt_ms))])
    }

    #[test]
    fn a_measurement_seen_twice_is_kept_once() {
        let mut history = LineHistory::new(3_600_000, 100, 10_000);
        assert!(history.record(&latest(1_000, 20.0), 1_000));
        assert!(!history.record(&latest(1_000, 20.0), 1_500));
        assert!(history.record(&latest(2_000, 30.0), 2_000));
        let rtts: Vec<f64> = history
            .samples("hub", "mpls")
            .iter()
            .map(|s| s.rtt_ms)
            .collect();
        assert_eq!(rtts, [20.0, 30.0]);
        assert_eq!(
            history.samples("hub", "mpls")[1].class_bps,
            BTreeMap::from([("voice".to_string(), 64_000)])
        );
    }

    #[test]
    fn a_large_network_keeps_fewer_samples_per_line_spaced_over_the_window() {
        // A 6-minute window, 100 lines and room for 10,000 samples: 100 per line, one per
        // 3.6 s, though reports come every second.
        let mut history = LineHistory::new(360_000, 360, 10_000);
        let mut at_ms = 0;
        for second in 0..720u64 {
            at_ms = second * 1_000;
            let mut lines = BTreeMap::new();
            for n in 0..100 {
                let mut one = live(at_ms, 20.0);
                if n == 0 && second == 701 {
                    one.measurement.health = LineHealth::Down;
                }
                lines.insert(("site".to_string(), format!("line-{n}")), one);
            }
            history.record(&lines, at_ms);
        }
        let total: usize = history.lines.values().map(VecDeque::len).sum();
        assert!(total <= 10_000 + 100, "within budget: {total}");
        let line1 = history.samples("site", "line-1");
        // One every 4 s of reports (the first report at least 3.6 s after the last kept).
        assert!((89..=91).contains(&line1.len()), "{}", line1.len());
        assert!(line1.windows(2).all(|w| w[1].at_ms - w[0].at_ms >= 3_600));
        assert!(line1[0].at_ms >= at_ms - 360_000, "only the window");
        let line0 = history.samples("site", "line-0");
        assert!(
            line0
                .iter()
                .any(|s| s.at_ms == 701_000 && s.health == LineHealth::Down),
            "a health change is kept even between spaced samples"
        );
    }

    #[test]
    fn old_samples_and_overflow_are_dropped() {
        let mut history = LineHistory::new(10_000, 3, 10_000);
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
