//! What the planner remembers about lines beyond their latest measurement — flap-dampening
//! penalties, recovery hold-downs, SLA breach episodes — written out so a restarted
//! controller keeps it. Without it a restart forgets that a line flapped: a suppressed line
//! or one a class left after repeated SLA breaches would be offered again one hold-down after
//! the restart, and the class would move back onto it.
//!
//! Lines and classes are kept by name, so a memory written under one policy still reads
//! under the next (entries of lines or classes that no longer exist are dropped). Times are
//! wall-clock milliseconds, the planner's own time base.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Planner, SlaBreach};
use crate::graph::{At, LineHealth};

/// A penalty decayed below this is as good as none and not worth keeping.
const NEGLIGIBLE_PENALTY: f64 = 1.0;

/// The planner's line memory at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannerMemory {
    /// Wall-clock milliseconds when it was taken.
    pub at_ms: u64,
    pub lines: Vec<LineMemory>,
    pub sla_breaches: Vec<SlaBreachMemory>,
}

/// One line whose history still matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineMemory {
    pub site: String,
    pub line: String,
    pub health: LineHealth,
    /// When it last came back from down (its hold-down runs from there).
    pub recovered_at_ms: Option<u64>,
    /// Flap-dampening penalty as of `penalty_at_ms`.
    pub penalty: f64,
    pub penalty_at_ms: u64,
    pub suppressed: bool,
}

/// One line's SLA breach history for one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaBreachMemory {
    pub site: String,
    pub line: String,
    pub class: String,
    pub last_ms: u64,
    pub episodes: u32,
}

fn ms(at: At) -> u64 {
    at.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Planner {
    /// The line memory as of `now`, or `None` when nothing in it changed since the last
    /// call (so the caller need not write it again).
    pub fn memory_if_changed(&mut self, now: At) -> Option<PlannerMemory> {
        if !std::mem::take(&mut self.memory_changed) {
            return None;
        }
        Some(self.memory(now))
    }

    /// The line memory as of `now`: lines that are not up, are suppressed, still carry a
    /// penalty or are inside their recovery hold-down; SLA breaches recent enough to still
    /// delay a class's return or to count towards the next episode.
    pub fn memory(&self, now: At) -> PlannerMemory {
        let timers = self.graph.timers();
        let hold_down = timers.hold_down.0;
        let half_life = timers.dampening.half_life.0.as_secs_f64().max(1e-3);
        let cap = timers.dampening.max_suppress.0;
        let lines = self
            .graph
            .lines
            .iter()
            .filter(|line| {
                let elapsed = now.saturating_sub(line.penalty_at).as_secs_f64();
                let penalty = line.penalty * 0.5f64.powf(elapsed / half_life);
                line.health != LineHealth::Up
                    || line.suppressed
                    || penalty >= NEGLIGIBLE_PENALTY
                    || line
                        .recovered_at
                        .is_some_and(|at| now.saturating_sub(at) < hold_down)
            })
            .map(|line| LineMemory {
                site: self.graph.sites[line.site as usize].name.clone(),
                line: line.name.clone(),
                health: line.health,
                recovered_at_ms: line.recovered_at.map(ms),
                penalty: line.penalty,
                penalty_at_ms: ms(line.penalty_at),
                suppressed: line.suppressed,
            })
            .collect();
        let mut sla_breaches: Vec<SlaBreachMemory> = self
            .sla_breaches
            .iter()
            .filter(|(_, breach)| {
                now.saturating_sub(breach.last) <= breach.wait(hold_down, cap).saturating_mul(10)
            })
            .map(|(&(line, class), breach)| {
                let state = self.graph.line(line);
                SlaBreachMemory {
                    site: self.graph.sites[state.site as usize].name.clone(),
                    line: state.name.clone(),
                    class: self.classes[class].name.clone(),
                    last_ms: ms(breach.last),
                    episodes: breach.episodes,
                }
            })
            .collect();
        // A stable order, so the same memory is written the same way.
        sla_breaches
            .sort_by(|a, b| (&a.site, &a.line, &a.class).cmp(&(&b.site, &b.line, &b.class)));
        PlannerMemory {
            at_ms: ms(now),
            lines,
            sla_breaches,
        }
    }

    /// Takes back a memory written by an earlier process (after [`Planner::resume`], before
    /// the first plan). Lines and classes the policy no longer has are skipped; what is
    /// taken back schedules the re-solves its timers need (end of hold-down, reuse of a
    /// suppressed line, end of an SLA wait is found when the class is next ordered).
    pub fn restore_memory(&mut self, memory: &PlannerMemory) {
        for remembered in &memory.lines {
            let Some(id) = self.graph.line_id(&remembered.site, &remembered.line) else {
                continue;
            };
            if !remembered.penalty.is_finite() || remembered.penalty < 0.0 {
                continue;
            }
            let line = &mut self.graph.lines[id as usize];
            line.health = remembered.health;
            line.recovered_at = remembered.recovered_at_ms.map(Duration::from_millis);
            line.penalty = remembered.penalty;
            line.penalty_at = Duration::from_millis(remembered.penalty_at_ms);
            line.suppressed = remembered.suppressed;
            for at in [self.graph.settles_at(id), self.graph.reuse_at(id)]
                .into_iter()
                .flatten()
            {
                self.line_revisits.entry(at).or_default().insert(id);
            }
            self.dirty_lines.insert(id);
        }
        for remembered in &memory.sla_breaches {
            let Some(line) = self.graph.line_id(&remembered.site, &remembered.line) else {
                continue;
            };
            let Some(class) = self.classes.iter().position(|c| c.name == remembered.class) else {
                continue;
            };
            let breach = SlaBreach {
                last: Duration::from_millis(remembered.last_ms),
                episodes: remembered.episodes.clamp(1, 16),
            };
            self.sla_breaches
                .entry((line, class))
                .and_modify(|kept| {
                    kept.last = kept.last.max(breach.last);
                    kept.episodes = kept.episodes.max(breach.episodes);
                })
                .or_insert(breach);
        }
    }
}
