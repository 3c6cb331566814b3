//! Pure estimators over probe results: loss with Wilson confidence bounds, RTT
//! percentiles, delay variation against the minimum (RFC 5481 PDV) and RFC 3550
//! interarrival jitter.
//!
//! Inputs are plain numbers (nanoseconds, counts); nothing here knows about sockets or
//! clocks, so every figure can be checked against injected truth.

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A loss ratio with its confidence interval, all as fractions (0.01 = 1%).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LossBounds {
    /// Probes whose fate is known (received or declared lost).
    pub probes: u32,
    /// Probes declared lost.
    pub lost: u32,
    /// lost / probes (0 when there are no probes).
    pub ratio: f64,
    /// Lower end of the interval.
    pub lower: f64,
    /// Upper end of the interval.
    pub upper: f64,
}

/// Wilson score interval for `lost` out of `probes` at normal quantile `z`.
///
/// With no probes the interval is the whole [0, 1]: nothing is known. Wilson, unlike the
/// normal approximation, stays inside [0, 1] and behaves at 0 or 1 loss in 40 probes.
pub fn wilson(lost: u32, probes: u32, z: f64) -> LossBounds {
    if probes == 0 {
        return LossBounds {
            probes: 0,
            lost: 0,
            ratio: 0.0,
            lower: 0.0,
            upper: 1.0,
        };
    }
    let lost = lost.min(probes);
    let n = f64::from(probes);
    let p = f64::from(lost) / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    LossBounds {
        probes,
        lost,
        ratio: p,
        // Exact at the edges (rounding would leave 1e-19 where the bound is 0).
        lower: if lost == 0 {
            0.0
        } else {
            ((centre - spread) / denom).clamp(0.0, 1.0)
        },
        upper: if lost == probes {
            1.0
        } else {
            ((centre + spread) / denom).clamp(0.0, 1.0)
        },
    }
}

/// Wilson interval corrected for bursty loss.
///
/// Losses that come in runs are not independent: with mean run length `B` the variance
/// of the loss ratio grows by the design effect `D = (1 + ρ)/(1 − ρ)` of a two-state
/// Markov chain with lag-1 correlation ρ (≈ `2B − 1` at low loss). The interval is computed for `n / D` independent
/// probes at the observed ratio, and never narrower than the plain Wilson interval.
/// With isolated losses (`B = 1`) this is [`wilson`]. `B` comes from the caller: the
/// window's own runs, or the line's recent history when the window shows too few.
pub fn wilson_bursty(lost: u32, probes: u32, mean_burst: f64, z: f64) -> LossBounds {
    let plain = wilson(lost, probes, z);
    // Lag-1 correlation of a two-state Markov chain with loss ratio p and mean run B:
    // ρ = P(loss | loss) − P(loss | kept) = (1 − 1/B) − p / ((1 − p)·B). Independent loss
    // has B = 1/(1 − p) and ρ = 0 (no widening); `2B − 1` alone would widen 9.75% iid
    // loss by 22% and slow every brownout decision.
    let p = plain.ratio;
    let rho = (1.0 - 1.0 / mean_burst) - p / ((1.0 - p).max(1e-9) * mean_burst);
    let design_effect = (1.0 + rho) / (1.0 - rho).max(1e-9);
    if probes == 0 || !design_effect.is_finite() || design_effect <= 1.0 {
        return plain;
    }
    let n = f64::from(probes) / design_effect;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    LossBounds {
        lower: ((centre - spread) / denom).clamp(0.0, plain.lower),
        upper: ((centre + spread) / denom).clamp(plain.upper, 1.0),
        ..plain
    }
}

/// Summary of a set of delays, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DelayStats {
    /// Number of samples.
    pub samples: u32,
    /// Smallest sample.
    pub min: i64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: i64,
    /// 95th percentile (nearest rank).
    pub p95: i64,
    /// 99th percentile (nearest rank).
    pub p99: i64,
    /// Largest sample.
    pub max: i64,
}

/// Min/mean/percentiles of `samples`; `None` when empty. Sorts `samples` in place.
pub fn delay_stats(samples: &mut [i64]) -> Option<DelayStats> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let sum: i128 = samples.iter().map(|&s| i128::from(s)).sum();
    Some(DelayStats {
        samples: samples.len() as u32,
        min: samples[0],
        mean: sum as f64 / samples.len() as f64,
        p50: nearest_rank(samples, 50.0),
        p95: nearest_rank(samples, 95.0),
        p99: nearest_rank(samples, 99.0),
        max: samples[samples.len() - 1],
    })
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
pub fn nearest_rank(sorted: &[i64], percentile: f64) -> i64 {
    let n = sorted.len();
    let rank = ((percentile / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// RFC 5481 packet delay variation: the given percentile of `D(i) − D(min)` over the
/// samples, in nanoseconds. Because it subtracts the minimum of the same series, a constant
/// clock offset between sender and reflector cancels, so one-way series work too.
/// Sorts `samples` in place; `None` when empty.
pub fn pdv(samples: &mut [i64], percentile: f64) -> Option<i64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    Some(nearest_rank(samples, percentile) - samples[0])
}

/// RFC 3550 §6.4.1 interarrival jitter, run over transit times in arrival order.
///
/// `J += (|D(i−1,i)| − J) / 16` where `D` is the difference of consecutive transit times;
/// a constant clock offset cancels in `D`. Value in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InterarrivalJitter {
    last_transit: Option<i64>,
    jitter: f64,
}

impl InterarrivalJitter {
    /// Feeds the transit time of the next packet.
    pub fn push(&mut self, transit: i64) {
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Current estimate in nanoseconds (0 before two samples).
    pub fn value(&self) -> f64 {
        self.jitter
    }

    /// Jitter of a whole series fed in order.
    pub fn of(transits: impl IntoIterator<Item = i64>) -> f64 {
        let mut j = Self::default();
        transits.into_iter().for_each(|t| j.push(t));
        j.value()
    }
}
