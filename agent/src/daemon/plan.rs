//! What the composed agent runs for its site, worked out from the policy alone (pure):
//! one prober per WAN line (target, SLA classes, timers), the steering groups (a class and
//! the destinations that share one line order) and the rule set they start from.
//!
//! Probe target: the line's `reflector` (`address[:port]`) when the policy gives one, else
//! the line's gateway at UDP 862 (STAMP). In the lab the gateway is the far router's address
//! on the line's own segment, where the far agent's reflector answers; a real deployment
//! whose gateway is a provider router names the far agent's address as `reflector`.
//! Probe interval: the line's `probe_interval`, else `timers.probe_interval`.
//!
//! Hubs: a hub reaches each branch over that branch's own lines. A hub line with `site: X`
//! (or, without it, named `<X>-<name>` as the lab names them: `br1-mpls`) carries only
//! traffic to site `X`; routes to that site use only those lines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use wansteer_policies::model::Policy;
use wansteer_probes::health::Dampening;
use wansteer_probes::{HealthConfig, MonitorConfig, Sla, TrackerConfig};
use wansteer_wire::report::HealthState;
use wansteer_wire::ruleset::RuleSet;

use super::steering::ClassLines;

/// STAMP's well-known port.
pub const STAMP_PORT: u16 = 862;

/// The SLA every line is judged by, whatever the classes: reachability. Its `Down` is the
/// line's outage; classes without an SLA of their own follow it.
pub const LINE_SLA: &str = "line";

/// One line's prober.
#[derive(Debug, Clone)]
pub struct LineProbe {
    pub line: String,
    pub interface: String,
    pub reflector: SocketAddr,
    pub monitor: MonitorConfig,
}

/// A class and the destinations that share one line order.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerGroup {
    pub lines: ClassLines,
    pub destinations: Vec<IpNet>,
}

/// Everything the daemon runs for one site.
#[derive(Debug, Clone)]
pub struct SitePlan {
    pub site: String,
    pub probes: Vec<LineProbe>,
    pub groups: Vec<SteerGroup>,
    /// SLA limits by SLA name (for scores).
    pub slas: BTreeMap<String, Sla>,
    pub hold_down: Duration,
    pub min_improvement: f64,
}

/// Builds the site plan and restricts `ruleset`'s hub routes to the lines that reach each
/// destination. `long_window` overrides the probes' long (recovery) window.
pub fn plan_site(
    policy: &Policy,
    site: &str,
    ruleset: &mut RuleSet,
    long_window: Option<Duration>,
) -> Result<SitePlan, String> {
    let here = policy
        .site(site)
        .ok_or_else(|| format!("the policy has no site `{site}`"))?;
    let timers = &policy.timers;

    let mut slas = BTreeMap::new();
    slas.insert(LINE_SLA.to_string(), Sla::loss_only(LINE_SLA, 0.5));
    for class in &policy.classes {
        if let Some(sla) = &class.sla {
            slas.insert(
                class.name.clone(),
                Sla {
                    name: class.name.clone(),
                    loss_limit: sla.loss.map_or(0.5, |p| p.fraction().clamp(1e-6, 0.99)),
                    // The policy's latency is one-way; probes measure the round trip.
                    rtt_limit: sla.latency.map(|l| l.0 * 2),
                    jitter_limit: sla.jitter.map(|j| j.0),
                    // The probes' default: the short window trips only on gross loss, the
                    // long window judges the fine SLA (DESIGN §4).
                    fast_loss_factor: None,
                },
            );
        }
    }
    let d = &timers.dampening;
    let health = HealthConfig {
        outage_probes: timers.down_after_missed.max(1),
        hold_down: timers.hold_down.0,
        dampening: Dampening {
            penalty_per_flap: f64::from(d.penalty),
            half_life: d.half_life.0,
            suppress: f64::from(d.suppress),
            reuse: f64::from(d.reuse),
            max_suppress: d.max_suppress.0,
        },
        // The data plane starts using every line; a dead one is found within the outage
        // timer, so starting optimistic moves nothing needlessly.
        initial: HealthState::Up,
        ..HealthConfig::default()
    };
    let mut tracker = TrackerConfig::default();
    if let Some(window) = long_window {
        tracker.long_window = window.max(tracker.short_window);
    }

    let mut probes = Vec::new();
    for line in &here.lines {
        let gateway = line.gateway.or(line.gateway6.map(Into::into));
        let Some(reflector) = line
            .reflector
            .map(|r| r.socket_addr())
            .or(gateway.map(|g| SocketAddr::new(g, STAMP_PORT)))
        else {
            return Err(format!(
                "line `{}` has no reflector or gateway to probe; give it `reflector:` or `gateway:`",
                line.name
            ));
        };
        let mut monitor = MonitorConfig::new(&line.name);
        monitor.interval = line.probe_interval.unwrap_or(timers.probe_interval).0;
        monitor.tracker = tracker.clone();
        monitor.health = health.clone();
        // The silence an outage also needs: about the missed probes' span, so it does not
        // slow down a fast probe rate, but at least 100 ms, so a jump in delay (answers
        // still coming, just later) is not taken for a dead line.
        monitor.health.min_silence =
            (monitor.interval * monitor.health.outage_probes.saturating_sub(1)).clamp(
                Duration::from_millis(100),
                HealthConfig::default().min_silence,
            );
        monitor.slas = slas.values().cloned().collect();
        monitor
            .validate()
            .map_err(|e| format!("line {}: {e}", line.name))?;
        probes.push(LineProbe {
            line: line.name.clone(),
            interface: line.interface.clone(),
            reflector,
            monitor,
        });
    }

    let reach = HubReach::new(policy, site);
    let site_of = |destination: &IpNet| reach.site_of(destination);
    let mut groups: Vec<SteerGroup> = Vec::new();
    for route in &mut ruleset.routes {
        let mut order = vec![route.primary.clone()];
        order.extend(route.backups.iter().cloned());
        reach.restrict(&route.destination, &mut order);
        if order.is_empty() {
            route.primary.clear();
            continue;
        }
        route.primary = order[0].clone();
        route.backups = order[1..].to_vec();
        let sla = if slas.contains_key(&route.class) {
            route.class.clone()
        } else {
            LINE_SLA.to_string()
        };
        match groups
            .iter_mut()
            .find(|g| g.lines.class == route.class && g.lines.order == order)
        {
            Some(group) => group.destinations.push(route.destination),
            None => groups.push(SteerGroup {
                lines: ClassLines {
                    class: route.class.clone(),
                    sla,
                    order,
                },
                destinations: vec![route.destination],
            }),
        }
    }
    ruleset.routes.retain(|r| !r.primary.is_empty());
    // A class with several groups (a hub) names each by its destination site.
    let counts: BTreeMap<String, usize> = groups.iter().fold(BTreeMap::new(), |mut counts, g| {
        *counts.entry(g.lines.class.clone()).or_default() += 1;
        counts
    });
    for group in &mut groups {
        if counts[&group.lines.class] > 1 {
            let sites: Vec<String> =
                group
                    .destinations
                    .iter()
                    .filter_map(site_of)
                    .fold(Vec::new(), |mut v, s| {
                        if !v.contains(&s) {
                            v.push(s);
                        }
                        v
                    });
            group.lines.class = format!("{}→{}", group.lines.class, sites.join(","));
        }
    }
    Ok(SitePlan {
        site: site.to_string(),
        probes,
        groups,
        slas,
        hold_down: timers.hold_down.0,
        min_improvement: timers.min_improvement.fraction(),
    })
}

/// Which remote site each line of a site reaches only (hub lines: `site: X`, or named
/// `<X>-<name>`), and which site each destination prefix belongs to.
#[derive(Debug, Clone, Default)]
pub struct HubReach {
    /// Line → the site it reaches only.
    reaches: BTreeMap<String, String>,
    /// Every site's LAN prefixes.
    lans: Vec<(String, Vec<IpNet>)>,
}

impl HubReach {
    pub fn new(policy: &Policy, site: &str) -> HubReach {
        let mut reaches = BTreeMap::new();
        if let Some(here) = policy.site(site) {
            for line in &here.lines {
                let far = line.site.clone().or_else(|| {
                    policy
                        .sites
                        .iter()
                        .map(|s| s.name.as_str())
                        .find(|s| *s != site && line.name.starts_with(&format!("{s}-")))
                        .map(str::to_string)
                });
                if let Some(far) = far {
                    reaches.insert(line.name.clone(), far);
                }
            }
        }
        HubReach {
            reaches,
            lans: policy
                .sites
                .iter()
                .map(|s| (s.name.clone(), s.lan.clone()))
                .collect(),
        }
    }

    /// The site whose LAN holds `destination`.
    pub fn site_of(&self, destination: &IpNet) -> Option<String> {
        self.lans
            .iter()
            .find(|(_, lans)| lans.iter().any(|lan| lan.contains(destination)))
            .map(|(site, _)| site.clone())
    }

    /// Keeps only the lines of `order` that reach `destination`'s site, when some line of
    /// this site is dedicated to it; empties `order` when none of its lines does.
    pub fn restrict(&self, destination: &IpNet, order: &mut Vec<String>) {
        let Some(dest) = self.site_of(destination) else {
            return;
        };
        let to_dest = |l: &String| self.reaches.get(l) == Some(&dest);
        if order.iter().any(to_dest) {
            order.retain(to_dest);
        } else if self.reaches.values().any(|s| *s == dest) {
            // This hub reaches `dest` over lines the class may not use at all.
            order.clear();
        }
    }

    /// Restricts every route of `ruleset` (a controller's) to the lines that reach its
    /// destination; routes left with no line are dropped. Returns how many routes changed.
    pub fn restrict_ruleset(&self, ruleset: &mut RuleSet) -> usize {
        let mut changed = 0;
        ruleset.routes.retain_mut(|route| {
            let mut order = vec![route.primary.clone()];
            order.extend(route.backups.iter().cloned());
            let before = order.clone();
            self.restrict(&route.destination, &mut order);
            if order != before {
                changed += 1;
            }
            let Some((primary, backups)) = order.split_first() else {
                return false;
            };
            route.primary = primary.clone();
            route.backups = backups.to_vec();
            true
        });
        changed
    }
}

/// Puts each group's chosen order into the rule set's routes.
pub fn steer_routes(
    ruleset: &mut RuleSet,
    groups: &[SteerGroup],
    orders: &BTreeMap<String, Vec<String>>,
) {
    for group in groups {
        let Some(order) = orders.get(&group.lines.class) else {
            continue;
        };
        let class = group
            .lines
            .class
            .split('→')
            .next()
            .unwrap_or(&group.lines.class);
        for route in &mut ruleset.routes {
            if route.class == class && group.destinations.contains(&route.destination) {
                route.primary = order[0].clone();
                route.backups = order[1..].to_vec();
            }
        }
    }
}

/// How far a line is from an SLA: the worst of measured/limit (below 1 meets it).
pub fn sla_score(sla: &Sla, summary: &wansteer_wire::report::LineSummary) -> f64 {
    let w = &summary.short;
    let mut score = w.loss.ratio / sla.loss_limit;
    if let (Some(limit), Some(rtt)) = (sla.rtt_limit, &w.rtt_ms) {
        score = score.max(rtt.p50 / (limit.as_secs_f64() * 1000.0));
    }
    if let (Some(limit), Some(jitter)) = (sla.jitter_limit, w.jitter_ms) {
        score = score.max(jitter / (limit.as_secs_f64() * 1000.0));
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::standalone::compile_policy;

    const HUB_AND_BRANCH: &str = r#"
sites:
  - name: dc
    kind: dc
    lan: [10.0.0.0/24]
    lines:
      - { name: br1-mpls, transport: mpls, interface: br1-mpls, gateway: 172.16.1.1, up: 50mbit, down: 50mbit }
      - { name: br1-inet, transport: internet, interface: br1-inet, gateway: 172.16.2.1, up: 100mbit, down: 100mbit, preference: 20 }
      - { name: br2-mpls, transport: mpls, interface: br2-mpls, gateway: 172.16.4.1, up: 50mbit, down: 50mbit }
  - name: br1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: mpls, gateway: 172.16.1.2, up: 50mbit, down: 50mbit }
      - { name: inet, transport: internet, interface: inet, gateway: 172.16.2.2, up: 100mbit, down: 100mbit, preference: 20 }
  - name: br2
    kind: branch
    lan: [10.2.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: mpls, gateway: 172.16.4.2, up: 50mbit, down: 50mbit }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ dscp: [EF] }]
    sla: { latency: 100ms, loss: 1%, jitter: 30ms }
    steering: { prefer: [mpls, internet] }
  - name: default
    priority: 7
timers: { probe_interval: 20ms, down_after_missed: 4, hold_down: 5s }
"#;

    fn plan(site: &str) -> (SitePlan, RuleSet) {
        let policy = wansteer_policies::check_source("test.yaml", HUB_AND_BRANCH)
            .expect("valid policy")
            .policy;
        let mut ruleset = compile_policy(&policy, site, 1).expect("compiles");
        let plan = plan_site(&policy, site, &mut ruleset, None).expect("plans");
        (plan, ruleset)
    }

    #[test]
    fn a_branch_probes_each_line_s_gateway_with_the_policy_timers_and_class_slas() {
        let (plan, _) = plan("br1");
        let targets: Vec<String> = plan
            .probes
            .iter()
            .map(|p| p.reflector.to_string())
            .collect();
        assert_eq!(targets, ["172.16.1.2:862", "172.16.2.2:862"]);
        let monitor = &plan.probes[0].monitor;
        assert_eq!(monitor.interval, Duration::from_millis(20));
        assert_eq!(monitor.health.outage_probes, 4);
        assert_eq!(monitor.health.min_silence, Duration::from_millis(100));
        assert_eq!(monitor.health.hold_down, Duration::from_secs(5));
        let voice = monitor
            .slas
            .iter()
            .find(|s| s.name == "voice")
            .expect("voice SLA");
        assert_eq!(voice.loss_limit, 0.01);
        assert_eq!(
            voice.rtt_limit,
            Some(Duration::from_millis(200)),
            "one-way latency × 2"
        );
        assert!(monitor.slas.iter().any(|s| s.name == LINE_SLA));
    }

    #[test]
    fn a_branch_steers_each_class_as_one_group_over_all_destinations() {
        let (plan, _) = plan("br1");
        let voice = plan
            .groups
            .iter()
            .find(|g| g.lines.class == "voice")
            .expect("voice");
        assert_eq!(voice.lines.order, ["mpls", "inet"]);
        assert_eq!(voice.destinations.len(), 2, "dc and br2");
        let default = plan
            .groups
            .iter()
            .find(|g| g.lines.class == "default")
            .expect("default");
        assert_eq!(
            default.lines.sla, LINE_SLA,
            "no SLA of its own: reachability only"
        );
    }

    #[test]
    fn a_hub_reaches_each_branch_only_over_that_branch_s_lines() {
        let (plan, ruleset) = plan("dc");
        for route in &ruleset.routes {
            let mut lines = vec![route.primary.clone()];
            lines.extend(route.backups.iter().cloned());
            let branch = if route.destination.to_string() == "10.1.0.0/24" {
                "br1-"
            } else {
                "br2-"
            };
            assert!(lines.iter().all(|l| l.starts_with(branch)), "{route:?}");
        }
        let groups: Vec<&str> = plan.groups.iter().map(|g| g.lines.class.as_str()).collect();
        assert!(
            groups.contains(&"voice→br1") && groups.contains(&"voice→br2"),
            "{groups:?}"
        );
    }

    #[test]
    fn steered_orders_land_in_the_routes_of_their_group_only() {
        let (plan, mut ruleset) = plan("dc");
        let orders: BTreeMap<String, Vec<String>> = [(
            "voice→br1".to_string(),
            vec!["br1-inet".to_string(), "br1-mpls".to_string()],
        )]
        .into();
        steer_routes(&mut ruleset, &plan.groups, &orders);
        for route in ruleset.routes.iter().filter(|r| r.class == "voice") {
            let expected = if route.destination.to_string() == "10.1.0.0/24" {
                "br1-inet"
            } else {
                "br2-mpls"
            };
            assert_eq!(route.primary, expected);
        }
    }

    #[test]
    fn a_line_s_reflector_and_probe_interval_override_the_gateway_and_the_timers() {
        let text = HUB_AND_BRANCH.replace(
            "{ name: inet, transport: internet, interface: inet, gateway: 172.16.2.2,",
            "{ name: inet, transport: internet, interface: inet, gateway: 172.16.2.2, reflector: \"198.51.100.7:4862\", probe_interval: 50ms,",
        );
        let policy = wansteer_policies::check_source("test.yaml", &text)
            .expect("valid policy")
            .policy;
        let mut ruleset = compile_policy(&policy, "br1", 1).expect("compiles");
        let plan = plan_site(&policy, "br1", &mut ruleset, None).expect("plans");
        let inet = plan.probes.iter().find(|p| p.line == "inet").expect("inet");
        assert_eq!(inet.reflector.to_string(), "198.51.100.7:4862");
        assert_eq!(inet.monitor.interval, Duration::from_millis(50));
        let mpls = plan.probes.iter().find(|p| p.line == "mpls").expect("mpls");
        assert_eq!(mpls.reflector.to_string(), "172.16.1.2:862");
        assert_eq!(mpls.monitor.interval, Duration::from_millis(20));
    }

    #[test]
    fn a_hub_line_may_say_which_site_it_reaches_instead_of_its_name() {
        let text = HUB_AND_BRANCH
            .replace("{ name: br1-mpls,", "{ name: carrier-a, site: br1,")
            .replace("{ name: br2-mpls,", "{ name: carrier-b, site: br2,");
        let policy = wansteer_policies::check_source("test.yaml", &text)
            .expect("valid policy")
            .policy;
        let mut ruleset = compile_policy(&policy, "dc", 1).expect("compiles");
        let plan = plan_site(&policy, "dc", &mut ruleset, None).expect("plans");
        for route in &ruleset.routes {
            let mut lines = vec![route.primary.clone()];
            lines.extend(route.backups.iter().cloned());
            let allowed: &[&str] = if route.destination.to_string() == "10.1.0.0/24" {
                &["carrier-a", "br1-inet"]
            } else {
                &["carrier-b"]
            };
            assert!(
                lines.iter().all(|l| allowed.contains(&l.as_str())),
                "{route:?}"
            );
        }
        assert!(plan.groups.iter().any(|g| g.lines.class == "voice→br2"));
    }

    #[test]
    fn a_controller_route_to_a_branch_over_another_branch_s_line_is_kept_to_its_own() {
        let policy = wansteer_policies::check_source("test.yaml", HUB_AND_BRANCH)
            .expect("valid policy")
            .policy;
        let mut ruleset = compile_policy(&policy, "dc", 1).expect("compiles");
        for route in &mut ruleset.routes {
            route.primary = "br2-mpls".into();
            route.backups = vec!["br1-inet".into(), "br1-mpls".into()];
        }
        let routes = ruleset.routes.len();
        let changed = HubReach::new(&policy, "dc").restrict_ruleset(&mut ruleset);
        for route in &ruleset.routes {
            if route.destination.to_string() == "10.1.0.0/24" {
                assert_eq!(route.primary, "br1-inet", "{route:?}");
                assert_eq!(route.backups, ["br1-mpls"]);
            } else {
                assert_eq!(route.primary, "br2-mpls", "{route:?}");
                assert!(route.backups.is_empty());
            }
        }
        assert_eq!(ruleset.routes.len(), routes);
        assert_eq!(changed, routes);
        // A branch's lines reach no one site: nothing changes there.
        let mut branch = compile_policy(&policy, "br1", 1).expect("compiles");
        let before = branch.clone();
        assert_eq!(
            HubReach::new(&policy, "br1").restrict_ruleset(&mut branch),
            0
        );
        assert_eq!(branch, before);
    }
}
