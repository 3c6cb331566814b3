//! Synthetic lines for tests and benchmarks: delay, jitter, loss (Bernoulli or
//! Gilbert–Elliott bursts), outages and a clock offset between the two ends, all from a
//! seeded generator so every run is reproducible.
//!
//! [`simulate`] drives a [`LineMonitor`] in pure virtual time (no tokio, no sockets) and
//! is what the accuracy benchmark and the scenario tests use; `tasks::SimTransport`
//! puts the same impairments behind the tokio driver.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use wansteer_wire::report::{HealthTransition, LineReport, LineSummary};

use crate::monitor::LineMonitor;
use crate::packet::{ErrorEstimate, NtpTimestamp};
use crate::reflector::reflect;

/// A small, fast, seeded generator (SplitMix64); good enough for impairments.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// How packets are lost on one direction of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum LossModel {
    /// Nothing lost.
    None,
    /// Each packet lost independently with this probability.
    Bernoulli(f64),
    /// Two-state Markov bursts: in `good` lose with `loss_good`, in `bad` with `loss_bad`;
    /// move good→bad with `p_good_bad` and bad→good with `p_bad_good` per packet.
    /// Mean loss = `π_bad·loss_bad + π_good·loss_good`, `π_bad = p_gb / (p_gb + p_bg)`.
    GilbertElliott {
        /// P(good → bad) per packet.
        p_good_bad: f64,
        /// P(bad → good) per packet (1 / mean burst length).
        p_bad_good: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
    /// Every `n`th packet lost (a deterministic ratio of 1/n).
    EveryNth(u64),
    /// Everything lost.
    Blackhole,
}

impl LossModel {
    /// Gilbert–Elliott bursts with the given mean loss and mean burst length
    /// (every packet lost in the bad state, none in the good one).
    pub fn bursty(mean_loss: f64, mean_burst: f64) -> Self {
        let p_bad_good = 1.0 / mean_burst;
        Self::GilbertElliott {
            p_good_bad: mean_loss * p_bad_good / (1.0 - mean_loss),
            p_bad_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// Long-run mean loss ratio.
    pub fn mean_loss(&self) -> f64 {
        match *self {
            Self::None => 0.0,
            Self::Bernoulli(p) => p,
            Self::GilbertElliott {
                p_good_bad,
                p_bad_good,
                loss_good,
                loss_bad,
            } => {
                let bad = p_good_bad / (p_good_bad + p_bad_good);
                bad * loss_bad + (1.0 - bad) * loss_good
            }
            Self::EveryNth(n) => 1.0 / n.max(1) as f64,
            Self::Blackhole => 1.0,
        }
    }
}

/// One direction's loss process with its state.
#[derive(Debug, Clone)]
struct LossProcess {
    model: LossModel,
    bad: bool,
    count: u64,
}

impl LossProcess {
    fn new(model: LossModel) -> Self {
        Self {
            model,
            bad: false,
            count: 0,
        }
    }

    fn lose(&mut self, rng: &mut Rng) -> bool {
        self.count += 1;
        match self.model {
            LossModel::None => false,
            LossModel::Bernoulli(p) => rng.chance(p),
            LossModel::GilbertElliott {
                p_good_bad,
                p_bad_good,
                loss_good,
                loss_bad,
            } => {
                let flip = if self.bad { p_bad_good } else { p_good_bad };
                if rng.chance(flip) {
                    self.bad = !self.bad;
                }
                rng.chance(if self.bad { loss_bad } else { loss_good })
            }
            LossModel::EveryNth(n) => n > 0 && self.count.is_multiple_of(n),
            LossModel::Blackhole => true,
        }
    }
}

/// Impairment of a line, both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay sender → reflector.
    pub forward_delay: Duration,
    /// Fixed one-way delay reflector → sender.
    pub reverse_delay: Duration,
    /// Extra delay per packet and direction, uniform in [0, jitter].
    pub jitter: Duration,
    /// Loss sender → reflector.
    pub forward_loss: LossModel,
    /// Loss reflector → sender.
    pub reverse_loss: LossModel,
    /// Reflector clock minus sender clock, ns (may be negative).
    pub clock_offset_ns: i64,
    /// Reflector's time between receiving and answering.
    pub turnaround: Duration,
}

impl Impairment {
    /// A clean line with a symmetric fixed RTT.
    pub fn clean(rtt: Duration) -> Self {
        Self {
            forward_delay: rtt / 2,
            reverse_delay: rtt / 2,
            jitter: Duration::ZERO,
            forward_loss: LossModel::None,
            reverse_loss: LossModel::None,
            clock_offset_ns: 0,
            turnaround: Duration::from_micros(20),
        }
    }

    /// The same line with forward loss.
    pub fn with_loss(mut self, loss: LossModel) -> Self {
        self.forward_loss = loss;
        self
    }
}

/// What happens to one probe on a synthetic line: `None` if lost (either way), else the
/// reflector's receive time and the arrival time back at the sender (both on the
/// sender's time axis), and the reflector's (T2, T3) timestamps on its own clock.
#[derive(Debug)]
pub struct SimLine {
    impairment: Impairment,
    forward: LossProcess,
    reverse: LossProcess,
    rng: Rng,
    last_forward_arrival: Duration,
    last_reverse_arrival: Duration,
}

/// The fate of one probe on a [`SimLine`].
#[derive(Debug, Clone, Copy)]
pub struct Trip {
    /// When the reflector got it (sender time axis).
    pub at_reflector: Duration,
    /// When the answer reaches the sender, or `None` when lost either way.
    pub back_at: Option<Duration>,
}

impl SimLine {
    /// A line with these impairments and a seed.
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        Self {
            forward: LossProcess::new(impairment.forward_loss.clone()),
            reverse: LossProcess::new(impairment.reverse_loss.clone()),
            impairment,
            rng: Rng::new(seed),
            last_forward_arrival: Duration::ZERO,
            last_reverse_arrival: Duration::ZERO,
        }
    }

    /// Changes the impairment from now on (loss-process state restarts on model change).
    pub fn set_impairment(&mut self, impairment: Impairment) {
        if impairment.forward_loss != self.impairment.forward_loss {
            self.forward = LossProcess::new(impairment.forward_loss.clone());
        }
        if impairment.reverse_loss != self.impairment.reverse_loss {
            self.reverse = LossProcess::new(impairment.reverse_loss.clone());
        }
        self.impairment = impairment;
    }

    /// The current impairment.
    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    fn jitter(&mut self) -> Duration {
        self.impairment.jitter.mul_f64(self.rng.unit())
    }

    /// Sends one probe at `sent`. With `fifo`, a packet never overtakes an earlier one
    /// (a queue adds jitter without reordering).
    pub fn trip(&mut self, sent: Duration, fifo: bool) -> Trip {
        let forward_lost = self.forward.lose(&mut self.rng);
        let mut at_reflector = sent + self.impairment.forward_delay + self.jitter();
        if fifo {
            at_reflector = at_reflector.max(self.last_forward_arrival);
        }
        if forward_lost {
            return Trip {
                at_reflector,
                back_at: None,
            };
        }
        self.last_forward_arrival = at_reflector;
        let reverse_lost = self.reverse.lose(&mut self.rng);
        let mut back = at_reflector
            + self.impairment.turnaround
            + self.impairment.reverse_delay
            + self.jitter();
        if fifo {
            back = back.max(self.last_reverse_arrival);
        }
        if reverse_lost {
            return Trip {
                at_reflector,
                back_at: None,
            };
        }
        self.last_reverse_arrival = back;
        Trip {
            at_reflector,
            back_at: Some(back),
        }
    }

    /// The reflector's answer to `probe` (bytes), as its clock would stamp it.
    pub fn answer(&self, probe: &[u8], trip: &Trip, wall_start: Duration) -> Vec<u8> {
        let offset = self.impairment.clock_offset_ns;
        let t2 = NtpTimestamp::from_unix_duration(wall_start + trip.at_reflector).add_nanos(offset);
        let t3 = NtpTimestamp::from_unix_duration(
            wall_start + trip.at_reflector + self.impairment.turnaround,
        )
        .add_nanos(offset);
        let err = ErrorEstimate::unsynchronized(Duration::from_millis(1));
        reflect(probe, t2, t3, err, 64).unwrap_or_default()
    }
}

/// A change of impairment at a moment of a simulated run.
#[derive(Debug, Clone)]
pub struct Step {
    /// From this time on…
    pub at: Duration,
    /// …the line behaves like this.
    pub impairment: Impairment,
}

/// Everything a simulated run produced.
#[derive(Debug, Default)]
pub struct SimRun {
    /// Health transitions, in order.
    pub transitions: Vec<HealthTransition>,
    /// Summaries, in order.
    pub summaries: Vec<LineSummary>,
}

/// Runs `monitor` against a synthetic line for `duration`, changing the impairment at
/// each step, polling at every probe, every reply and every outage deadline — what the
/// tokio driver does, in virtual time.
pub fn simulate(
    monitor: &mut LineMonitor,
    first: Impairment,
    steps: &[Step],
    duration: Duration,
    seed: u64,
) -> SimRun {
    let wall_start = monitor.wall_start();
    let interval = monitor.config().interval;
    let mut line = SimLine::new(first, seed);
    let mut steps = steps.iter().peekable();
    // Replies in flight: (arrival, order, bytes).
    let mut in_flight: BinaryHeap<Reverse<(Duration, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut run = SimRun::default();
    let mut next_send = Duration::ZERO;
    let collect = |reports: Vec<LineReport>, run: &mut SimRun| {
        for report in reports {
            match report {
                LineReport::Transition(t) => run.transitions.push(t),
                LineReport::Summary(s) => run.summaries.push(*s),
            }
        }
    };
    loop {
        let next_reply = in_flight.peek().map(|Reverse((at, _, _))| *at);
        let wake = monitor.next_wakeup();
        let now = [Some(next_send), next_reply, Some(wake)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_send);
        if now > duration {
            break;
        }
        while let Some(step) = steps.next_if(|s| s.at <= now) {
            // A line that dies takes the packets on it along: answers in flight are lost.
            if step.impairment.reverse_loss == LossModel::Blackhole
                || step.impairment.forward_loss == LossModel::Blackhole
            {
                in_flight.clear();
            }
            line.set_impairment(step.impairment.clone());
        }
        if next_reply == Some(now) {
            if let Some(Reverse((_, _, bytes))) = in_flight.pop() {
                monitor.on_datagram(now, &bytes, true);
            }
        } else if now == next_send {
            let packet = monitor.on_send(now).encode();
            let trip = line.trip(now, true);
            if let Some(back) = trip.back_at {
                let bytes = line.answer(&packet, &trip, wall_start);
                in_flight.push(Reverse((back, order, bytes)));
                order += 1;
            }
            next_send += interval;
        }
        let reports = monitor.poll(now);
        collect(reports, &mut run);
    }
    run
}
