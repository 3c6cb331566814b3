//! The pure decision core of the WAN emulator: for each frame arriving at time `now`, decide
//! whether it is dropped (outage, tail drop, loss) or when it leaves (rate queue, delay, jitter).
//!
//! Time is plain `Duration` since the emulator started, passed in by the caller, so every
//! decision is reproducible in tests. The rate limit is a FIFO link: a frame starts
//! transmission when the previous one has finished, so a backlog shows up as queueing delay,
//! and a frame that would wait longer than the queue limit is tail-dropped.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::loss::{Loss, LossState};

/// Shape of the delay variation added to each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JitterShape {
    /// Normal distribution with standard deviation `jitter` (truncated at ±3σ).
    #[default]
    Normal,
    /// Uniform over `delay ± jitter`.
    Uniform,
}

/// What one direction of a line does to frames. One-way figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Impairment {
    /// Fixed one-way delay, microseconds.
    pub delay_us: u64,
    /// Delay variation, microseconds (σ for normal, half-width for uniform).
    pub jitter_us: u64,
    pub jitter_shape: JitterShape,
    /// Let jitter reorder frames (like netem); when false frames keep their order.
    pub reorder: bool,
    pub loss: Loss,
    /// Line rate in bits per second; `None` means unlimited.
    pub rate_bps: Option<u64>,
    /// Longest queueing delay before tail drop, microseconds (only with a rate).
    pub queue_us: u64,
    /// Full outage: every frame dropped.
    pub down: bool,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            delay_us: 0,
            jitter_us: 0,
            jitter_shape: JitterShape::Normal,
            reorder: false,
            loss: Loss::None,
            rate_bps: None,
            queue_us: 100_000,
            down: false,
        }
    }
}

impl Impairment {
    /// Refuses settings that cannot be applied.
    pub fn validate(&self) -> Result<(), String> {
        self.loss.validate()?;
        if self.rate_bps == Some(0) {
            return Err("rate must be positive".into());
        }
        if self.delay_us > 60_000_000 || self.jitter_us > 60_000_000 {
            return Err("delay and jitter must be below 60 s".into());
        }
        Ok(())
    }

    /// Applies a partial change, returning the new settings.
    pub fn with(mut self, change: &ImpairmentChange) -> Impairment {
        if let Some(v) = change.delay_us {
            self.delay_us = v;
        }
        if let Some(v) = change.jitter_us {
            self.jitter_us = v;
        }
        if let Some(v) = change.jitter_shape {
            self.jitter_shape = v;
        }
        if let Some(v) = change.reorder {
            self.reorder = v;
        }
        if let Some(v) = change.loss {
            self.loss = v;
        }
        if let Some(v) = change.rate_bps {
            self.rate_bps = if v == 0 { None } else { Some(v) };
        }
        if let Some(v) = change.queue_us {
            self.queue_us = v;
        }
        if let Some(v) = change.down {
            self.down = v;
        }
        self
    }
}

/// A partial change of an [`Impairment`]: fields left `None` keep their value.
/// `rate_bps: Some(0)` removes the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImpairmentChange {
    pub delay_us: Option<u64>,
    pub jitter_us: Option<u64>,
    pub jitter_shape: Option<JitterShape>,
    pub reorder: Option<bool>,
    pub loss: Option<Loss>,
    pub rate_bps: Option<u64>,
    pub queue_us: Option<u64>,
    pub down: Option<bool>,
}

/// Which way a frame travels through a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the branch (near) side to the hub (far) side.
    Up,
    /// From the hub (far) side to the branch (near) side.
    Down,
}

/// What the emulator did, per direction: the ground truth measurements are judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Frames read from the input interface.
    pub received: u64,
    /// Frames scheduled for output.
    pub forwarded: u64,
    /// Frames that were held back by a delay (delay + jitter > 0 or a queue wait).
    pub delayed: u64,
    /// Frames that waited in the rate queue.
    pub queued: u64,
    /// Frames dropped by random or bursty loss.
    pub dropped_loss: u64,
    /// Frames dropped because the queue was full (tail drop).
    pub dropped_queue: u64,
    /// Frames dropped because the line was down.
    pub dropped_outage: u64,
    /// Frames written to the output interface.
    pub sent: u64,
    /// Frames the output interface refused.
    pub send_errors: u64,
    /// Largest queueing delay seen, microseconds.
    pub max_queue_delay_us: u64,
}

impl Counters {
    /// All drops together.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_outage
    }
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Outage,
    QueueFull,
    Loss,
}

/// The decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Drop(DropReason),
    /// Send at this time (since emulator start).
    SendAt(Duration),
}

/// One direction of a line: settings, the rate queue, the loss chain, counters.
#[derive(Debug)]
pub struct DirectionModel {
    impairment: Impairment,
    loss_state: LossState,
    /// When the rate-limited link finishes sending what it has accepted.
    busy_until: Duration,
    /// Latest scheduled send time (keeps order when reordering is off).
    last_send: Duration,
    counters: Counters,
    rng: SmallRng,
}

impl DirectionModel {
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        DirectionModel {
            impairment,
            loss_state: LossState::default(),
            busy_until: Duration::ZERO,
            last_send: Duration::ZERO,
            counters: Counters::default(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    /// Replaces the settings; frames already scheduled keep their send time.
    pub fn set(&mut self, impairment: Impairment) {
        if impairment.loss != self.impairment.loss {
            self.loss_state = LossState::default();
        }
        self.impairment = impairment;
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Current queueing delay a frame arriving at `now` would see.
    pub fn backlog(&self, now: Duration) -> Duration {
        self.busy_until.saturating_sub(now)
    }

    /// Decides the fate of a frame of `len` bytes arriving at `now`.
    pub fn admit(&mut self, now: Duration, len: usize) -> Verdict {
        let imp = self.impairment;
        self.counters.received += 1;
        if imp.down {
            self.counters.dropped_outage += 1;
            return Verdict::Drop(DropReason::Outage);
        }
        let mut leaves_queue = now;
        if let Some(rate) = imp.rate_bps {
            let start = self.busy_until.max(now);
            let wait = start - now;
            if wait > Duration::from_micros(imp.queue_us) {
                self.counters.dropped_queue += 1;
                return Verdict::Drop(DropReason::QueueFull);
            }
            let transmit = Duration::from_nanos((len as u64 * 8 * 1_000_000_000) / rate);
            self.busy_until = start + transmit;
            leaves_queue = self.busy_until;
            if wait > Duration::ZERO {
                self.counters.queued += 1;
                self.counters.max_queue_delay_us = self
                    .counters
                    .max_queue_delay_us
                    .max(wait.as_micros() as u64);
            }
        }
        // Lost on the wire after taking its share of the line.
        if self.loss_state.lose(&imp.loss, &mut self.rng) {
            self.counters.dropped_loss += 1;
            return Verdict::Drop(DropReason::Loss);
        }
        let mut send_at = leaves_queue + self.sample_delay();
        if !imp.reorder {
            send_at = send_at.max(self.last_send);
        }
        self.last_send = self.last_send.max(send_at);
        self.counters.forwarded += 1;
        if send_at > now {
            self.counters.delayed += 1;
        }
        Verdict::SendAt(send_at)
    }

    fn sample_delay(&mut self) -> Duration {
        let imp = &self.impairment;
        let base = imp.delay_us as f64;
        let jitter = imp.jitter_us as f64;
        let offset = if jitter == 0.0 {
            0.0
        } else {
            match imp.jitter_shape {
                JitterShape::Uniform => self.rng.random_range(-jitter..=jitter),
                JitterShape::Normal => {
                    (standard_normal(&mut self.rng) * jitter).clamp(-3.0 * jitter, 3.0 * jitter)
                }
            }
        };
        Duration::from_micros((base + offset).max(0.0).round() as u64)
    }
}

/// Box–Muller transform (rand 0.10 has no normal distribution without rand_distr).
fn standard_normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn delay_only(delay_ms: u64, jitter_ms: u64, reorder: bool) -> DirectionModel {
        DirectionModel::new(
            Impairment {
                delay_us: delay_ms * 1000,
                jitter_us: jitter_ms * 1000,
                reorder,
                ..Impairment::default()
            },
            1,
        )
    }

    fn send_time(v: Verdict) -> Duration {
        match v {
            Verdict::SendAt(t) => t,
            Verdict::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    #[test]
    fn fixed_delay_is_exact() {
        let mut m = delay_only(20, 0, false);
        for i in 0..100u64 {
            let now = MS * i as u32;
            assert_eq!(send_time(m.admit(now, 100)), now + 20 * MS);
        }
        assert_eq!(m.counters().delayed, 100);
        assert_eq!(m.counters().forwarded, 100);
    }

    #[test]
    fn normal_jitter_has_configured_mean_and_spread() {
        let mut m = delay_only(40, 5, true);
        let samples: Vec<f64> = (0..20_000u32)
            .map(|i| {
                let now = MS * i;
                (send_time(m.admit(now, 100)) - now).as_secs_f64() * 1e3
            })
            .collect();
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let sd = (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((mean - 40.0).abs() < 0.1, "mean {mean}");
        assert!((sd - 5.0).abs() < 0.2, "sd {sd}");
    }

    #[test]
    fn uniform_jitter_stays_within_bounds() {
        let mut m = delay_only(40, 5, true);
        m.impairment.jitter_shape = JitterShape::Uniform;
        for i in 0..5000u32 {
            let d = send_time(m.admit(MS * i, 100)) - MS * i;
            assert!(d >= 35 * MS && d <= 45 * MS, "{d:?}");
        }
    }

    #[test]
    fn jitter_reorders_only_when_allowed() {
        // Frames 0.1 ms apart with 5 ms jitter: reordering is near certain when allowed.
        let gap = Duration::from_micros(100);
        let mut ordered = delay_only(20, 5, false);
        let mut free = delay_only(20, 5, true);
        let (mut last_o, mut last_f, mut inversions) = (Duration::ZERO, Duration::ZERO, 0);
        for i in 0..1000u32 {
            let t_o = send_time(ordered.admit(gap * i, 100));
            let t_f = send_time(free.admit(gap * i, 100));
            assert!(t_o >= last_o, "order kept without reordering");
            if t_f < last_f {
                inversions += 1;
            }
            last_o = t_o;
            last_f = last_f.max(t_f);
        }
        assert!(inversions > 100, "inversions {inversions}");
    }

    #[test]
    fn rate_limit_queues_then_tail_drops() {
        // 1 Mbit/s, 1250-byte frames: 10 ms each on the wire; queue limit 35 ms.
        let mut m = DirectionModel::new(
            Impairment {
                rate_bps: Some(1_000_000),
                queue_us: 35_000,
                ..Impairment::default()
            },
            1,
        );
        let burst: Vec<Verdict> = (0..6).map(|_| m.admit(Duration::ZERO, 1250)).collect();
        assert_eq!(burst[0], Verdict::SendAt(10 * MS));
        assert_eq!(burst[1], Verdict::SendAt(20 * MS));
        assert_eq!(burst[3], Verdict::SendAt(40 * MS));
        // Fifth frame would wait 40 ms > 35 ms.
        assert_eq!(burst[4], Verdict::Drop(DropReason::QueueFull));
        assert_eq!(burst[5], Verdict::Drop(DropReason::QueueFull));
        let c = m.counters();
        assert_eq!(
            (c.queued, c.dropped_queue, c.max_queue_delay_us),
            (3, 2, 30_000)
        );
        // Once the queue drains, frames pass without waiting.
        assert_eq!(m.admit(100 * MS, 1250), Verdict::SendAt(110 * MS));
        assert_eq!(m.backlog(105 * MS), 5 * MS);
    }

    #[test]
    fn rate_limit_caps_long_run_throughput() {
        // Offer 2 Mbit/s to a 1 Mbit/s line for 10 s: about half is carried.
        let mut m = DirectionModel::new(
            Impairment {
                rate_bps: Some(1_000_000),
                ..Impairment::default()
            },
            1,
        );
        let mut carried = 0u64;
        for i in 0..2000u32 {
            if let Verdict::SendAt(_) = m.admit(5 * MS * i, 1250) {
                carried += 1250 * 8;
            }
        }
        let rate = carried as f64 / 10.0;
        assert!(
            (rate - 1_000_000.0).abs() < 20_000.0,
            "carried {rate} bit/s"
        );
    }

    #[test]
    fn outage_drops_everything_and_clears() {
        let mut m = delay_only(10, 0, false);
        m.set(m.impairment().with(&ImpairmentChange {
            down: Some(true),
            ..Default::default()
        }));
        for i in 0..50u32 {
            assert_eq!(m.admit(MS * i, 64), Verdict::Drop(DropReason::Outage));
        }
        m.set(m.impairment().with(&ImpairmentChange {
            down: Some(false),
            ..Default::default()
        }));
        assert_eq!(m.admit(100 * MS, 64), Verdict::SendAt(110 * MS));
        assert_eq!(m.counters().dropped_outage, 50);
        assert_eq!(m.counters().received, 51);
    }

    #[test]
    fn change_keeps_fields_not_mentioned() {
        let base = Impairment {
            delay_us: 10_000,
            rate_bps: Some(50_000_000),
            ..Impairment::default()
        };
        let changed = base.with(&ImpairmentChange {
            delay_us: Some(80_000),
            ..Default::default()
        });
        assert_eq!(changed.delay_us, 80_000);
        assert_eq!(changed.rate_bps, Some(50_000_000));
        let unlimited = changed.with(&ImpairmentChange {
            rate_bps: Some(0),
            ..Default::default()
        });
        assert_eq!(unlimited.rate_bps, None);
    }
}
