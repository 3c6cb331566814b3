//! Property tests of the planner on small random networks: it never places a class on a
//! path that breaks its SLA when one that meets it exists, never uses a `never` line (not
//! for the route, not for a backup), and gives no route only when nothing allowed is up.

use std::time::Duration;

use proptest::prelude::*;
use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::{ClassDemand, Planner};
use wansteer_policies::Policy;
use wansteer_policies::model::{
    Bandwidth, Class, Line, Site, SiteKind, Sla, Steering, Timers, Transport,
};
use wansteer_policies::units::{Dscp, Percent, Rate, Span};

#[derive(Debug, Clone)]
struct LineDraw {
    rtt_ms: f64,
    loss: f64,
    jitter_ms: f64,
    up: bool,
}

#[derive(Debug, Clone)]
struct ClassDraw {
    latency_ms: f64,
    loss_pct: f64,
    jitter_ms: f64,
    never: Vec<&'static str>,
}

fn line_draw() -> impl Strategy<Value = LineDraw> {
    (
        2.0..200.0f64,
        0.0..0.05f64,
        0.0..40.0f64,
        prop::bool::weighted(0.85),
    )
        .prop_map(|(rtt_ms, loss, jitter_ms, up)| LineDraw {
            rtt_ms,
            loss,
            jitter_ms,
            up,
        })
}

fn class_draw() -> impl Strategy<Value = ClassDraw> {
    (
        20.0..200.0f64,
        0.5..3.0f64,
        5.0..40.0f64,
        prop::sample::subsequence(vec!["lte", "internet", "mpls"], 0..=2),
    )
        .prop_map(|(latency_ms, loss_pct, jitter_ms, never)| ClassDraw {
            latency_ms,
            loss_pct,
            jitter_ms,
            never,
        })
}

const BRANCH_LINES: [(&str, Transport); 3] = [
    ("mpls", Transport::Mpls),
    ("inet", Transport::Internet),
    ("lte", Transport::Lte),
];

fn build(
    branch_masks: &[u8],
    draws: &[LineDraw],
    classes: &[ClassDraw],
) -> (Policy, Vec<LineMeasurement>) {
    let mut sites = Vec::new();
    let mut draw = draws.iter().cycle();
    let mut measurements = Vec::new();
    let mut add = |site: &str, kind: SiteKind, lan: &str, lines: Vec<(&str, Transport)>| {
        let mut policy_lines = Vec::new();
        for (name, transport) in lines {
            let d = draw.next().unwrap();
            policy_lines.push(Line {
                name: name.into(),
                transport,
                interface: format!("w-{name}"),
                gateway: None,
                gateway6: None,
                up: Rate(100_000_000),
                down: Rate(100_000_000),
                cost: 1.0,
                preference: 100,
                reflector: None,
                probe_interval: None,
                site: None,
            });
            measurements.push(LineMeasurement {
                site: site.into(),
                line: name.into(),
                rtt: Duration::from_secs_f64(d.rtt_ms / 1000.0),
                loss: d.loss,
                jitter: Duration::from_secs_f64(d.jitter_ms / 1000.0),
                health: if d.up {
                    LineHealth::Up
                } else {
                    LineHealth::Down
                },
                at: Duration::ZERO,
            });
        }
        sites.push(Site {
            name: site.into(),
            kind,
            lan: vec![lan.parse().unwrap()],
            lines: policy_lines,
        });
    };
    for (i, mask) in branch_masks.iter().enumerate() {
        let lines: Vec<_> = BRANCH_LINES
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, l)| *l)
            .collect();
        add(
            &format!("b{i}"),
            SiteKind::Branch,
            &format!("10.{i}.0.0/24"),
            lines,
        );
    }
    let core = vec![("mpls", Transport::Mpls), ("inet", Transport::Internet)];
    add("hub", SiteKind::Hub, "10.100.0.0/24", core.clone());
    add("dc", SiteKind::Dc, "10.200.0.0/16", core);
    let classes = classes
        .iter()
        .enumerate()
        .map(|(i, c)| Class {
            name: format!("c{i}"),
            priority: i as u8 + 1,
            dscp: Dscp(0),
            matches: vec![],
            sla: Some(Sla {
                latency: Some(Span(Duration::from_secs_f64(c.latency_ms / 1000.0))),
                loss: Some(Percent(c.loss_pct)),
                jitter: Some(Span(Duration::from_secs_f64(c.jitter_ms / 1000.0))),
            }),
            steering: Steering {
                prefer: vec![],
                never: c.never.iter().map(|s| s.to_string()).collect(),
                load_sharing: false,
            },
            bandwidth: Bandwidth::default(),
        })
        .collect();
    let policy = Policy {
        name: None,
        sites,
        classes,
        default_class: None,
        timers: Timers::default(),
    };
    (policy, measurements)
}

/// One path as the test sees it: lines as (site, line) with their measured numbers.
fn all_paths(policy: &Policy, src: &str, dst: &str) -> Vec<Vec<(String, String)>> {
    let site = |n: &str| policy.site(n).unwrap();
    let cloud = |t: Transport| t == Transport::Mpls;
    let tunnel = |x: &Site, a: &Line, y: &Site, b: &Line| {
        cloud(a.transport) == cloud(b.transport)
            && !(cloud(a.transport) && x.kind == SiteKind::Branch && y.kind == SiteKind::Branch)
    };
    let (s, d) = (site(src), site(dst));
    let mut out = Vec::new();
    for a in &s.lines {
        for b in &d.lines {
            if tunnel(s, a, d, b) {
                out.push(vec![
                    (src.into(), a.name.clone()),
                    (dst.into(), b.name.clone()),
                ]);
            }
        }
    }
    for h in policy.sites.iter().filter(|h| h.kind != SiteKind::Branch) {
        if h.name == src || h.name == dst {
            continue;
        }
        for a in &s.lines {
            for x in &h.lines {
                for y in &h.lines {
                    for b in &d.lines {
                        if tunnel(s, a, h, x) && tunnel(h, y, d, b) {
                            out.push(vec![
                                (src.into(), a.name.clone()),
                                (h.name.clone(), x.name.clone()),
                                (h.name.clone(), y.name.clone()),
                                (dst.into(), b.name.clone()),
                            ]);
                        }
                    }
                }
            }
        }
    }
    out
}

fn measured<'a>(ms: &'a [LineMeasurement], site: &str, line: &str) -> &'a LineMeasurement {
    ms.iter()
        .find(|m| m.site == site && m.line == line)
        .unwrap()
}

fn meets(ms: &[LineMeasurement], path: &[(String, String)], class: &Class) -> bool {
    let (mut latency, mut jitter, mut delivered) = (0.0, 0.0, 1.0);
    for (site, line) in path {
        let m = measured(ms, site, line);
        latency += m.rtt.as_secs_f64() * 1000.0 / 2.0;
        jitter += m.jitter.as_secs_f64() * 1000.0;
        delivered *= 1.0 - m.loss;
    }
    let sla = class.sla.as_ref().unwrap();
    latency <= sla.latency.unwrap().0.as_secs_f64() * 1000.0 + 1e-9
        && jitter <= sla.jitter.unwrap().0.as_secs_f64() * 1000.0 + 1e-9
        && 1.0 - delivered <= sla.loss.unwrap().fraction() + 1e-12
}

fn forbidden(policy: &Policy, class: &Class, site: &str, line: &str) -> bool {
    let line = policy
        .site(site)
        .unwrap()
        .lines
        .iter()
        .find(|l| l.name == line)
        .unwrap();
    class.steering.never.iter().any(|e| line.is_named_by(e))
}

fn usable(
    policy: &Policy,
    ms: &[LineMeasurement],
    class: &Class,
    path: &[(String, String)],
) -> bool {
    path.iter().all(|(s, l)| {
        measured(ms, s, l).health != LineHealth::Down && !forbidden(policy, class, s, l)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn placements_meet_sla_when_possible_and_never_use_forbidden_lines(
        masks in prop::collection::vec(1u8..8, 2..=3),
        draws in prop::collection::vec(line_draw(), 13),
        classes in prop::collection::vec(class_draw(), 1..=3),
    ) {
        let (policy, measurements) = build(&masks, &draws, &classes);
        let mut planner = Planner::new(policy.clone());
        for m in &measurements {
            planner.update_measurement(m.clone()).unwrap();
        }
        planner.update_demand(ClassDemand {
            site: "b0".into(), class: "c0".into(), destination: "b1".into(), bps: 1e6,
        }).unwrap();
        let plan = planner.plan(Duration::from_secs(1));
        prop_assert!(!plan.decisions.is_empty());
        for decision in &plan.decisions {
            let class = policy.class(&decision.class).unwrap();
            let candidates: Vec<_> = all_paths(&policy, &decision.site, &decision.destination)
                .into_iter()
                .filter(|p| usable(&policy, &measurements, class, p))
                .collect();
            if decision.path.is_empty() {
                prop_assert!(candidates.is_empty(), "no route although {:?} is allowed", candidates.first());
                continue;
            }
            let chosen: Vec<(String, String)> = decision
                .path
                .iter()
                .map(|hop| {
                    let (s, l) = hop.split_once('/').unwrap();
                    (s.to_string(), l.to_string())
                })
                .collect();
            for (site, line) in &chosen {
                prop_assert!(!forbidden(&policy, class, site, line), "{} on never line {site}/{line}", class.name);
            }
            let feasible = candidates.iter().any(|p| meets(&measurements, p, class));
            if feasible {
                prop_assert!(
                    meets(&measurements, &chosen, class),
                    "{} {}->{} on {:?} breaks its SLA although a compliant path exists",
                    class.name, decision.site, decision.destination, chosen
                );
            }
        }
        for (site, ruleset) in &plan.rulesets {
            for route in &ruleset.routes {
                let class = policy.class(&route.class).unwrap();
                for line in std::iter::once(&route.primary).chain(&route.backups) {
                    if !route.reason.starts_with("transit") {
                        prop_assert!(!forbidden(&policy, class, site, line), "{site} {} uses never line {line}", route.class);
                    }
                }
            }
        }
    }
}
