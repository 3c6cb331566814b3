//! Drift: whether a site's agent runs the rule set the controller publishes for it.

use serde::Serialize;
use wansteer_wire::session::RuleSetId;

use crate::store::AgentRecord;

/// How an agent stands against its published rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    /// The agent acked the published version as applied.
    InSync,
    /// The agent runs an older version, or none yet (a push is on its way or it is offline).
    Behind,
    /// The agent tried the published version and could not apply it.
    Failed,
    /// Nothing is published for the site yet.
    NoRuleSet,
    /// No agent has registered for the site.
    NeverConnected,
}

impl Drift {
    /// True when the agent should be running something it is not.
    pub fn is_drift(self) -> bool {
        matches!(self, Drift::Behind | Drift::Failed)
    }
}

/// Classifies an agent against what is published for its site. Matching is by content
/// hash: an agent whose hash equals the published one runs it, whatever version it calls it.
pub fn drift(published: Option<&RuleSetId>, agent: Option<&AgentRecord>) -> Drift {
    let Some(agent) = agent else {
        return Drift::NeverConnected;
    };
    let Some(published) = published else {
        return Drift::NoRuleSet;
    };
    if agent
        .failed
        .as_ref()
        .is_some_and(|failed| failed.rule_set.hash == published.hash)
    {
        return Drift::Failed;
    }
    match &agent.applied {
        Some(applied) if applied.hash == published.hash => Drift::InSync,
        _ => Drift::Behind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wansteer_wire::session::AckOutcome;

    fn id(version: u64, hash: &str) -> RuleSetId {
        RuleSetId {
            version,
            hash: hash.into(),
        }
    }

    #[test]
    fn agent_states_against_published() {
        let v2 = id(2, "bb");
        assert_eq!(drift(Some(&v2), None), Drift::NeverConnected);
        let mut agent = AgentRecord::default();
        assert_eq!(drift(None, Some(&agent)), Drift::NoRuleSet);
        assert_eq!(drift(Some(&v2), Some(&agent)), Drift::Behind);
        agent.on_ack(id(1, "aa"), &AckOutcome::Applied, 0);
        assert_eq!(drift(Some(&v2), Some(&agent)), Drift::Behind);
        agent.on_ack(
            v2.clone(),
            &AckOutcome::Failed {
                error: "nft: syntax".into(),
            },
            1,
        );
        assert_eq!(drift(Some(&v2), Some(&agent)), Drift::Failed);
        assert!(Drift::Failed.is_drift());
        agent.on_ack(v2.clone(), &AckOutcome::Applied, 2);
        assert_eq!(drift(Some(&v2), Some(&agent)), Drift::InSync);
        assert!(!Drift::InSync.is_drift());
        // A newer version that failed before says nothing about the next one.
        assert_eq!(drift(Some(&id(3, "cc")), Some(&agent)), Drift::Behind);
    }
}
