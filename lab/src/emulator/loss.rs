//! Packet loss models: independent (Bernoulli) loss and bursty Gilbert–Elliott loss.
//!
//! Gilbert–Elliott is a two-state Markov chain: in the good state packets are lost with
//! probability `1 - k`, in the bad state with `1 - h`; `p` moves good → bad and `r` bad → good.
//! The simple Gilbert model (h = 0, k = 1) is what `--loss 5% --burst 10` builds: stationary
//! loss `p / (p + r)` and mean burst length `1 / r`.

use rand::RngExt;
use serde::{Deserialize, Serialize};

/// How packets are lost on a line, independently of congestion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Loss {
    /// No random loss.
    #[default]
    None,
    /// Each packet lost independently with probability `p`.
    Random { p: f64 },
    /// Gilbert–Elliott bursty loss.
    GilbertElliott {
        /// good → bad transition probability per packet
        p: f64,
        /// bad → good transition probability per packet
        r: f64,
        /// probability a packet survives in the bad state
        h: f64,
        /// probability a packet survives in the good state
        k: f64,
    },
}

impl Loss {
    /// Simple Gilbert model with the given long-run loss ratio and mean burst length (packets).
    pub fn bursty(loss: f64, mean_burst: f64) -> Loss {
        if loss <= 0.0 {
            return Loss::None;
        }
        let r = (1.0 / mean_burst.max(1.0)).min(1.0);
        let p = if loss >= 1.0 {
            1.0
        } else {
            (loss * r / (1.0 - loss)).min(1.0)
        };
        Loss::GilbertElliott {
            p,
            r,
            h: 0.0,
            k: 1.0,
        }
    }

    /// Long-run fraction of packets lost.
    pub fn expected_ratio(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random { p } => p,
            Loss::GilbertElliott { p, r, h, k } => {
                if p + r == 0.0 {
                    return 1.0 - k;
                }
                let bad = p / (p + r);
                bad * (1.0 - h) + (1.0 - bad) * (1.0 - k)
            }
        }
    }

    /// Checks probabilities are in 0..=1.
    pub fn validate(&self) -> Result<(), String> {
        let probabilities: &[f64] = match self {
            Loss::None => &[],
            Loss::Random { p } => &[*p],
            Loss::GilbertElliott { p, r, h, k } => &[*p, *r, *h, *k],
        };
        if probabilities.iter().all(|x| (0.0..=1.0).contains(x)) {
            Ok(())
        } else {
            Err(format!("loss probabilities must be within 0..1: {self:?}"))
        }
    }
}

/// The running state of a loss model (the Gilbert–Elliott chain's current state).
#[derive(Debug, Clone, Default)]
pub struct LossState {
    bad: bool,
}

impl LossState {
    /// Decides whether the next packet is lost.
    pub fn lose(&mut self, model: &Loss, rng: &mut impl rand::Rng) -> bool {
        match *model {
            Loss::None => false,
            Loss::Random { p } => p > 0.0 && rng.random_bool(p),
            Loss::GilbertElliott { p, r, h, k } => {
                let flip = if self.bad { r } else { p };
                if rng.random_bool(flip) {
                    self.bad = !self.bad;
                }
                let survive = if self.bad { h } else { k };
                !rng.random_bool(survive)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn run(model: Loss, n: usize) -> Vec<bool> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut state = LossState::default();
        (0..n).map(|_| state.lose(&model, &mut rng)).collect()
    }

    #[test]
    fn random_loss_ratio_within_binomial_bound() {
        let n = 100_000;
        let lost = run(Loss::Random { p: 0.05 }, n)
            .iter()
            .filter(|l| **l)
            .count();
        // 5 sigma of a binomial(100000, 0.05) is ≈ 345 packets.
        assert!((lost as f64 - 5000.0).abs() < 345.0, "lost {lost}");
    }

    #[test]
    fn bursty_loss_keeps_ratio_and_makes_bursts() {
        let model = Loss::bursty(0.05, 10.0);
        assert!((model.expected_ratio() - 0.05).abs() < 1e-12);
        let outcomes = run(model, 200_000);
        let lost = outcomes.iter().filter(|l| **l).count();
        let ratio = lost as f64 / outcomes.len() as f64;
        assert!((ratio - 0.05).abs() < 0.01, "ratio {ratio}");
        let mut bursts = Vec::new();
        let mut current = 0;
        for &l in &outcomes {
            if l {
                current += 1;
            } else if current > 0 {
                bursts.push(current);
                current = 0;
            }
        }
        let mean_burst = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
        assert!((mean_burst - 10.0).abs() < 1.5, "mean burst {mean_burst}");
    }

    #[test]
    fn no_loss_loses_nothing_and_full_loss_loses_all() {
        assert!(run(Loss::None, 1000).iter().all(|l| !l));
        assert!(run(Loss::Random { p: 1.0 }, 1000).iter().all(|l| *l));
        assert!(Loss::Random { p: 1.5 }.validate().is_err());
    }
}
