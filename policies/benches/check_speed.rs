//! How long `check_source` takes on policies of growing size: a bank with 1, 100, 1,000
//! and 10,000 branches (three lines each) and eight classes. The controller checks every
//! pushed policy, so this is the cost of a push. Prints the median of repeated runs.
//!
//!     cargo bench -p wansteer-policies --bench check_speed

use std::time::Instant;

fn policy(branches: usize) -> String {
    let bank = include_str!("../examples/bank.yaml");
    let classes = &bank[bank.find("\nclasses:").unwrap()..];
    let mut text = String::from("sites:\n");
    text.push_str(
        "  - name: dc\n    kind: dc\n    lan: [10.0.0.0/16]\n    lines:\n      - { name: mpls, transport: mpls, interface: wan0, up: 10gbit, down: 10gbit }\n      - { name: internet, transport: internet, interface: wan1, up: 10gbit, down: 10gbit }\n",
    );
    for n in 0..branches {
        let (a, b) = (1 + n / 256, n % 256);
        text.push_str(&format!(
            "  - name: branch-{n}\n    kind: branch\n    lan: [10.{a}.{b}.0/24, \"2001:db8:{n:x}::/64\"]\n    lines:\n      - {{ name: mpls, transport: mpls, interface: wan0, gateway: 192.0.2.1, up: 20mbit, down: 20mbit, cost: 3 }}\n      - {{ name: internet, transport: internet, interface: wan1, gateway: 198.51.100.1, up: 20mbit, down: 100mbit }}\n      - {{ name: lte, transport: lte, interface: wan2, up: 10mbit, down: 30mbit, cost: 10 }}\n"
        ));
    }
    text.push_str(classes);
    text
}

fn main() {
    println!(
        "| branches | policy size | check median | runs | of which tree / walk / read / validate / drop (one run) | serde from text (the second parse before) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (branches, runs) in [(1, 200), (100, 50), (1_000, 11), (10_000, 5)] {
        let text = policy(branches);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let checked = wansteer_policies::check_source("bench.yaml", &text);
            times.push(start.elapsed());
            let checked = checked.unwrap_or_else(|errors| panic!("{:?}", &errors[..1]));
            assert_eq!(checked.policy.sites.len(), branches + 1);
        }
        times.sort();
        // Where the time goes, from one more run: YAML tree, shape walk, the model read
        // from the tree, the semantic rules, dropping the tree; and what reading the text
        // a second time with serde cost (the check did that before).
        let start = Instant::now();
        let tree = wansteer_policies::source::parse(&text).unwrap().unwrap();
        let tree_time = start.elapsed();
        let start = Instant::now();
        let walked = wansteer_policies::schema::walk(&tree);
        let walk_time = start.elapsed();
        let start = Instant::now();
        let policy: wansteer_policies::Policy = wansteer_policies::read::from_tree(&tree).unwrap();
        let read_time = start.elapsed();
        let start = Instant::now();
        let findings = wansteer_policies::validate::validate(&policy, &Lines, None);
        let validate_time = start.elapsed();
        let start = Instant::now();
        drop(tree);
        let drop_time = start.elapsed();
        let start = Instant::now();
        let _: wansteer_policies::Policy = yaml_serde::from_str(&text).unwrap();
        let serde_time = start.elapsed();
        drop((walked, findings));
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {branches} | {} KiB | {:.2} ms | {runs} | {:.1} / {:.1} / {:.1} / {:.1} / {:.1} ms | {:.1} ms |",
            text.len() / 1024,
            ms(times[runs / 2]),
            ms(tree_time),
            ms(walk_time),
            ms(read_time),
            ms(validate_time),
            ms(drop_time),
            ms(serde_time),
        );
    }
}

/// Findings are only counted here, so no positions are needed.
struct Lines;

impl wansteer_policies::validate::Locate for Lines {
    fn line_of(&self, _path: &str) -> usize {
        1
    }
}
