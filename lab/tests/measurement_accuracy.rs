//! wansteer's probes against the lab's injected truth, on real namespaces (needs root, as in
//! CI): the real prober and reflector across a line of the userspace emulator, a small grid
//! (delay, jitter, loss), bounds loose enough for a shared machine but tight enough to
//! catch a measurement that is plainly wrong. The tight figures come from
//! `wansteer lab bench-measurement` (docs/benchmarks/lab.md).

use std::time::Duration;

use wansteer_lab::accuracy::{self, Metric, Options};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_read_the_delay_jitter_and_loss_the_line_was_given() {
    if !is_root() {
        eprintln!("needs root (network namespaces); skipped");
        return;
    }
    let options = Options {
        grid: accuracy::quick_grid(),
        repetitions: 2,
        probes: 300,
        interval: Duration::from_millis(10),
        prefix: format!("wstma{}", std::process::id() % 100_000),
        realtime: false,
    };
    let outcome = accuracy::run(&options, |line| eprintln!("{line}"))
        .await
        .expect("bench ran");
    let table = accuracy::render(&outcome.rows);
    eprintln!("{table}");
    let rows = |metric: Metric| outcome.rows.iter().filter(move |r| r.metric == metric);

    // Every point: the median RTT is the injected round trip, give or take 5 ms.
    assert_eq!(rows(Metric::Rtt).count(), 3, "{table}");
    for r in rows(Metric::Rtt) {
        let error = r.error().expect("RTT measured");
        assert!(error.abs() <= 5.0, "RTT off by {error:.2} ms\n{table}");
    }
    // 20 ms ± 5 ms: one-way RFC 3550 jitter near 2σ/√π = 5.6 ms; without jitter, near 0.
    for r in rows(Metric::FwdJitter).chain(rows(Metric::RevJitter)) {
        let error = r.error().expect("jitter measured");
        assert!(error.abs() <= 2.5, "jitter off by {error:.2} ms\n{table}");
    }
    // 5% loss: the 95% interval holds the truth in at least half the repetitions.
    let loss: Vec<_> = rows(Metric::Loss).collect();
    assert_eq!(loss.len(), 1, "{table}");
    assert!(
        loss[0].good * 2 >= loss[0].repetitions,
        "the loss interval missed 5% in most repetitions\n{table}"
    );
    // Nothing of the lab is left behind.
    let left: Vec<String> = wansteer_lab::netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{}-", options.prefix)))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}
