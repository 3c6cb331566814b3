//! A class's SLA as numbers, and how a path's quality measures up against it.

use serde::{Deserialize, Serialize};
use wansteer_policies::model::Sla;

use crate::graph::Quality;

/// SLA bounds in solver units (ms and loss fraction); `None` means unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SlaBounds {
    pub latency_ms: Option<f64>,
    pub loss: Option<f64>,
    pub jitter_ms: Option<f64>,
}

/// One metric of a path against its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Latency,
    Loss,
    Jitter,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Latency => "latency",
            Metric::Loss => "loss",
            Metric::Jitter => "jitter",
        }
    }
}

impl SlaBounds {
    pub fn from_policy(sla: Option<&Sla>) -> SlaBounds {
        let Some(sla) = sla else {
            return SlaBounds::default();
        };
        SlaBounds {
            latency_ms: sla.latency.map(|s| s.0.as_secs_f64() * 1000.0),
            loss: sla.loss.map(|p| p.fraction()),
            jitter_ms: sla.jitter.map(|s| s.0.as_secs_f64() * 1000.0),
        }
    }

    /// Each bounded metric with the path's value and the bound.
    pub fn checks(&self, quality: Quality) -> impl Iterator<Item = (Metric, f64, f64)> {
        [
            (Metric::Latency, quality.latency_ms, self.latency_ms),
            (Metric::Loss, quality.loss, self.loss),
            (Metric::Jitter, quality.jitter_ms, self.jitter_ms),
        ]
        .into_iter()
        .filter_map(|(metric, value, bound)| bound.map(|bound| (metric, value, bound)))
    }

    pub fn met_by(&self, quality: Quality) -> bool {
        self.checks(quality).all(|(_, value, bound)| value <= bound)
    }

    /// The metrics the path breaks, worst (relative to its bound) first.
    pub fn breaches(&self, quality: Quality) -> Vec<(Metric, f64, f64)> {
        let mut broken: Vec<_> = self
            .checks(quality)
            .filter(|(_, value, bound)| value > bound)
            .collect();
        broken.sort_by(|a, b| excess(b).total_cmp(&excess(a)));
        broken
    }

    /// How far outside its SLA a path is (0 when inside): the sum of relative excesses.
    pub fn violation(&self, quality: Quality) -> f64 {
        self.checks(quality).map(|check| excess(&check)).sum()
    }
}

fn excess(&(_, value, bound): &(Metric, f64, f64)) -> f64 {
    if value <= bound {
        0.0
    } else {
        (value - bound) / bound.max(1e-9)
    }
}

/// A one-number quality score in milliseconds (lower is better): latency plus jitter plus
/// 20 ms per per-cent of loss. Used to order paths of equal preference and to judge whether
/// a move improves enough to be worth it.
pub fn score(quality: Quality) -> f64 {
    quality.latency_ms + quality.jitter_ms + quality.loss * 100.0 * 20.0
}

/// `12.0 ms`, `0.10%` — how a metric reads in a reason.
pub fn format_metric(metric: Metric, value: f64) -> String {
    match metric {
        Metric::Latency | Metric::Jitter => format!("{value:.1} ms"),
        Metric::Loss => format!("{:.2}%", value * 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaches_are_listed_worst_first() {
        let bounds = SlaBounds {
            latency_ms: Some(100.0),
            loss: Some(0.01),
            jitter_ms: Some(30.0),
        };
        let quality = Quality {
            latency_ms: 110.0,
            jitter_ms: 5.0,
            loss: 0.031,
        };
        assert!(!bounds.met_by(quality));
        let broken = bounds.breaches(quality);
        assert_eq!(broken[0].0, Metric::Loss);
        assert_eq!(broken[1].0, Metric::Latency);
        assert_eq!(broken.len(), 2);
        assert_eq!(format_metric(Metric::Loss, 0.031), "3.10%");
    }

    #[test]
    fn no_sla_is_always_met() {
        let quality = Quality {
            latency_ms: 1e6,
            jitter_ms: 1e6,
            loss: 1.0,
        };
        assert!(SlaBounds::default().met_by(quality));
        assert_eq!(SlaBounds::default().violation(quality), 0.0);
    }
}
