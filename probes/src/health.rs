//! `LineHealth`: the per-line, per-SLA state machine (`Up` / `Degraded` / `Down`).
//!
//! Fail fast, recover slowly, dampen flaps:
//! - `Down` the moment `outage_probes` consecutive probes are overdue *and* nothing has been
//!   heard for `min_silence` (a timer, not a window). `Down` means dead, not lossy: the
//!   defaults (7 probes, 150 ms) make a random-loss burst an implausible cause, see
//!   [`false_outage_rate_per_hour`].
//! - First contact: a line that starts `Down` and has never been `Up` comes `Up` after
//!   `startup_answers` consecutive answers without a breach (≈0.5 s at 20 probes/s), not
//!   after the recovery hold-down, which is for lines that failed. Only once: a line that
//!   fails afterwards recovers the slow way.
//! - A `Down` that late answers disprove is withdrawn at once: when the answers that end
//!   it (`answers_to_leave_down` of them) are answers to probes the outage timer had
//!   counted missing, the line was slow (a delay step, a stalled host), not dead. The machine goes back to where it
//!   was before the outage (or `Degraded` if the slow answers break the SLA), without the
//!   hold-down, and the flap penalty the outage added is taken back.
//! - `Degraded` the moment the evidence *confidently* breaks the SLA: the Wilson lower
//!   bound of loss above the limit (short or long window), median RTT over the short window
//!   or over the newest answers (a level shift shows within ≈ 15 probes), or RFC 3550
//!   jitter over the short window above their limits.
//! - Back to `Up` only after a whole hold-down in which every check stayed inside the
//!   hysteresis band (`recover_margin` × limit, long-window loss estimate), and only when
//!   flap dampening (penalty, half-life, reuse threshold) does not suppress the line.
//!
//! Pure: `evaluate(&Evidence)` in, `Option<HealthTransition>` out. Every transition
//! carries its reasons as data.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wansteer_wire::report::{HealthReason, HealthState, HealthTransition, WindowSummary};

use crate::tracker::Evidence;

/// The SLA of one traffic class, as the health machine needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    /// SLA class name ("voice", "default", …).
    pub name: String,
    /// Highest acceptable loss, as a fraction (0.01 = 1%).
    pub loss_limit: f64,
    /// Highest acceptable median round-trip time.
    pub rtt_limit: Option<Duration>,
    /// Highest acceptable RFC 3550 jitter (over RTT).
    pub jitter_limit: Option<Duration>,
    /// Overrides [`HealthConfig::fast_loss_factor`] for this class (e.g. 1 for voice,
    /// which prefers a fast move to a steady line).
    #[serde(default)]
    pub fast_loss_factor: Option<f64>,
}

impl Sla {
    /// An SLA with only a loss limit.
    pub fn loss_only(name: impl Into<String>, loss_limit: f64) -> Self {
        Self {
            name: name.into(),
            loss_limit,
            rtt_limit: None,
            jitter_limit: None,
            fast_loss_factor: None,
        }
    }

    /// Checks the limits are usable.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.loss_limit > 0.0 && self.loss_limit < 1.0) {
            return Err(format!(
                "SLA {}: loss limit {} is not a fraction in (0, 1)",
                self.name, self.loss_limit
            ));
        }
        if let Some(f) = self.fast_loss_factor
            && !(f >= 1.0 && f.is_finite())
        {
            return Err(format!(
                "SLA {}: fast loss factor {f} must be >= 1",
                self.name
            ));
        }
        for (what, limit) in [("rtt", self.rtt_limit), ("jitter", self.jitter_limit)] {
            if limit.is_some_and(|l| l.is_zero()) {
                return Err(format!(
                    "SLA {}: {what} limit must be above zero",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Flap dampening, after BGP route-flap damping (RFC 2439): each failure adds a penalty
/// that decays with a half-life; above `suppress` the line may not come back `Up` until
/// the penalty has decayed to `reuse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dampening {
    /// Penalty added on every transition out of `Up` and every transition to `Down`.
    pub penalty_per_flap: f64,
    /// Penalty halves over this time.
    pub half_life: Duration,
    /// At or above this, the line is suppressed.
    pub suppress: f64,
    /// A suppressed line is released at or below this.
    pub reuse: f64,
    /// Longest suppression: the penalty is capped so it decays to `reuse` within this.
    pub max_suppress: Duration,
}

impl Default for Dampening {
    fn default() -> Self {
        Self {
            penalty_per_flap: 1000.0,
            half_life: Duration::from_secs(60),
            suppress: 2500.0,
            reuse: 750.0,
            max_suppress: Duration::from_secs(300),
        }
    }
}

/// Timers and margins of the health machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// Consecutive overdue probes that make an outage.
    pub outage_probes: u32,
    /// An outage also needs this long without any answer, so that a jump in delay or
    /// jitter (answers still arriving, just later) is not taken for silence.
    pub min_silence: Duration,
    /// Consecutive answers that end an outage (to `Degraded`, then hold-down).
    pub answers_to_leave_down: u32,
    /// Consecutive answers that bring a line that was never `Up` (start-up, first contact)
    /// straight `Up`, when no SLA breach shows; 0 turns the fast start off.
    #[serde(default = "default_startup_answers")]
    pub startup_answers: u32,
    /// The short window breaches when its loss lower bound exceeds the SLA limit times
    /// this factor: at 20 probes/s a 2 s window cannot tell 0.9% from 1% (DESIGN §4), so
    /// it only catches gross loss; the long window makes the fine decision.
    pub fast_loss_factor: f64,
    /// Fewest probes with known fate before loss is judged on a window.
    pub min_probes: u32,
    /// Fewest RTT samples before latency and jitter are judged.
    pub min_rtt_samples: u32,
    /// Recovery needs every metric at or below `recover_margin` × its limit (the
    /// hysteresis band between breach and recovery).
    pub recover_margin: f64,
    /// Time every check must stay clean before `Degraded` goes `Up`.
    pub hold_down: Duration,
    /// Flap dampening.
    pub dampening: Dampening,
    /// State before any evidence.
    pub initial: HealthState,
}

fn default_startup_answers() -> u32 {
    10
}

/// Expected false outages per hour on a line that is alive but loses each probe round trip
/// independently with probability `round_trip_loss`, probed every `interval`, when an
/// outage needs `outage_probes` consecutive losses: runs of at least k losses start at a
/// rate of `(1 − q)·q^k` per probe.
///
/// With the defaults (7 probes) and 5% loss in *each* direction (q = 1 − 0.95² = 9.75%):
/// 0.014/h at 50 probes/s (one false `Down` per ≈ 70 line-hours) and 0.006/h at 20/s; with
/// q = 5%: 1.3·10⁻⁴/h at 50/s (one per ≈ 7,500 line-hours). The old 3 probes gave 60/h at
/// 20/s with q = 9.75% — a false failover within seconds of a 5% brownout being likely.
pub fn false_outage_rate_per_hour(
    round_trip_loss: f64,
    interval: Duration,
    outage_probes: u32,
) -> f64 {
    let q = round_trip_loss.clamp(0.0, 1.0);
    let probes_per_hour = 3600.0 / interval.as_secs_f64().max(1e-9);
    probes_per_hour * (1.0 - q) * q.powi(outage_probes as i32)
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            // A dead line: 7 probes in a row unanswered and 150 ms of silence. At 50
            // probes/s that is ≈ 170 ms from the last answer (the blackout target is 200 ms);
            // at 20/s ≈ 380 ms. See `false_outage_rate_per_hour` for why not fewer.
            outage_probes: 7,
            min_silence: Duration::from_millis(150),
            answers_to_leave_down: 3,
            startup_answers: default_startup_answers(),
            fast_loss_factor: 2.0,
            min_probes: 20,
            min_rtt_samples: 10,
            recover_margin: 1.0,
            hold_down: Duration::from_secs(10),
            dampening: Dampening::default(),
            initial: HealthState::Down,
        }
    }
}

impl HealthConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.dampening;
        if self.outage_probes == 0 {
            return Err("outage_probes must be at least 1".into());
        }
        if !(self.fast_loss_factor >= 1.0 && self.fast_loss_factor.is_finite()) {
            return Err(format!(
                "fast_loss_factor {} must be >= 1",
                self.fast_loss_factor
            ));
        }
        if !(self.recover_margin > 0.0 && self.recover_margin <= 1.0) {
            return Err(format!(
                "recover_margin {} must be in (0, 1]",
                self.recover_margin
            ));
        }
        if d.half_life.is_zero() || !(d.reuse > 0.0 && d.reuse < d.suppress) {
            return Err("dampening needs a half-life and 0 < reuse < suppress".into());
        }
        Ok(())
    }
}

/// Health of one line for one SLA class.
#[derive(Debug, Clone)]
pub struct LineHealth {
    line: String,
    sla: Sla,
    config: HealthConfig,
    state: HealthState,
    /// Start of the current clean streak while `Degraded`.
    clean_since: Option<Duration>,
    /// Has been `Up` at least once (or started `Up`): no more fast start.
    been_up: bool,
    penalty: f64,
    penalty_at: Duration,
    suppressed: bool,
    /// While `Down` by an outage: what to go back to if late answers disprove it.
    before_outage: Option<Withdrawable>,
}

/// What an outage changed, to undo it when late answers show the line was only slow.
#[derive(Debug, Clone, Copy)]
struct Withdrawable {
    state: HealthState,
    penalty: f64,
    suppressed: bool,
    clean_since: Option<Duration>,
    at: Duration,
}

impl LineHealth {
    /// A machine in `config.initial`.
    pub fn new(line: impl Into<String>, sla: Sla, config: HealthConfig) -> Self {
        Self {
            line: line.into(),
            state: config.initial,
            been_up: config.initial == HealthState::Up,
            sla,
            config,
            clean_since: None,
            penalty: 0.0,
            penalty_at: Duration::ZERO,
            suppressed: false,
            before_outage: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// The SLA judged.
    pub fn sla(&self) -> &Sla {
        &self.sla
    }

    /// Flap penalty as of the last evaluation.
    pub fn penalty(&self) -> f64 {
        self.penalty
    }

    /// Held away from `Up` by dampening.
    pub fn suppressed(&self) -> bool {
        self.suppressed
    }

    /// Judges the evidence; returns the transition if the state changes.
    pub fn evaluate(&mut self, ev: &Evidence) -> Option<HealthTransition> {
        self.decay(ev.now);
        let outage =
            ev.missing >= self.config.outage_probes && ev.silent >= self.config.min_silence;
        if self.state == HealthState::Down
            && !outage
            && let Some(before) = self.before_outage
            && ev.late > 0
        {
            // Answers to probes counted missing are coming in: the line may only be slow.
            if ev.late >= self.config.answers_to_leave_down {
                return Some(self.withdraw_outage(ev, before));
            }
            return None;
        }
        let (to, reasons) = match self.state {
            HealthState::Up | HealthState::Degraded if outage => {
                self.before_outage = Some(Withdrawable {
                    state: self.state,
                    penalty: self.penalty,
                    suppressed: self.suppressed,
                    clean_since: self.clean_since,
                    at: ev.now,
                });
                (HealthState::Down, vec![self.outage_reason(ev)])
            }
            HealthState::Up => {
                let breaches = self.breaches(ev);
                if breaches.is_empty() {
                    return None;
                }
                (HealthState::Degraded, breaches)
            }
            HealthState::Degraded => {
                if !self.breaches(ev).is_empty() || !self.clean(ev) {
                    self.clean_since = None;
                    return None;
                }
                let since = *self.clean_since.get_or_insert(ev.now);
                let held = ev.now.saturating_sub(since);
                if held < self.config.hold_down {
                    return None;
                }
                let mut reasons = vec![HealthReason::HeldDown {
                    held_ms: held.as_millis() as u64,
                }];
                if self.suppressed {
                    let reuse = self.config.dampening.reuse;
                    if self.penalty > reuse {
                        return None;
                    }
                    self.suppressed = false;
                    reasons.push(HealthReason::Reused {
                        penalty: self.penalty,
                        reuse,
                    });
                }
                reasons.extend(self.within(ev));
                (HealthState::Up, reasons)
            }
            HealthState::Down if !self.been_up && self.config.startup_answers > 0 => {
                if outage || ev.answered_run < self.config.startup_answers {
                    return None;
                }
                let mut reasons = vec![HealthReason::Answering {
                    answered: ev.answered_run,
                }];
                let breaches = self.breaches(ev);
                if breaches.is_empty() {
                    (HealthState::Up, reasons)
                } else {
                    // Answering but already breaking the SLA: the slow path from here.
                    self.been_up = true;
                    self.clean_since = None;
                    reasons.extend(breaches);
                    (HealthState::Degraded, reasons)
                }
            }
            HealthState::Down => {
                if outage || ev.answered_run < self.config.answers_to_leave_down {
                    return None;
                }
                self.clean_since = None;
                let mut reasons = vec![HealthReason::Answering {
                    answered: ev.answered_run,
                }];
                reasons.extend(self.breaches(ev));
                (HealthState::Degraded, reasons)
            }
        };
        Some(self.transition(ev.now, to, reasons))
    }

    /// Late answers disprove the outage: back to the state before it (or `Degraded` when
    /// the slow answers break the SLA), its flap penalty taken back.
    fn withdraw_outage(&mut self, ev: &Evidence, before: Withdrawable) -> HealthTransition {
        self.before_outage = None;
        let breaches = self.breaches(ev);
        let to = if breaches.is_empty() {
            before.state
        } else {
            HealthState::Degraded
        };
        let mut reasons = vec![HealthReason::Answering { answered: ev.late }];
        reasons.extend(breaches);
        let from = self.state;
        let half_life = self.config.dampening.half_life.as_secs_f64();
        let since_down = ev.now.saturating_sub(before.at).as_secs_f64();
        self.penalty = before.penalty * 0.5f64.powf(since_down / half_life);
        self.suppressed = before.suppressed;
        self.clean_since = if to == before.state {
            before.clean_since
        } else {
            None
        };
        self.state = to;
        HealthTransition {
            line: self.line.clone(),
            sla: self.sla.name.clone(),
            at_unix_ms: 0,
            elapsed_ms: ev.now.as_millis() as u64,
            from,
            to,
            reasons,
        }
    }

    fn transition(
        &mut self,
        now: Duration,
        to: HealthState,
        reasons: Vec<HealthReason>,
    ) -> HealthTransition {
        let from = self.state;
        if to != HealthState::Down {
            self.before_outage = None;
        }
        // Every failure counts, also a Degraded line going Down again: a line that keeps
        // dropping out while suppressed stays suppressed.
        if from == HealthState::Up || to == HealthState::Down {
            self.add_penalty();
        }
        if to != HealthState::Degraded {
            self.clean_since = None;
        }
        self.been_up |= to == HealthState::Up;
        self.state = to;
        HealthTransition {
            line: self.line.clone(),
            sla: self.sla.name.clone(),
            at_unix_ms: 0,
            elapsed_ms: now.as_millis() as u64,
            from,
            to,
            reasons,
        }
    }

    fn decay(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.penalty_at).as_secs_f64();
        let half_life = self.config.dampening.half_life.as_secs_f64();
        self.penalty *= 0.5f64.powf(dt / half_life);
        self.penalty_at = now;
    }

    fn add_penalty(&mut self) {
        let d = &self.config.dampening;
        let ceiling = d.reuse * 2f64.powf(d.max_suppress.as_secs_f64() / d.half_life.as_secs_f64());
        self.penalty = (self.penalty + d.penalty_per_flap).min(ceiling);
        if self.penalty >= d.suppress {
            self.suppressed = true;
        }
    }

    fn outage_reason(&self, ev: &Evidence) -> HealthReason {
        HealthReason::Outage {
            missing: ev.missing,
            silent_ms: ev.silent.as_millis() as u64,
        }
    }

    /// Confident breaches of the SLA (empty when none).
    fn breaches(&self, ev: &Evidence) -> Vec<HealthReason> {
        let mut reasons = Vec::new();
        let factor = self
            .sla
            .fast_loss_factor
            .unwrap_or(self.config.fast_loss_factor);
        let fast_limit = self.sla.loss_limit * factor;
        for (w, limit) in [(&ev.short, fast_limit), (&ev.long, self.sla.loss_limit)] {
            if w.probes >= self.config.min_probes && w.loss.lower > limit {
                reasons.push(self.loss_reason(w, limit, true));
                break;
            }
        }
        if let Some((p50, limit)) = self.rtt_judged(ev)
            && p50 > limit
        {
            reasons.push(self.rtt_reason(&ev.short, p50, limit, true));
        }
        if let Some((jitter, limit)) = self.jitter(&ev.short)
            && jitter > limit
        {
            reasons.push(self.jitter_reason(&ev.short, jitter, limit, true));
        }
        reasons
    }

    /// Every metric inside the hysteresis band, with enough evidence to say so.
    fn clean(&self, ev: &Evidence) -> bool {
        let m = self.config.recover_margin;
        let long = &ev.long;
        let loss_ok = long.probes >= self.config.min_probes
            && long.loss.ratio <= self.sla.loss_limit * m
            && ev.missing == 0;
        let rtt_ok = self.sla.rtt_limit.is_none()
            || self
                .rtt_judged(ev)
                .is_some_and(|(p50, limit)| p50 <= limit * m);
        let jitter_ok = self.sla.jitter_limit.is_none()
            || self
                .jitter(&ev.short)
                .is_some_and(|(j, limit)| j <= limit * m);
        loss_ok && rtt_ok && jitter_ok
    }

    /// The evidence for a recovery, as reasons with `breached: false`.
    fn within(&self, ev: &Evidence) -> Vec<HealthReason> {
        let mut reasons = vec![self.loss_reason(&ev.long, self.sla.loss_limit, false)];
        if let Some((p50, limit)) = self.rtt_judged(ev) {
            reasons.push(self.rtt_reason(&ev.short, p50, limit, false));
        }
        if let Some((jitter, limit)) = self.jitter(&ev.short) {
            reasons.push(self.jitter_reason(&ev.short, jitter, limit, false));
        }
        reasons
    }

    /// (median RTT, limit) in ms: the higher of the short window's median and the newest
    /// answers' median (each with enough samples), so a step up shows within a few probes
    /// while a step down waits for the short window.
    fn rtt_judged(&self, ev: &Evidence) -> Option<(f64, f64)> {
        let short = self.rtt(&ev.short);
        let recent = ev
            .recent_rtt_p50_ms
            .filter(|_| ev.recent_rtt_samples >= self.config.min_rtt_samples);
        match (short, recent) {
            (Some((p50, limit)), Some(newest)) => Some((p50.max(newest), limit)),
            (None, Some(newest)) => {
                let limit = self.sla.rtt_limit?.as_secs_f64() * 1e3;
                Some((newest, limit))
            }
            (short, None) => short,
        }
    }

    /// (median RTT, limit) in ms when there is a limit and enough samples.
    fn rtt(&self, w: &WindowSummary) -> Option<(f64, f64)> {
        let limit = self.sla.rtt_limit?.as_secs_f64() * 1e3;
        let rtt = w.rtt_ms.as_ref()?;
        (w.probes.saturating_sub(w.lost) >= self.config.min_rtt_samples).then_some((rtt.p50, limit))
    }

    /// (jitter, limit) in ms when there is a limit and enough samples.
    fn jitter(&self, w: &WindowSummary) -> Option<(f64, f64)> {
        let limit = self.sla.jitter_limit?.as_secs_f64() * 1e3;
        let jitter = w.jitter_ms?;
        (w.probes.saturating_sub(w.lost) >= self.config.min_rtt_samples).then_some((jitter, limit))
    }

    fn loss_reason(&self, w: &WindowSummary, limit: f64, breached: bool) -> HealthReason {
        HealthReason::Loss {
            window_ms: w.window_ms,
            probes: w.probes,
            estimate: w.loss,
            limit,
            breached,
        }
    }

    fn rtt_reason(&self, w: &WindowSummary, p50: f64, limit: f64, breached: bool) -> HealthReason {
        HealthReason::Rtt {
            window_ms: w.window_ms,
            p50_ms: p50,
            limit_ms: limit,
            breached,
        }
    }

    fn jitter_reason(
        &self,
        w: &WindowSummary,
        jitter: f64,
        limit: f64,
        breached: bool,
    ) -> HealthReason {
        HealthReason::Jitter {
            window_ms: w.window_ms,
            jitter_ms: jitter,
            limit_ms: limit,
            breached,
        }
    }
}
