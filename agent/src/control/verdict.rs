//! Whether to apply a pushed rule set. Pure: the site, what runs now, and the push in;
//! a verdict out. A push that fails any check is refused and the last good one keeps running.

use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::RuleSetId;

/// What to do with a pushed rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New and intact: apply it.
    Apply,
    /// Its content is what already runs: ack without touching the data plane.
    AlreadyRunning,
    /// Refuse it, for this reason.
    Refuse(String),
}

/// Judges a push for `site` while `running` is applied.
pub fn judge(site: &str, running: Option<&RuleSetId>, pushed: &RuleSet) -> Verdict {
    if pushed.site != site {
        return Verdict::Refuse(format!(
            "rule set is for site {}, this agent is {site}",
            pushed.site
        ));
    }
    if !pushed.is_sealed() {
        return Verdict::Refuse(format!(
            "rule set version {} fails its content hash (corrupted or tampered); keeping the last good one",
            pushed.version
        ));
    }
    match running {
        Some(running) if running.hash == pushed.hash => Verdict::AlreadyRunning,
        Some(running) if running.version >= pushed.version => Verdict::Refuse(format!(
            "rule set version {} is not newer than the running version {}",
            pushed.version, running.version
        )),
        _ => Verdict::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_set(version: u64, default_class: &str) -> RuleSet {
        RuleSet {
            site: "b1".into(),
            version,
            hash: String::new(),
            classes: vec![],
            default_class: default_class.into(),
            lines: vec![],
            routes: vec![],
        }
        .seal()
    }

    #[test]
    fn verdicts() {
        let v1 = rule_set(1, "default");
        let v2 = rule_set(2, "bulk");
        assert_eq!(judge("b1", None, &v1), Verdict::Apply);
        assert_eq!(judge("b1", Some(&RuleSetId::of(&v1)), &v2), Verdict::Apply);
        assert_eq!(
            judge("b1", Some(&RuleSetId::of(&v1)), &v1),
            Verdict::AlreadyRunning
        );
        assert!(matches!(judge("b2", None, &v1), Verdict::Refuse(_)));
        let mut tampered = v2.clone();
        tampered.default_class = "voice".into();
        match judge("b1", Some(&RuleSetId::of(&v1)), &tampered) {
            Verdict::Refuse(reason) => assert!(reason.contains("hash"), "{reason}"),
            other => panic!("tampered push accepted: {other:?}"),
        }
        let stale = rule_set(1, "voice");
        assert!(matches!(
            judge("b1", Some(&RuleSetId::of(&v2)), &stale),
            Verdict::Refuse(_)
        ));
    }
}
