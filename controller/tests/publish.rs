//! Publishing many sites at once: every site of a large plan gets version 1 with its
//! content hash (whether the planner sealed the rule set or not), the push channel carries
//! the JSON serialised once at publish time, and all of it is in the store after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use wansteer_controller::audit::Retention;
use wansteer_controller::auth::{TokenSource, TokensFile};
use wansteer_controller::planning::{Plan, Planning};
use wansteer_controller::service::{Controller, ControllerConfig};
use wansteer_policies::Policy;
use wansteer_wire::ruleset::{ClassRoute, LineSpec, RuleSet};
use wansteer_wire::session::Report;

const SITES: usize = 2_500;

fn policy() -> String {
    let mut text = String::from("sites:\n");
    for i in 0..SITES {
        text.push_str(&format!(
            "  - name: s{i}\n    kind: branch\n    lines:\n      - {{ name: inet, transport: internet, interface: wan0, gateway: 192.0.2.1, up: 50mbit, down: 50mbit }}\n"
        ));
    }
    text.push_str("classes:\n  - name: default\n    priority: 7\n");
    text
}

/// Test fixture: every site's one class on its one line, planned once; every other site's
/// rule set comes sealed, like the real planner's.
#[derive(Default)]
struct EverySiteOnce {
    policy: Option<Policy>,
    done: bool,
}

impl Planning for EverySiteOnce {
    fn on_policy(&mut self, policy: &Policy) {
        self.policy = Some(policy.clone());
    }
    fn on_report(&mut self, _report: &Report) {}
    fn plan(&mut self, _now_ms: u64) -> Plan {
        let Some(policy) = &self.policy else {
            return Plan::default();
        };
        if std::mem::replace(&mut self.done, true) {
            return Plan::default();
        }
        let mut rule_sets = BTreeMap::new();
        for (i, site) in policy.sites.iter().enumerate() {
            let rule_set = RuleSet {
                site: site.name.clone(),
                version: 0,
                hash: String::new(),
                classes: vec![],
                default_class: "default".into(),
                lines: vec![LineSpec {
                    name: "inet".into(),
                    interface: "wan0".into(),
                    gateway: site.lines[0].gateway,
                    gateway6: None,
                    rate_bps: 50_000_000,
                    shares: vec![],
                }],
                routes: vec![ClassRoute {
                    class: "default".into(),
                    destination: "0.0.0.0/0".parse().unwrap(),
                    primary: "inet".into(),
                    backups: vec![],
                    reason: format!("only line of {}", site.name),
                }],
            };
            let rule_set = if i % 2 == 0 {
                rule_set.seal()
            } else {
                rule_set
            };
            rule_sets.insert(site.name.clone(), rule_set);
        }
        Plan {
            rule_sets,
            decisions: vec![],
        }
    }
}

async fn start(dir: &std::path::Path) -> Controller {
    let config = ControllerConfig {
        state_dir: dir.to_path_buf(),
        policy_file: "policy.yaml".into(),
        policy_text: policy(),
        tokens: TokensFile::generate(["s0"]),
        token_source: TokenSource::Given,
        retention: Retention::default(),
        plan_interval: Duration::from_millis(10),
        report_interval: Duration::from_secs(1),
        metrics_public: false,
        check: Default::default(),
    };
    Controller::start(config, Box::new(EverySiteOnce::default()))
        .await
        .expect("controller starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_plan_is_published_whole_hashed_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start(dir.path()).await;
    controller.settle().await;
    let published = controller.published();
    assert_eq!(published.len(), SITES, "every site is published");
    for (site, rule_set) in &published {
        assert_eq!(rule_set.version, 1, "{site}");
        assert_eq!(rule_set.hash, rule_set.content_hash(), "{site}");
        assert!(rule_set.is_sealed(), "{site}");
    }
    // The push channel carries the rule set's JSON, made once.
    let channel = controller.subscribe("s1234");
    let pushed = channel.borrow().clone().expect("s1234 has a rule set");
    let decoded: RuleSet = serde_json::from_str(&pushed.json).unwrap();
    assert_eq!(&decoded, pushed.rule_set.as_ref());
    assert_eq!(decoded, *published["s1234"]);
    controller.close().unwrap();
    drop(controller);

    let controller = start(dir.path()).await;
    let reloaded = controller.published();
    assert_eq!(reloaded.len(), SITES, "every chunk was stored");
    for (site, rule_set) in &reloaded {
        assert_eq!(rule_set.as_ref(), published[site].as_ref(), "{site}");
    }
    controller.close().unwrap();
}
