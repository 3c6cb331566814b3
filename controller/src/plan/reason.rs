//! Why a class is where it is, as data: the kind of reason, the names and the measurements
//! and thresholds behind it. Words for people ([`Reason::text`], [`RouteReason::text`]) and
//! the evidence list ([`Reason::evidence`]) are rendered from that data only when someone
//! reads them (API, audit log, rule sets, golden files) — a plan of 300,000 placements
//! builds no text.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use wansteer_policies::units::{Percent, Span};

use crate::graph::Quality;
use crate::solver::sla::{Metric, SlaBounds};

/// What kind of reason moved (or placed) a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// First placement of this class towards this destination.
    Initial,
    /// A line of the old path went down.
    LineDown,
    /// The old path broke the class's SLA.
    SlaBreach,
    /// The policy forbids the old path now (`never`).
    Forbidden,
    /// The old path lacks room for the class's demand.
    Capacity,
    /// A better path cleared `min_improvement` after the hold-down.
    Improvement,
    /// A more preferred line is usable again and has stayed up for the hold-down.
    PreferenceRestored,
    /// The old path is no longer among the candidates (e.g. a line was removed).
    PathGone,
    /// Nothing the class may use is up: no route.
    NoPath,
}

/// One number behind a reason: `site/line` (or a path), the metric, its value and limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub subject: String,
    pub metric: String,
    pub value: f64,
    pub limit: Option<f64>,
    pub unit: String,
}

/// A site, class or line name shared between the planner and its decisions (a plan of
/// 300,000 placements copies no strings). Reads like a `&str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name(Arc::from(name))
    }
}

impl From<Arc<str>> for Name {
    fn from(name: Arc<str>) -> Name {
        Name(name)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// One metric of a path against its bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breach {
    pub metric: Metric,
    pub value: f64,
    pub bound: f64,
}

/// Why a route reads from the path it does: the path, its quality against the class's SLA,
/// and whether it is the least bad or short of capacity. Names are shared, not copied.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteReason {
    /// The line the class leaves on (its name at the source site).
    pub line: Arc<str>,
    /// The hub or DC the path goes through.
    pub via: Option<Arc<str>>,
    pub quality: Quality,
    pub sla: SlaBounds,
    /// Lines of the path nobody has measured yet (`site/line`); empty when all are.
    pub unmeasured: Vec<Arc<str>>,
    /// No candidate meets the SLA: this is the least bad.
    pub degraded: bool,
    /// `(carried, demand)` in bit/s when the path carries less than the demand.
    pub short: Option<(f64, f64)>,
}

/// Why a class moved, was placed, or lost its route; each variant holds what the words and
/// the evidence are made of.
#[derive(Debug, Clone, PartialEq)]
pub enum ReasonDetail {
    /// Nothing the class may use is up.
    NoPath { class: Arc<str> },
    /// First placement, on `line` (`site/line`).
    Initial {
        class: Arc<str>,
        line: Arc<str>,
        route: RouteReason,
    },
    /// `down`, a line of the old path, is down.
    LineDown {
        class: Arc<str>,
        from: Arc<str>,
        to: Arc<str>,
        down: Arc<str>,
    },
    /// The policy says never on `never`, a line of the old path.
    Forbidden {
        class: Arc<str>,
        from: Arc<str>,
        never: Arc<str>,
    },
    /// The old path breaks the SLA (`breaches`, worst first); `now` is the new path's value
    /// of the worst metric.
    SlaBreach {
        class: Arc<str>,
        from: Arc<str>,
        to: Arc<str>,
        breaches: Vec<Breach>,
        now: f64,
    },
    /// The old path is no longer a candidate.
    PathGone {
        class: Arc<str>,
        from: Arc<str>,
        to: Arc<str>,
    },
    /// The old path lacks room for `demand_bps`.
    Capacity {
        class: Arc<str>,
        from: Arc<str>,
        to: Arc<str>,
        demand_bps: f64,
    },
    /// The old path had a line nobody measured; the new one is measured.
    LeftUnmeasured {
        class: Arc<str>,
        from: Arc<str>,
        to: Arc<str>,
        route: RouteReason,
    },
    /// Back on a more preferred line (`rank` in the class's `prefer` list, the old path's
    /// `old_rank`) after the hold-down.
    PreferenceRestored {
        class: Arc<str>,
        from: Arc<str>,
        to: Arc<str>,
        hold_down: Span,
        rank: u32,
        old_rank: u32,
    },
    /// The new path's score beats the old one's by at least `min_improvement`.
    Improvement {
        class: Arc<str>,
        from: Arc<str>,
        to: Arc<str>,
        score_ms: f64,
        old_score_ms: f64,
        min_improvement: Percent,
    },
}

/// Why a class is where it is: its kind and the data behind it. Serialises as
/// `{kind, text, evidence}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub kind: ReasonKind,
    pub detail: ReasonDetail,
}

impl Reason {
    pub fn new(detail: ReasonDetail) -> Reason {
        let kind = match &detail {
            ReasonDetail::NoPath { .. } => ReasonKind::NoPath,
            ReasonDetail::Initial { .. } => ReasonKind::Initial,
            ReasonDetail::LineDown { .. } => ReasonKind::LineDown,
            ReasonDetail::Forbidden { .. } => ReasonKind::Forbidden,
            ReasonDetail::SlaBreach { .. } => ReasonKind::SlaBreach,
            ReasonDetail::PathGone { .. } => ReasonKind::PathGone,
            ReasonDetail::Capacity { .. } => ReasonKind::Capacity,
            ReasonDetail::LeftUnmeasured { .. } | ReasonDetail::PreferenceRestored { .. } => {
                ReasonKind::PreferenceRestored
            }
            ReasonDetail::Improvement { .. } => ReasonKind::Improvement,
        };
        Reason { kind, detail }
    }

    /// The reason in words, e.g. `voice off b1/mpls: loss 3.10% > 1.00%; now on b1/inet (0.00%)`.
    pub fn text(&self) -> String {
        self.to_string()
    }

    /// The measurements and limits the reason rests on.
    pub fn evidence(&self) -> Vec<Evidence> {
        match &self.detail {
            ReasonDetail::Initial { line, route, .. } => {
                if route.unmeasured.is_empty() {
                    quality_evidence(&route.sla, line, route.quality)
                } else {
                    Vec::new()
                }
            }
            ReasonDetail::LineDown { down, .. } => vec![Evidence {
                subject: down.to_string(),
                metric: "health".into(),
                value: 0.0,
                limit: None,
                unit: "up".into(),
            }],
            ReasonDetail::SlaBreach { from, breaches, .. } => breaches
                .iter()
                .map(|b| Evidence {
                    subject: from.to_string(),
                    metric: b.metric.as_str().into(),
                    value: b.value,
                    limit: Some(b.bound),
                    unit: unit(b.metric).into(),
                })
                .collect(),
            ReasonDetail::Capacity {
                from, demand_bps, ..
            } => vec![Evidence {
                subject: from.to_string(),
                metric: "demand".into(),
                value: *demand_bps,
                limit: None,
                unit: "bit/s".into(),
            }],
            ReasonDetail::LeftUnmeasured { to, route, .. } => {
                quality_evidence(&route.sla, to, route.quality)
            }
            ReasonDetail::PreferenceRestored {
                to, rank, old_rank, ..
            } => vec![Evidence {
                subject: to.to_string(),
                metric: "preference_rank".into(),
                value: f64::from(*rank),
                limit: Some(f64::from(*old_rank)),
                unit: "rank".into(),
            }],
            ReasonDetail::Improvement {
                from,
                to,
                score_ms,
                old_score_ms,
                ..
            } => vec![
                Evidence {
                    subject: to.to_string(),
                    metric: "score".into(),
                    value: *score_ms,
                    limit: None,
                    unit: "ms".into(),
                },
                Evidence {
                    subject: from.to_string(),
                    metric: "score".into(),
                    value: *old_score_ms,
                    limit: None,
                    unit: "ms".into(),
                },
            ],
            ReasonDetail::NoPath { .. }
            | ReasonDetail::Forbidden { .. }
            | ReasonDetail::PathGone { .. } => Vec::new(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            ReasonDetail::NoPath { class } => {
                write!(f, "{class}: no line the class may use is up")
            }
            ReasonDetail::Initial { class, line, route } => {
                write!(f, "{class} placed on {line}: {route}")
            }
            ReasonDetail::LineDown {
                class,
                from,
                to,
                down,
            } => write!(f, "{class} off {from}: {down} is down; now on {to}"),
            ReasonDetail::Forbidden { class, from, never } => {
                write!(f, "{class} off {from}: policy says never on {never}")
            }
            ReasonDetail::SlaBreach {
                class,
                from,
                to,
                breaches,
                now,
            } => {
                let worst = breaches.first().copied().unwrap_or(Breach {
                    metric: Metric::Latency,
                    value: 0.0,
                    bound: 0.0,
                });
                write!(
                    f,
                    "{class} off {from}: {} {} > {}; now on {to} ({})",
                    worst.metric.as_str(),
                    MetricValue(worst.metric, worst.value),
                    MetricValue(worst.metric, worst.bound),
                    MetricValue(worst.metric, *now)
                )
            }
            ReasonDetail::PathGone { class, from, to } => write!(
                f,
                "{class} off {from}: the path is no longer a candidate; now on {to}"
            ),
            ReasonDetail::Capacity {
                class,
                from,
                to,
                demand_bps,
            } => write!(
                f,
                "{class} off {from}: no room for {:.1} Mbit/s; now on {to}",
                demand_bps / 1e6
            ),
            ReasonDetail::LeftUnmeasured {
                class,
                from,
                to,
                route,
            } => write!(
                f,
                "{class} to {to} from {from}: {from} is not measured yet, {route}"
            ),
            ReasonDetail::PreferenceRestored {
                class,
                from,
                to,
                hold_down,
                ..
            } => write!(
                f,
                "{class} back on preferred {to} from {from}: its lines and the class have been settled for the {hold_down} hold-down"
            ),
            ReasonDetail::Improvement {
                class,
                from,
                to,
                score_ms,
                old_score_ms,
                min_improvement,
            } => write!(
                f,
                "{class} to {to} from {from}: score {score_ms:.1} ms vs {old_score_ms:.1} ms clears the {min_improvement} threshold"
            ),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Reason", 3)?;
        s.serialize_field("kind", &self.kind)?;
        s.serialize_field("text", &self.text())?;
        s.serialize_field("evidence", &self.evidence())?;
        s.end()
    }
}

impl RouteReason {
    /// The route's reason in words, e.g. `mpls via hub: latency 34.0 ms ≤ 100.0 ms, …`.
    pub fn text(&self) -> String {
        self.to_string()
    }

    /// True when both read the same in words (values at the precision they are shown), so
    /// a route whose figures moved by less than that is not rewritten (nor re-pushed).
    pub fn reads_as(&self, other: &RouteReason) -> bool {
        let shown = |r: &RouteReason| {
            let q = r.quality;
            let relations = if r.unmeasured.is_empty() {
                r.sla.checks(q).fold(0u8, |bits, (_, value, bound)| {
                    bits << 1 | u8::from(value <= bound)
                })
            } else {
                0
            };
            (
                [
                    (q.latency_ms * 10.0).round() as i64,
                    (q.jitter_ms * 10.0).round() as i64,
                    (q.loss * 1e4).round() as i64,
                ],
                relations,
                r.degraded,
                r.short
                    .map(|(carried, demand)| ((carried / 1e5).round(), (demand / 1e5).round())),
            )
        };
        self.line == other.line
            && self.via == other.via
            && self.unmeasured == other.unmeasured
            && self.sla == other.sla
            && shown(self) == shown(other)
    }
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)?;
        if let Some(hub) = &self.via {
            write!(f, " via {hub}")?;
        }
        f.write_str(": ")?;
        if !self.unmeasured.is_empty() {
            for (i, line) in self.unmeasured.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(line)?;
            }
            f.write_str(" not measured yet (used until a measured line meets the SLA)")?;
        } else {
            let mut any = false;
            for (metric, value, bound) in self.sla.checks(self.quality) {
                if any {
                    f.write_str(", ")?;
                }
                any = true;
                let relation = if value <= bound { "≤" } else { ">" };
                write!(
                    f,
                    "{} {} {relation} {}",
                    metric.as_str(),
                    MetricValue(metric, value),
                    MetricValue(metric, bound)
                )?;
            }
            if !any {
                write!(
                    f,
                    "no SLA; latency {}",
                    MetricValue(Metric::Latency, self.quality.latency_ms)
                )?;
            }
            if self.degraded {
                f.write_str(" (no path meets the SLA; least bad)")?;
            }
        }
        if let Some((carried, demand)) = self.short {
            write!(
                f,
                "; capacity short: {:.1} of {:.1} Mbit/s carried",
                carried / 1e6,
                demand / 1e6
            )?;
        }
        Ok(())
    }
}

/// A metric's value as it reads in a reason (`12.0 ms`, `0.10%`), written without a
/// temporary string.
struct MetricValue(Metric, f64);

impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Metric::Latency | Metric::Jitter => write!(f, "{:.1} ms", self.1),
            Metric::Loss => write!(f, "{:.2}%", self.1 * 100.0),
        }
    }
}

/// Renders a route reason into `out` (reusing its buffer).
pub fn render_route(out: &mut String, route: Option<&RouteReason>) {
    out.clear();
    match route {
        Some(route) => {
            let _ = write!(out, "{route}");
        }
        None => out.push_str("no usable path"),
    }
}

fn unit(metric: Metric) -> &'static str {
    match metric {
        Metric::Latency | Metric::Jitter => "ms",
        Metric::Loss => "fraction",
    }
}

fn quality_evidence(sla: &SlaBounds, subject: &str, quality: Quality) -> Vec<Evidence> {
    [
        (Metric::Latency, quality.latency_ms, sla.latency_ms),
        (Metric::Loss, quality.loss, sla.loss),
        (Metric::Jitter, quality.jitter_ms, sla.jitter_ms),
    ]
    .into_iter()
    .map(|(metric, value, limit)| Evidence {
        subject: subject.to_string(),
        metric: metric.as_str().into(),
        value,
        limit,
        unit: unit(metric).into(),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> RouteReason {
        RouteReason {
            line: "mpls".into(),
            via: Some("hub".into()),
            quality: Quality {
                latency_ms: 34.0,
                jitter_ms: 3.0,
                loss: 0.0,
            },
            sla: SlaBounds {
                latency_ms: Some(100.0),
                loss: Some(0.01),
                jitter_ms: Some(30.0),
            },
            unmeasured: Vec::new(),
            degraded: false,
            short: None,
        }
    }

    #[test]
    fn a_route_reason_renders_its_figures_against_the_sla() {
        assert_eq!(
            route().text(),
            "mpls via hub: latency 34.0 ms ≤ 100.0 ms, loss 0.00% ≤ 1.00%, jitter 3.0 ms ≤ 30.0 ms"
        );
        let mut short = route();
        short.short = Some((1.5e6, 2e6));
        short.degraded = true;
        assert!(
            short.text().ends_with(
                "(no path meets the SLA; least bad); capacity short: 1.5 of 2.0 Mbit/s carried"
            ),
            "{}",
            short.text()
        );
    }

    #[test]
    fn figures_that_read_the_same_do_not_change_the_route() {
        let mut close = route();
        close.quality.latency_ms = 34.01;
        assert!(route().reads_as(&close));
        assert_eq!(route().text(), close.text());
        let mut moved = route();
        moved.quality.latency_ms = 34.2;
        assert!(!route().reads_as(&moved));
    }

    #[test]
    fn a_reason_serialises_with_its_words_and_evidence() {
        let reason = Reason::new(ReasonDetail::SlaBreach {
            class: "voice".into(),
            from: "b1/mpls".into(),
            to: "b1/inet".into(),
            breaches: vec![Breach {
                metric: Metric::Loss,
                value: 0.031,
                bound: 0.01,
            }],
            now: 0.0,
        });
        assert_eq!(reason.kind, ReasonKind::SlaBreach);
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json["kind"], "sla_breach");
        assert_eq!(
            json["text"],
            "voice off b1/mpls: loss 3.10% > 1.00%; now on b1/inet (0.00%)"
        );
        assert_eq!(json["evidence"][0]["metric"], "loss");
        assert_eq!(json["evidence"][0]["limit"], 0.01);
    }
}
