//! Durable controller state in one redb file: policy versions, the last rule set published
//! per site, the agent registry and the decision history. A restarted controller loads it
//! and carries on with the same versions, so agents that already run them get nothing new.
//!
//! Values are JSON so the file stays readable across type changes. Policy versions and
//! published rule sets commit durably; agent acks and decisions commit without fsync (they
//! become durable with the next durable commit, and the audit log has them fsync'd anyway).

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{AckOutcome, LineRegistration, RuleSetId};

use crate::planning::DecisionRecord;

const POLICIES: TableDefinition<u64, &str> = TableDefinition::new("policy_versions");
const RULE_SETS: TableDefinition<&str, &str> = TableDefinition::new("rule_sets");
const AGENTS: TableDefinition<&str, &str> = TableDefinition::new("agents");
const DECISIONS: TableDefinition<u64, &str> = TableDefinition::new("decisions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The planner's line memory (see `Planning::memory_if_changed`), one JSON value.
const PLANNER_MEMORY: TableDefinition<&str, &str> = TableDefinition::new("planner_memory");
const PLANNER_MEMORY_KEY: &str = "memory";
/// Key in [`META`]: the policy version the stored rule sets were compiled from.
const RULE_SETS_POLICY: &str = "rule_sets_policy_version";

/// File name of the store inside the state directory.
pub const STORE_FILE: &str = "state.redb";

/// One version of the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub version: u64,
    /// The name the text was checked under (shown in diagnostics).
    pub file: String,
    pub text: String,
    pub by: String,
    pub at_ms: u64,
    pub changes: Vec<String>,
}

/// What the controller remembers about a site's agent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentRecord {
    pub site: String,
    pub agent_version: String,
    pub lines: Vec<LineRegistration>,
    pub registered_at_ms: u64,
    /// The last rule set the agent applied.
    pub applied: Option<RuleSetId>,
    /// The last ack that reported a failure, and for which rule set.
    pub failed: Option<FailedApply>,
}

/// An ack that said the agent could not apply a rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedApply {
    pub rule_set: RuleSetId,
    pub error: String,
    pub at_ms: u64,
}

impl AgentRecord {
    /// Folds an ack into the record.
    pub fn on_ack(&mut self, id: RuleSetId, outcome: &AckOutcome, at_ms: u64) {
        match outcome {
            AckOutcome::Applied => {
                self.applied = Some(id);
                self.failed = None;
            }
            AckOutcome::Failed { error } => {
                self.failed = Some(FailedApply {
                    rule_set: id,
                    error: error.clone(),
                    at_ms,
                });
            }
        }
    }
}

/// A store error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("state store: {what}: {message}")]
pub struct StoreError {
    what: &'static str,
    message: String,
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError {
        what,
        message: e.to_string(),
    }
}

/// Everything loaded at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub policies: Vec<PolicyVersion>,
    pub rule_sets: Vec<RuleSet>,
    pub agents: Vec<AgentRecord>,
    pub decisions: Vec<DecisionRecord>,
    /// The policy version the stored rule sets were compiled from (none in a store written
    /// before this was recorded).
    pub rule_sets_policy: Option<u64>,
    /// What the planner last wrote of its memory (opaque JSON).
    pub planner_memory: Option<String>,
}

/// The redb file; closed explicitly at shutdown so a successor can open it at once.
#[derive(Debug)]
pub struct Store {
    db: std::sync::Mutex<Option<Database>>,
}

impl Store {
    /// Opens or creates `dir/state.redb` with every table present.
    ///
    /// The file is owner-only (0600), also when an older controller left it wider: it holds
    /// the policy history and who changed what.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(STORE_FILE);
        crate::audit::create_owner_only(&path).map_err(err("open"))?;
        let db = Database::create(&path).map_err(err("open"))?;
        let txn = db.begin_write().map_err(err("create tables"))?;
        {
            txn.open_table(POLICIES).map_err(err("create tables"))?;
            txn.open_table(RULE_SETS).map_err(err("create tables"))?;
            txn.open_table(AGENTS).map_err(err("create tables"))?;
            txn.open_table(DECISIONS).map_err(err("create tables"))?;
            txn.open_table(META).map_err(err("create tables"))?;
            txn.open_table(PLANNER_MEMORY)
                .map_err(err("create tables"))?;
        }
        txn.commit().map_err(err("create tables"))?;
        Ok(Store {
            db: std::sync::Mutex::new(Some(db)),
        })
    }

    fn with_db<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.db.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError {
                what,
                message: "the store is closed".into(),
            }),
        }
    }

    /// Makes everything durable and releases the file.
    pub fn close(&self) -> Result<(), StoreError> {
        self.flush()?;
        self.db.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }

    /// Reads everything; `decisions` keeps at most the newest `max_decisions`.
    pub fn load(&self, max_decisions: usize) -> Result<Loaded, StoreError> {
        self.with_db("load", |db| {
            let txn = db.begin_read().map_err(err("load"))?;
            let mut loaded = Loaded::default();
            for row in txn
                .open_table(POLICIES)
                .map_err(err("load policies"))?
                .iter()
                .map_err(err("load policies"))?
            {
                let (_, value) = row.map_err(err("load policies"))?;
                loaded
                    .policies
                    .push(serde_json::from_str(value.value()).map_err(err("decode policy"))?);
            }
            for row in txn
                .open_table(RULE_SETS)
                .map_err(err("load rule sets"))?
                .iter()
                .map_err(err("load rule sets"))?
            {
                let (_, value) = row.map_err(err("load rule sets"))?;
                loaded
                    .rule_sets
                    .push(serde_json::from_str(value.value()).map_err(err("decode rule set"))?);
            }
            for row in txn
                .open_table(AGENTS)
                .map_err(err("load agents"))?
                .iter()
                .map_err(err("load agents"))?
            {
                let (_, value) = row.map_err(err("load agents"))?;
                loaded
                    .agents
                    .push(serde_json::from_str(value.value()).map_err(err("decode agent"))?);
            }
            let decisions = txn.open_table(DECISIONS).map_err(err("load decisions"))?;
            for row in decisions
                .iter()
                .map_err(err("load decisions"))?
                .rev()
                .take(max_decisions)
            {
                let (_, value) = row.map_err(err("load decisions"))?;
                loaded
                    .decisions
                    .push(serde_json::from_str(value.value()).map_err(err("decode decision"))?);
            }
            loaded.decisions.reverse();
            loaded.rule_sets_policy = txn
                .open_table(META)
                .map_err(err("load meta"))?
                .get(RULE_SETS_POLICY)
                .map_err(err("load meta"))?
                .map(|v| v.value());
            loaded.planner_memory = txn
                .open_table(PLANNER_MEMORY)
                .map_err(err("load planner memory"))?
                .get(PLANNER_MEMORY_KEY)
                .map_err(err("load planner memory"))?
                .map(|v| v.value().to_string());
            Ok(loaded)
        })
    }

    /// Records what one planning round published, durably, in one commit: the policy
    /// version it was planned under (when that version is new) and the rule sets, as (site,
    /// JSON), compiled from policy version `compiled_from`. A crash leaves either all of it
    /// or none, so a restarted controller never finds a policy beside rule sets compiled
    /// from another.
    pub fn save_published<'a>(
        &self,
        policy: Option<&PolicyVersion>,
        compiled_from: u64,
        rule_sets: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), StoreError> {
        self.with_db("save published", |db| {
            let txn = db.begin_write().map_err(err("save published"))?;
            {
                if let Some(policy) = policy {
                    let mut table = txn.open_table(POLICIES).map_err(err("save policy"))?;
                    let json = serde_json::to_string(policy).expect("policy versions serialise");
                    table
                        .insert(policy.version, json.as_str())
                        .map_err(err("save policy"))?;
                }
                let mut table = txn.open_table(RULE_SETS).map_err(err("save rule sets"))?;
                for (site, json) in rule_sets {
                    table.insert(site, json).map_err(err("save rule sets"))?;
                }
                let mut meta = txn.open_table(META).map_err(err("save published"))?;
                meta.insert(RULE_SETS_POLICY, compiled_from)
                    .map_err(err("save published"))?;
            }
            txn.commit().map_err(err("save published"))
        })
    }

    /// Fills in the change list of a recorded policy version, durably (worked out after the
    /// version was published; see `Controller::apply_policy`).
    pub fn set_policy_changes(&self, version: u64, changes: &[String]) -> Result<(), StoreError> {
        self.with_db("save policy changes", |db| {
            let txn = db.begin_write().map_err(err("save policy changes"))?;
            {
                let mut table = txn
                    .open_table(POLICIES)
                    .map_err(err("save policy changes"))?;
                let stored = table
                    .get(version)
                    .map_err(err("save policy changes"))?
                    .map(|v| v.value().to_string());
                let Some(stored) = stored else {
                    return Err(StoreError {
                        what: "save policy changes",
                        message: format!("no policy version {version}"),
                    });
                };
                let mut policy: PolicyVersion =
                    serde_json::from_str(&stored).map_err(err("decode policy"))?;
                policy.changes = changes.to_vec();
                let json = serde_json::to_string(&policy).expect("policy versions serialise");
                table
                    .insert(version, json.as_str())
                    .map_err(err("save policy changes"))?;
            }
            txn.commit().map_err(err("save policy changes"))
        })
    }

    /// Records agents' registry entries in one commit (without fsync).
    pub fn save_agents(&self, agents: &[AgentRecord]) -> Result<(), StoreError> {
        self.with_db("save agents", |db| {
            let mut txn = db.begin_write().map_err(err("save agents"))?;
            txn.set_durability(Durability::None)
                .map_err(err("save agents"))?;
            {
                let mut table = txn.open_table(AGENTS).map_err(err("save agents"))?;
                for agent in agents {
                    let json = serde_json::to_string(agent).expect("agent records serialise");
                    table
                        .insert(agent.site.as_str(), json.as_str())
                        .map_err(err("save agents"))?;
                }
            }
            txn.commit().map_err(err("save agents"))
        })
    }

    /// Records an agent's registry entry (without fsync).
    pub fn save_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        self.with_db("save agent", |db| {
            let mut txn = db.begin_write().map_err(err("save agent"))?;
            txn.set_durability(Durability::None)
                .map_err(err("save agent"))?;
            {
                let mut table = txn.open_table(AGENTS).map_err(err("save agent"))?;
                let json = serde_json::to_string(agent).expect("agent records serialise");
                table
                    .insert(agent.site.as_str(), json.as_str())
                    .map_err(err("save agent"))?;
            }
            txn.commit().map_err(err("save agent"))
        })
    }

    /// Replaces the planner's memory (without fsync; made durable at close).
    pub fn save_planner_memory(&self, json: &str) -> Result<(), StoreError> {
        self.with_db("save planner memory", |db| {
            let mut txn = db.begin_write().map_err(err("save planner memory"))?;
            txn.set_durability(Durability::None)
                .map_err(err("save planner memory"))?;
            {
                let mut table = txn
                    .open_table(PLANNER_MEMORY)
                    .map_err(err("save planner memory"))?;
                table
                    .insert(PLANNER_MEMORY_KEY, json)
                    .map_err(err("save planner memory"))?;
            }
            txn.commit().map_err(err("save planner memory"))
        })
    }

    /// Appends decisions after `next_seq` (without fsync); returns the next free sequence.
    pub fn save_decisions(
        &self,
        mut next_seq: u64,
        decisions: &[DecisionRecord],
    ) -> Result<u64, StoreError> {
        self.with_db("save decisions", |db| {
            let mut txn = db.begin_write().map_err(err("save decisions"))?;
            txn.set_durability(Durability::None)
                .map_err(err("save decisions"))?;
            {
                let mut table = txn.open_table(DECISIONS).map_err(err("save decisions"))?;
                for decision in decisions {
                    let json = serde_json::to_string(decision).expect("decisions serialise");
                    table
                        .insert(next_seq, json.as_str())
                        .map_err(err("save decisions"))?;
                    next_seq += 1;
                }
            }
            txn.commit().map_err(err("save decisions"))?;
            Ok(next_seq)
        })
    }

    /// The sequence number after the newest stored decision.
    pub fn next_decision_seq(&self) -> Result<u64, StoreError> {
        self.with_db("decision seq", |db| {
            let txn = db.begin_read().map_err(err("decision seq"))?;
            let table = txn.open_table(DECISIONS).map_err(err("decision seq"))?;
            let last = table.last().map_err(err("decision seq"))?;
            Ok(last.map_or(0, |(key, _)| key.value() + 1))
        })
    }

    /// Makes everything committed so far durable (call at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.with_db("flush", |db| {
            let txn = db.begin_write().map_err(err("flush"))?;
            txn.commit().map_err(err("flush"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let rule_set = RuleSet {
            site: "b1".into(),
            version: 4,
            hash: String::new(),
            classes: vec![],
            default_class: "default".into(),
            lines: vec![],
            routes: vec![],
        }
        .seal();
        {
            let store = Store::open(dir.path()).unwrap();
            let json = serde_json::to_string(&rule_set).unwrap();
            store
                .save_published(
                    Some(&PolicyVersion {
                        version: 1,
                        file: "p.yaml".into(),
                        text: "sites: []".into(),
                        by: "startup".into(),
                        at_ms: 5,
                        changes: vec![],
                    }),
                    1,
                    [("b1", json.as_str())],
                )
                .unwrap();
            let mut agent = AgentRecord {
                site: "b1".into(),
                ..AgentRecord::default()
            };
            agent.on_ack(RuleSetId::of(&rule_set), &AckOutcome::Applied, 9);
            store.save_agent(&agent).unwrap();
            let decision = DecisionRecord {
                at_ms: 1,
                site: "b1".into(),
                class: "voice".into(),
                destination: "*".into(),
                from_line: None,
                to_line: "mpls".into(),
                reason: "first placement".into(),
                measurements: serde_json::Value::Null,
            };
            let next = store
                .save_decisions(0, &[decision.clone(), decision])
                .unwrap();
            assert_eq!(next, 2);
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let loaded = store.load(1).unwrap();
        assert_eq!(loaded.policies[0].version, 1);
        assert_eq!(loaded.rule_sets, vec![rule_set.clone()]);
        assert_eq!(loaded.rule_sets_policy, Some(1));
        assert_eq!(loaded.agents[0].applied, Some(RuleSetId::of(&rule_set)));
        assert_eq!(
            loaded.decisions.len(),
            1,
            "only the newest decision is loaded"
        );
        assert_eq!(store.next_decision_seq().unwrap(), 2);
    }

    #[test]
    fn the_state_file_is_owner_only_even_when_left_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let mode = || std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(mode(), 0o600);
        store.close().unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(mode(), 0o600);
        store.close().unwrap();
    }
}
