//! Standalone per-class steering: which line each traffic class uses, decided from the
//! per-(line, class) health the probes report. Pure: health and time in, moves out.
//!
//! - A class whose line breaks its SLA (`Degraded`) or dies (`Down`) moves at once to the
//!   first line in its order that is `Up` for that class. When no line meets the SLA it
//!   moves only to a line whose SLA score is better by the policy's `min_improvement`.
//! - A class away from its preferred line moves back when a better-placed line is `Up`
//!   again (the health machine already held it down) and the class's last move is at
//!   least the policy's hold-down ago, so a flapping line cannot swing a class around.
//! - Lines the data plane routes around after an outage (local failover) are never picked.
//!
//! Every move carries its reason as data and renders as one line
//! (`voice mpls→inet: loss 5.2% [3.9%, 6.8%] > 1% over 2.0 s`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use wansteer_wire::report::{HealthReason, HealthState};

/// Health of one line for one class's SLA, as the steering needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineClassHealth {
    pub state: HealthState,
    /// The reasons of the transition into `state` (empty before any transition).
    pub reasons: Vec<HealthReason>,
    /// How far the line is from the SLA: the worst of measured/limit over loss, RTT and
    /// jitter (below 1 meets it). `None` before the first summary.
    pub score: Option<f64>,
}

impl Default for LineClassHealth {
    fn default() -> Self {
        LineClassHealth {
            state: HealthState::Up,
            reasons: Vec::new(),
            score: None,
        }
    }
}

/// Health by (line, SLA name). Missing entries count as `Up` with no evidence.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard {
    entries: BTreeMap<(String, String), LineClassHealth>,
}

impl HealthBoard {
    pub fn get(&self, line: &str, sla: &str) -> LineClassHealth {
        self.entries
            .get(&(line.to_string(), sla.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_state(
        &mut self,
        line: &str,
        sla: &str,
        state: HealthState,
        reasons: Vec<HealthReason>,
    ) {
        let entry = self
            .entries
            .entry((line.to_string(), sla.to_string()))
            .or_default();
        entry.state = state;
        entry.reasons = reasons;
    }

    pub fn set_score(&mut self, line: &str, sla: &str, score: f64) {
        self.entries
            .entry((line.to_string(), sla.to_string()))
            .or_default()
            .score = Some(score);
    }
}

/// Where a class may go: its SLA name on the health board and its allowed lines, best
/// first (the policy's order, `never` lines left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassLines {
    pub class: String,
    pub sla: String,
    pub order: Vec<String>,
}

/// Why a class moved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum MoveReason {
    /// The line the class used broke its SLA or died.
    Degraded {
        state: HealthState,
        reasons: Vec<HealthReason>,
    },
    /// No line meets the SLA; the new one is clearly less bad.
    LessBad { from_score: f64, to_score: f64 },
    /// A more preferred line meets the SLA again and the hold-down has passed.
    FailBack { held_ms: u64 },
}

/// One decision: move `class` from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    pub class: String,
    pub from: String,
    pub to: String,
    pub reason: MoveReason,
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}→{}: ", self.class, self.from, self.to)?;
        match &self.reason {
            MoveReason::Degraded { state, reasons } => {
                if reasons.is_empty() {
                    write!(f, "{} is {state}", self.from)?;
                }
                for (i, reason) in reasons.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{reason}")?;
                }
                Ok(())
            }
            MoveReason::LessBad {
                from_score,
                to_score,
            } => write!(
                f,
                "no line meets the SLA; {} is at {:.1}× the limit, {} at {:.1}×",
                self.from, from_score, self.to, to_score
            ),
            MoveReason::FailBack { held_ms } => write!(
                f,
                "{} meets the SLA again; back to the preferred line after {:.1} s on {}",
                self.to,
                *held_ms as f64 / 1000.0,
                self.from
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct ClassState {
    lines: ClassLines,
    /// The line put first in the class's routes.
    chosen: String,
    last_move: Option<Instant>,
}

/// The steering state of one site: the chosen line per class.
#[derive(Debug, Clone)]
pub struct Steering {
    classes: Vec<ClassState>,
    hold_down: Duration,
    min_improvement: f64,
}

impl Steering {
    /// Every class starts on its most preferred line. `min_improvement` is a fraction.
    pub fn new(classes: Vec<ClassLines>, hold_down: Duration, min_improvement: f64) -> Self {
        Steering {
            classes: classes
                .into_iter()
                .filter(|c| !c.order.is_empty())
                .map(|lines| ClassState {
                    chosen: lines.order[0].clone(),
                    lines,
                    last_move: None,
                })
                .collect(),
            hold_down,
            min_improvement,
        }
    }

    /// The line each class is put on first (before local failover), by class.
    pub fn chosen(&self) -> BTreeMap<String, String> {
        self.classes
            .iter()
            .map(|c| (c.lines.class.clone(), c.chosen.clone()))
            .collect()
    }

    /// The class's line order as routes should carry it: chosen first, then the rest.
    pub fn route_order(&self, class: &str) -> Option<Vec<String>> {
        let state = self.classes.iter().find(|c| c.lines.class == class)?;
        let mut order = vec![state.chosen.clone()];
        order.extend(
            state
                .lines
                .order
                .iter()
                .filter(|l| **l != state.chosen)
                .cloned(),
        );
        Some(order)
    }

    /// The line a class's traffic takes now: the chosen line unless it is avoided, else
    /// the first line after it that is not.
    pub fn effective(&self, class: &str, avoided: &BTreeSet<String>) -> Option<String> {
        self.route_order(class)?
            .into_iter()
            .find(|l| !avoided.contains(l))
    }

    /// Classes whose chosen line is routed around (local failover) and not `Up` for their
    /// SLA take the line they are on now as their chosen one; returns those classes.
    ///
    /// Without this the chosen line stays first in the routes, so the data plane's own
    /// fail-back (which only knows the line answers again) would put the class straight
    /// back on a line its SLA does not accept yet — and the next decision would move it
    /// off again: two moves for one recovery. Pinned, the class returns by an ordinary
    /// fail-back once its own SLA is `Up` there. No traffic moves now.
    pub fn pin_failed_over(
        &mut self,
        board: &HealthBoard,
        avoided: &BTreeSet<String>,
    ) -> Vec<String> {
        let mut pinned = Vec::new();
        for index in 0..self.classes.len() {
            let class = &self.classes[index];
            if !avoided.contains(&class.chosen)
                || board.get(&class.chosen, &class.lines.sla).state == HealthState::Up
            {
                continue;
            }
            let Some(effective) = self.effective(&class.lines.class, avoided) else {
                continue;
            };
            let class = &mut self.classes[index];
            class.chosen = effective;
            pinned.push(class.lines.class.clone());
        }
        pinned
    }

    /// Decides the moves due at `now` and records them as done.
    pub fn decide(
        &mut self,
        board: &HealthBoard,
        avoided: &BTreeSet<String>,
        now: Instant,
    ) -> Vec<Move> {
        let mut moves = Vec::new();
        let hold_down = self.hold_down;
        let min_improvement = self.min_improvement;
        for index in 0..self.classes.len() {
            let class = &self.classes[index];
            let Some(effective) = self.effective(&class.lines.class, avoided) else {
                continue;
            };
            let health = |line: &str| board.get(line, &class.lines.sla);
            let usable: Vec<&String> = class
                .lines
                .order
                .iter()
                .filter(|l| !avoided.contains(*l))
                .collect();
            let here = health(&effective);
            let decision = if here.state != HealthState::Up {
                let healthy = usable
                    .iter()
                    .find(|l| ***l != effective && health(l).state == HealthState::Up);
                match healthy {
                    Some(to) => Some((
                        (*to).clone(),
                        MoveReason::Degraded {
                            state: here.state,
                            reasons: here.reasons.clone(),
                        },
                    )),
                    None => {
                        let from_score = here.score.unwrap_or(f64::INFINITY);
                        usable
                            .iter()
                            .filter(|l| ***l != effective && health(l).state != HealthState::Down)
                            .filter_map(|l| health(l).score.map(|s| (*l, s)))
                            .filter(|(_, s)| *s < from_score * (1.0 - min_improvement))
                            .min_by(|a, b| a.1.total_cmp(&b.1))
                            .map(|(to, to_score)| {
                                (
                                    to.clone(),
                                    MoveReason::LessBad {
                                        from_score,
                                        to_score,
                                    },
                                )
                            })
                    }
                }
            } else {
                let rank = |line: &str| class.lines.order.iter().position(|l| l == line);
                let settled = class
                    .last_move
                    .is_none_or(|at| now.duration_since(at) >= hold_down);
                let better = usable
                    .iter()
                    .take_while(|l| rank(l) < rank(&effective))
                    .find(|l| health(l).state == HealthState::Up);
                match better {
                    Some(to) if settled => Some((
                        (*to).clone(),
                        MoveReason::FailBack {
                            held_ms: class
                                .last_move
                                .map_or(0, |at| now.duration_since(at).as_millis() as u64),
                        },
                    )),
                    _ => None,
                }
            };
            if let Some((to, reason)) = decision {
                let class = &mut self.classes[index];
                moves.push(Move {
                    class: class.lines.class.clone(),
                    from: effective,
                    to: to.clone(),
                    reason,
                });
                class.chosen = to;
                class.last_move = Some(now);
            }
        }
        moves
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wansteer_wire::report::LossEstimate;

    fn voice() -> ClassLines {
        ClassLines {
            class: "voice".into(),
            sla: "voice".into(),
            order: vec!["mpls".into(), "inet".into(), "lte".into()],
        }
    }

    fn loss_reason(ratio: f64) -> HealthReason {
        HealthReason::Loss {
            window_ms: 2000,
            probes: 40,
            estimate: LossEstimate {
                ratio,
                lower: ratio * 0.7,
                upper: ratio * 1.3,
            },
            limit: 0.01,
            breached: true,
        }
    }

    fn steering() -> Steering {
        Steering::new(vec![voice()], Duration::from_secs(10), 0.1)
    }

    #[test]
    fn a_class_stays_on_its_preferred_line_while_it_is_healthy() {
        let mut steering = steering();
        let board = HealthBoard::default();
        assert!(
            steering
                .decide(&board, &BTreeSet::new(), Instant::now())
                .is_empty()
        );
        assert_eq!(steering.chosen()["voice"], "mpls");
    }

    #[test]
    fn voice_leaves_a_lossy_line_for_the_next_healthy_one_with_the_reason() {
        let mut steering = steering();
        let mut board = HealthBoard::default();
        board.set_state(
            "mpls",
            "voice",
            HealthState::Degraded,
            vec![loss_reason(0.052)],
        );
        let moves = steering.decide(&board, &BTreeSet::new(), Instant::now());
        assert_eq!(moves.len(), 1);
        assert_eq!(
            (moves[0].from.as_str(), moves[0].to.as_str()),
            ("mpls", "inet")
        );
        assert!(
            moves[0]
                .to_string()
                .starts_with("voice mpls→inet: loss 5.2% ["),
            "{}",
            moves[0]
        );
        assert_eq!(
            steering.route_order("voice").unwrap(),
            ["inet", "mpls", "lte"]
        );
    }

    #[test]
    fn a_degraded_next_line_is_skipped() {
        let mut steering = steering();
        let mut board = HealthBoard::default();
        board.set_state("mpls", "voice", HealthState::Degraded, vec![]);
        board.set_state("inet", "voice", HealthState::Degraded, vec![]);
        let moves = steering.decide(&board, &BTreeSet::new(), Instant::now());
        assert_eq!(moves[0].to, "lte");
    }

    #[test]
    fn when_no_line_meets_the_sla_only_a_clear_improvement_moves_the_class() {
        let mut steering = steering();
        let mut board = HealthBoard::default();
        for line in ["mpls", "inet", "lte"] {
            board.set_state(line, "voice", HealthState::Degraded, vec![]);
        }
        board.set_score("mpls", "voice", 3.0);
        board.set_score("inet", "voice", 2.9);
        board.set_score("lte", "voice", 2.8);
        let now = Instant::now();
        assert!(
            steering.decide(&board, &BTreeSet::new(), now).is_empty(),
            "2.8 is not 10% better than 3.0"
        );
        board.set_score("lte", "voice", 1.5);
        let moves = steering.decide(&board, &BTreeSet::new(), now);
        assert_eq!(moves[0].to, "lte");
        assert!(matches!(moves[0].reason, MoveReason::LessBad { .. }));
    }

    #[test]
    fn fail_back_waits_for_the_hold_down_since_the_last_move() {
        let mut steering = steering();
        let mut board = HealthBoard::default();
        let start = Instant::now();
        board.set_state("mpls", "voice", HealthState::Degraded, vec![]);
        assert_eq!(steering.decide(&board, &BTreeSet::new(), start).len(), 1);
        board.set_state("mpls", "voice", HealthState::Up, vec![]);
        assert!(
            steering
                .decide(&board, &BTreeSet::new(), start + Duration::from_secs(9))
                .is_empty(),
            "inside the hold-down"
        );
        let moves = steering.decide(&board, &BTreeSet::new(), start + Duration::from_secs(10));
        assert_eq!(
            (moves[0].from.as_str(), moves[0].to.as_str()),
            ("inet", "mpls")
        );
        assert!(matches!(
            moves[0].reason,
            MoveReason::FailBack { held_ms: 10_000 }
        ));
    }

    #[test]
    fn an_avoided_line_is_never_chosen_and_its_outage_is_already_handled() {
        let mut steering = steering();
        let mut board = HealthBoard::default();
        board.set_state("mpls", "voice", HealthState::Down, vec![]);
        let avoided: BTreeSet<String> = ["mpls".to_string()].into();
        assert_eq!(steering.effective("voice", &avoided).unwrap(), "inet");
        // The data plane already moved voice to inet; inet is healthy, nothing to do.
        assert!(steering.decide(&board, &avoided, Instant::now()).is_empty());
        board.set_state("inet", "voice", HealthState::Degraded, vec![]);
        let moves = steering.decide(&board, &avoided, Instant::now());
        assert_eq!(
            (moves[0].from.as_str(), moves[0].to.as_str()),
            ("inet", "lte")
        );
    }

    #[test]
    fn after_a_failover_the_class_returns_once_when_its_own_sla_is_up_again() {
        let mut steering = steering();
        let mut board = HealthBoard::default();
        let start = Instant::now();
        let mut avoided: BTreeSet<String> = BTreeSet::new();
        // mpls dies: the data plane routes around it; voice's machine says Down.
        board.set_state("mpls", "voice", HealthState::Down, vec![]);
        avoided.insert("mpls".into());
        assert_eq!(steering.pin_failed_over(&board, &avoided), ["voice"]);
        assert!(steering.decide(&board, &avoided, start).is_empty());
        assert_eq!(
            steering.route_order("voice").unwrap(),
            ["inet", "mpls", "lte"]
        );
        // mpls answers again; the line is proven for the data plane (which fails back),
        // but voice's stricter SLA still holds it Degraded: voice stays where it is.
        board.set_state("mpls", "voice", HealthState::Degraded, vec![]);
        avoided.clear();
        let later = start + Duration::from_secs(20);
        assert!(steering.pin_failed_over(&board, &avoided).is_empty());
        assert!(steering.decide(&board, &avoided, later).is_empty());
        assert_eq!(steering.effective("voice", &avoided).unwrap(), "inet");
        // Voice's SLA is met on mpls: one move back, and nothing after it.
        board.set_state("mpls", "voice", HealthState::Up, vec![]);
        let moves = steering.decide(&board, &avoided, later);
        assert_eq!(moves.len(), 1);
        assert_eq!(
            (moves[0].from.as_str(), moves[0].to.as_str()),
            ("inet", "mpls")
        );
        assert!(
            steering
                .decide(&board, &avoided, later + Duration::from_secs(30))
                .is_empty()
        );
    }

    #[test]
    fn a_failed_over_class_whose_line_is_up_for_it_is_not_pinned() {
        let mut steering = steering();
        let board = HealthBoard::default();
        let avoided: BTreeSet<String> = ["mpls".to_string()].into();
        assert!(steering.pin_failed_over(&board, &avoided).is_empty());
        assert_eq!(steering.chosen()["voice"], "mpls");
    }
}
