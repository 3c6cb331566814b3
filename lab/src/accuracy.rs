//! Measurement accuracy: what wansteer's probes measure on a lab line against what the
//! line's emulator was told to do (DESIGN §7: latency and jitter within 0.5 ms, loss inside
//! its 95% confidence interval).
//!
//! One line between two routers (a built-in topology with no baseline impairment), the
//! real prober and reflector of `wansteer-probes` on real sockets in the routers'
//! namespaces, the userspace emulator in between. For each point of a grid of one-way
//! delay, jitter and loss the emulator is set, a fresh probe session of a fixed number of
//! probes runs, and its reports are read the way the agent reads them. Several
//! repetitions per point; the table quotes the median.
//!
//! What each injected figure should read as (the [`Truth`] of a [`GridPoint`]):
//! - delay `d` one-way in both directions → RTT `2d` (the probes' median RTT);
//! - normal jitter σ in both directions, reordering allowed → RFC 3550 interarrival jitter
//!   `E|X₁ − X₂| = 2σ/√π` on each one-way series and `2√2·σ/√π` on the RTT series
//!   (the difference of two independent normal delays, or of two sums of two);
//! - loss `p` on the branch → hub direction only → round-trip loss `p`, which should lie
//!   inside the probes' 95% interval.
//!
//! The grid, the truths and the judging are pure ([`judge`], [`render`]); [`run`] does the
//! I/O.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use wansteer_probes::net::{SocketOptions, udp_socket};
use wansteer_probes::tasks::{UdpTransport, run_sender};
use wansteer_probes::{LineMonitor, MonitorConfig, run_reflector};
use wansteer_wire::report::{LineReport, LineSummary};

use crate::emulator::loss::Loss;
use crate::emulator::model::JitterShape;
use crate::emulator::{Emulator, ImpairmentChange, Request, Target};
use crate::lab;
use crate::netns;
use crate::topology::{Plan, Topology};

/// One branch, one hub, one clean line between their routers: nothing but what the bench
/// injects.
const ONE_LINE: &str = r#"
name: accuracy
sites:
  - name: hub
    lan: {ipv4: 10.60.0.0/24, ipv6: "fd59::/64"}
    hosts: [srv]
  - name: br
    lan: {ipv4: 10.61.0.0/24, ipv6: "fd59:0:0:1::/64"}
    hosts: [pc]
    lines:
      - {name: l1, to: hub}
"#;

/// The line the bench impairs.
const LINE: &str = "br-l1";

/// STAMP's well-known port, where the agent's reflector listens too.
const REFLECTOR_PORT: u16 = 862;

/// What the emulator is told for one point of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GridPoint {
    /// One-way delay in each direction, ms.
    pub delay_ms: f64,
    /// Normal jitter σ in each direction, ms (reordering allowed).
    pub jitter_ms: f64,
    /// Random loss on the branch → hub direction, 0..1.
    pub loss: f64,
}

impl GridPoint {
    pub const fn new(delay_ms: f64, jitter_ms: f64, loss: f64) -> Self {
        GridPoint {
            delay_ms,
            jitter_ms,
            loss,
        }
    }

    /// `20 ms ± 5 ms, 1% loss`.
    pub fn label(&self) -> String {
        let mut s = format!("{} ms", self.delay_ms);
        if self.jitter_ms > 0.0 {
            let _ = write!(s, " ± {} ms", self.jitter_ms);
        }
        if self.loss > 0.0 {
            let _ = write!(s, ", {}% loss", self.loss * 100.0);
        }
        s
    }

    /// What the probes should read.
    pub fn truth(&self) -> Truth {
        let one_way_jitter = 2.0 * self.jitter_ms / std::f64::consts::PI.sqrt();
        Truth {
            rtt_ms: 2.0 * self.delay_ms,
            one_way_jitter_ms: one_way_jitter,
            rtt_jitter_ms: one_way_jitter * std::f64::consts::SQRT_2,
            loss: self.loss,
        }
    }

    /// The emulator settings for each direction.
    fn changes(&self) -> [(Target, ImpairmentChange); 2] {
        let us = |ms: f64| (ms * 1000.0).round() as u64;
        let common = ImpairmentChange {
            delay_us: Some(us(self.delay_ms)),
            jitter_us: Some(us(self.jitter_ms)),
            jitter_shape: Some(JitterShape::Normal),
            reorder: Some(true),
            loss: Some(Loss::None),
            rate_bps: Some(0),
            down: Some(false),
            ..ImpairmentChange::default()
        };
        let up = ImpairmentChange {
            loss: Some(if self.loss > 0.0 {
                Loss::Random { p: self.loss }
            } else {
                Loss::None
            }),
            ..common
        };
        [(Target::Down, common), (Target::Up, up)]
    }
}

/// The values the probes should report for a [`GridPoint`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Truth {
    pub rtt_ms: f64,
    /// RFC 3550 jitter expected on each one-way series.
    pub one_way_jitter_ms: f64,
    /// RFC 3550 jitter expected on the RTT series.
    pub rtt_jitter_ms: f64,
    pub loss: f64,
}

/// The default grid: delay alone (0 ms is the path itself), jitter, loss.
pub fn full_grid() -> Vec<GridPoint> {
    vec![
        GridPoint::new(0.0, 0.0, 0.0),
        GridPoint::new(5.0, 0.0, 0.0),
        GridPoint::new(20.0, 0.0, 0.0),
        GridPoint::new(50.0, 0.0, 0.0),
        GridPoint::new(20.0, 2.0, 0.0),
        GridPoint::new(20.0, 5.0, 0.0),
        GridPoint::new(10.0, 0.0, 0.01),
        GridPoint::new(10.0, 0.0, 0.05),
        GridPoint::new(10.0, 0.0, 0.10),
    ]
}

/// A small grid for CI: one point of each kind.
pub fn quick_grid() -> Vec<GridPoint> {
    vec![
        GridPoint::new(20.0, 0.0, 0.0),
        GridPoint::new(20.0, 5.0, 0.0),
        GridPoint::new(10.0, 0.0, 0.05),
    ]
}

/// What one probe session measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Probes judged (answered + lost) in the final whole-session window.
    pub probes: u32,
    pub rtt_p50_ms: Option<f64>,
    /// Median over the per-second summaries (2 s windows) of RFC 3550 jitter.
    pub fwd_jitter_ms: Option<f64>,
    pub rev_jitter_ms: Option<f64>,
    pub rtt_jitter_ms: Option<f64>,
    pub loss: f64,
    pub loss_lower: f64,
    pub loss_upper: f64,
}

impl Sample {
    /// Reads a session's reports: the final summary (its long window covers the whole
    /// session) for RTT and loss; the median of the per-second short-window jitters, after
    /// the first `skip` summaries (the window filling up).
    pub fn from_summaries(summaries: &[LineSummary], skip: usize) -> Option<Sample> {
        let last = summaries.last()?;
        let steady = &summaries[skip.min(summaries.len().saturating_sub(1))..];
        let median_of = |pick: &dyn Fn(&LineSummary) -> Option<f64>| {
            median(steady.iter().filter_map(pick).collect())
        };
        Some(Sample {
            probes: last.long.probes,
            rtt_p50_ms: last.long.rtt_ms.map(|r| r.p50),
            fwd_jitter_ms: median_of(&|s| s.short.fwd_jitter_ms),
            rev_jitter_ms: median_of(&|s| s.short.rev_jitter_ms),
            rtt_jitter_ms: median_of(&|s| s.short.jitter_ms),
            loss: last.long.loss.ratio,
            loss_lower: last.long.loss.lower,
            loss_upper: last.long.loss.upper,
        })
    }
}

/// Median of `values` (mean of the middle two when even); `None` when empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Which figure a row compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Rtt,
    FwdJitter,
    RevJitter,
    RttJitter,
    Loss,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Rtt => "RTT median",
            Metric::FwdJitter => "jitter → (RFC 3550)",
            Metric::RevJitter => "jitter ← (RFC 3550)",
            Metric::RttJitter => "jitter RTT (RFC 3550)",
            Metric::Loss => "loss",
        }
    }
}

/// One figure of one grid point over its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub point: GridPoint,
    pub metric: Metric,
    /// The truth, ms (or ratio 0..1 for loss).
    pub injected: f64,
    /// Median over the repetitions that measured it.
    pub measured: Option<f64>,
    /// Median of the repetitions' 95% intervals (loss rows).
    pub interval: Option<(f64, f64)>,
    /// Largest |measured − injected| of one repetition (ms, or ratio for loss).
    pub worst_error: Option<f64>,
    /// Repetitions within 0.5 ms (delay, jitter) or whose interval holds the truth (loss).
    pub good: usize,
    pub repetitions: usize,
}

impl Row {
    /// `measured − injected` of the median.
    pub fn error(&self) -> Option<f64> {
        self.measured.map(|m| m - self.injected)
    }
}

/// DESIGN §7's bound for latency and jitter.
pub const TOLERANCE_MS: f64 = 0.5;

/// The rows of one grid point: RTT always, jitter where jitter was injected or none
/// expected, loss where loss was injected.
pub fn judge(point: GridPoint, samples: &[Sample]) -> Vec<Row> {
    let truth = point.truth();
    let mut rows = Vec::new();
    let ms_row = |metric: Metric, injected: f64, pick: fn(&Sample) -> Option<f64>| {
        let values: Vec<f64> = samples.iter().filter_map(pick).collect();
        Row {
            point,
            metric,
            injected,
            measured: median(values.clone()),
            interval: None,
            worst_error: values.iter().map(|v| (v - injected).abs()).reduce(f64::max),
            good: values
                .iter()
                .filter(|v| (*v - injected).abs() <= TOLERANCE_MS)
                .count(),
            repetitions: samples.len(),
        }
    };
    rows.push(ms_row(Metric::Rtt, truth.rtt_ms, |s| s.rtt_p50_ms));
    if point.jitter_ms > 0.0 || point.loss == 0.0 {
        rows.push(ms_row(Metric::FwdJitter, truth.one_way_jitter_ms, |s| {
            s.fwd_jitter_ms
        }));
        rows.push(ms_row(Metric::RevJitter, truth.one_way_jitter_ms, |s| {
            s.rev_jitter_ms
        }));
        rows.push(ms_row(Metric::RttJitter, truth.rtt_jitter_ms, |s| {
            s.rtt_jitter_ms
        }));
    }
    if point.loss > 0.0 {
        rows.push(Row {
            point,
            metric: Metric::Loss,
            injected: truth.loss,
            measured: median(samples.iter().map(|s| s.loss).collect()),
            interval: median(samples.iter().map(|s| s.loss_lower).collect())
                .zip(median(samples.iter().map(|s| s.loss_upper).collect())),
            worst_error: samples
                .iter()
                .map(|s| (s.loss - truth.loss).abs())
                .reduce(f64::max),
            good: samples
                .iter()
                .filter(|s| s.loss_lower <= truth.loss && truth.loss <= s.loss_upper)
                .count(),
            repetitions: samples.len(),
        });
    }
    rows
}

/// The rows as a markdown table.
pub fn render(rows: &[Row]) -> String {
    let mut t = String::from(
        "| injected (one-way, each direction; loss →) | figure | truth | measured (median) | error | worst rep. error | within 0.5 ms / truth in 95% CI |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (truth, measured, error, worst) = if r.metric == Metric::Loss {
            let pct = |v: f64| format!("{:.2}%", v * 100.0);
            (
                pct(r.injected),
                match (r.measured, r.interval) {
                    (Some(m), Some((lo, hi))) => format!("{} [{}, {}]", pct(m), pct(lo), pct(hi)),
                    (Some(m), None) => pct(m),
                    _ => "-".into(),
                },
                r.error()
                    .map_or("-".into(), |e| format!("{:+.2} pt", e * 100.0)),
                r.worst_error
                    .map_or("-".into(), |e| format!("{:.2} pt", e * 100.0)),
            )
        } else {
            (
                format!("{:.2} ms", r.injected),
                r.measured.map_or("-".into(), |m| format!("{m:.2} ms")),
                r.error().map_or("-".into(), |e| format!("{e:+.2} ms")),
                r.worst_error.map_or("-".into(), |e| format!("{e:.2} ms")),
            )
        };
        let _ = writeln!(
            t,
            "| {} | {} | {truth} | {measured} | {error} | {worst} | {}/{} |",
            r.point.label(),
            r.metric.name(),
            r.good,
            r.repetitions
        );
    }
    t
}

/// How to run the bench.
#[derive(Debug, Clone)]
pub struct Options {
    pub grid: Vec<GridPoint>,
    pub repetitions: usize,
    /// Probes per session.
    pub probes: u64,
    /// Time between probes.
    pub interval: Duration,
    /// Run prefix for the namespaces (unique per run).
    pub prefix: String,
    /// Prober and reflector threads at real-time priority, like the emulator's: the
    /// estimators' accuracy without the host's scheduling delays. Off, they run as the
    /// agent does.
    pub realtime: bool,
}

/// The measured grid.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub rows: Vec<Row>,
    /// Every session's sample, per grid point, in order.
    pub samples: Vec<(GridPoint, Vec<Sample>)>,
    pub probes: u64,
    pub interval_ms: f64,
    pub realtime: bool,
}

/// Removes the bench's lab when dropped (also on error or panic).
struct BenchLab {
    plan: Plan,
    emulator: Option<Emulator>,
}

impl Drop for BenchLab {
    fn drop(&mut self) {
        if let Some(e) = self.emulator.take() {
            e.stop();
        }
        let _ = lab::teardown(&self.plan);
    }
}

/// Builds the one-line lab, runs every grid point `repetitions` times, removes the lab.
/// `progress` gets a line per session.
pub async fn run(options: &Options, progress: impl Fn(&str)) -> anyhow::Result<Outcome> {
    let topology = Topology::parse(ONE_LINE, "built-in accuracy topology")?;
    let plan = topology.plan(&options.prefix);
    lab::build(&plan)?;
    let mut bench = BenchLab {
        plan: plan.clone(),
        emulator: None,
    };
    let line = plan.line(LINE).context("the bench line")?.clone();
    bench.emulator = Some(Emulator::start(
        &line.id,
        &line.namespace,
        "near",
        "far",
        line.baseline,
        None,
    )?);
    let far: IpAddr = *line
        .far_addresses
        .iter()
        .find(|a| a.is_ipv4())
        .context("the line's far end has no IPv4 address")?;
    let reflector_addr = SocketAddr::new(far, REFLECTOR_PORT);
    let socket = netns::run_in(&line.far_router, || -> std::io::Result<_> {
        let s = std::net::UdpSocket::bind(reflector_addr)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })??;
    let reflector = ReflectorThread::start(socket, options.realtime)?;
    let near = line.near_router.clone();
    let probe = |count: u64| {
        let (near, interval, realtime) = (near.clone(), options.interval, options.realtime);
        tokio::task::spawn_blocking(move || {
            on_own_thread(realtime, move || async move {
                session(&near, reflector_addr, count, interval).await
            })
        })
    };
    // A first session resolves ARP before anything is lost.
    probe(20).await??;
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for point in &options.grid {
        let emulator = bench.emulator.as_ref().context("emulator")?;
        for (target, change) in point.changes() {
            emulator
                .apply(&Request::Change { target, change })
                .into_result()?;
        }
        let mut samples = Vec::new();
        for rep in 1..=options.repetitions {
            let sample = probe(options.probes).await??;
            progress(&format!(
                "{} rep {rep}: rtt p50 {} ms, jitter →/←/rtt {}/{}/{} ms, loss {:.2}% [{:.2}%, {:.2}%] of {} probes",
                point.label(),
                fmt(sample.rtt_p50_ms),
                fmt(sample.fwd_jitter_ms),
                fmt(sample.rev_jitter_ms),
                fmt(sample.rtt_jitter_ms),
                sample.loss * 100.0,
                sample.loss_lower * 100.0,
                sample.loss_upper * 100.0,
                sample.probes
            ));
            samples.push(sample);
        }
        rows.extend(judge(*point, &samples));
        all.push((*point, samples));
    }
    drop(reflector);
    drop(bench);
    Ok(Outcome {
        rows,
        samples: all,
        probes: options.probes,
        interval_ms: options.interval.as_secs_f64() * 1e3,
        realtime: options.realtime,
    })
}

/// The far end's reflector on a thread of its own (its own runtime, like the far agent's
/// process); stopped when dropped.
struct ReflectorThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReflectorThread {
    fn start(socket: std::net::UdpSocket, realtime: bool) -> anyhow::Result<ReflectorThread> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-reflector".into())
            .spawn(move || {
                let _ = on_this_thread(realtime, async move {
                    let socket = tokio::net::UdpSocket::from_std(socket)?;
                    run_reflector(socket, async {
                        let _ = stopped.await;
                    })
                    .await?;
                    Ok(())
                });
            })?;
        Ok(ReflectorThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ReflectorThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `f`'s future on a new thread with a current-thread runtime (real-time priority
/// with `realtime`) and waits for it.
fn on_own_thread<F, T>(realtime: bool, f: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name("bench-prober".into())
        .spawn(move || on_this_thread(realtime, f()))?
        .join()
        .map_err(|_| anyhow::anyhow!("the prober thread panicked"))?
}

fn on_this_thread<T>(
    realtime: bool,
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if realtime {
        crate::sched::realtime_priority();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// One probe session of `count` probes from the branch router: the agent's prober core
/// ([`LineMonitor`]) and sender loop ([`run_sender`]) over a UDP socket made in
/// `namespace`, with a long window covering the whole session.
async fn session(
    namespace: &str,
    reflector: SocketAddr,
    count: u64,
    interval: Duration,
) -> anyhow::Result<Sample> {
    let mut config = MonitorConfig::new("bench");
    config.interval = interval;
    config.tracker.long_window = interval * count as u32 + Duration::from_secs(5);
    let wall = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let monitor = LineMonitor::new(config, wall).map_err(anyhow::Error::msg)?;
    let bind = SocketAddr::from(([0, 0, 0, 0], 0));
    let socket = netns::run_in(namespace, || udp_socket(bind, &SocketOptions::default()))??;
    let socket = tokio::net::UdpSocket::from_std(socket.into())?;
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let sender = tokio::spawn(run_sender(
        monitor,
        UdpTransport::new(socket, reflector),
        Some(count),
        tx,
    ));
    let mut summaries = Vec::new();
    while let Some(report) = reports.recv().await {
        if let LineReport::Summary(s) = report {
            summaries.push(*s);
        }
    }
    sender.await??;
    // The short window is 2 s: skip the summaries of its first two seconds.
    Sample::from_summaries(&summaries, 2).context("the prober reported nothing")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rtt: f64, jitter: f64, loss: (f64, f64, f64)) -> Sample {
        Sample {
            probes: 500,
            rtt_p50_ms: Some(rtt),
            fwd_jitter_ms: Some(jitter),
            rev_jitter_ms: Some(jitter),
            rtt_jitter_ms: Some(jitter * std::f64::consts::SQRT_2),
            loss: loss.0,
            loss_lower: loss.1,
            loss_upper: loss.2,
        }
    }

    #[test]
    fn truths_follow_the_injected_figures() {
        let t = GridPoint::new(20.0, 5.0, 0.05).truth();
        assert_eq!(t.rtt_ms, 40.0);
        // 2σ/√π: the mean |difference| of two independent N(0, σ²) delays.
        assert!((t.one_way_jitter_ms - 5.642).abs() < 0.001, "{t:?}");
        assert!((t.rtt_jitter_ms - 7.979).abs() < 0.001, "{t:?}");
        assert_eq!(t.loss, 0.05);
    }

    #[test]
    fn loss_is_injected_one_way_and_delay_both_ways() {
        let [(down_target, down), (up_target, up)] = GridPoint::new(10.0, 0.0, 0.05).changes();
        assert_eq!((down_target, up_target), (Target::Down, Target::Up));
        assert_eq!((down.delay_us, up.delay_us), (Some(10_000), Some(10_000)));
        assert_eq!(down.loss, Some(Loss::None));
        assert_eq!(up.loss, Some(Loss::Random { p: 0.05 }));
    }

    #[test]
    fn rows_count_repetitions_within_bounds_and_intervals_holding_the_truth() {
        let point = GridPoint::new(10.0, 0.0, 0.05);
        let samples = [
            sample(20.2, 0.0, (0.048, 0.033, 0.07)),
            sample(20.9, 0.0, (0.03, 0.019, 0.045)),
            sample(20.3, 0.0, (0.06, 0.043, 0.083)),
        ];
        let rows = judge(point, &samples);
        let rtt = &rows[0];
        assert_eq!(rtt.metric, Metric::Rtt);
        assert_eq!(rtt.measured, Some(20.3));
        assert!((rtt.worst_error.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!((rtt.good, rtt.repetitions), (2, 3));
        // No jitter injected but loss: no jitter rows.
        let loss = rows.iter().find(|r| r.metric == Metric::Loss).unwrap();
        assert_eq!(loss.measured, Some(0.048));
        assert_eq!(loss.interval, Some((0.033, 0.07)));
        assert_eq!(loss.good, 2);
        assert_eq!(rows.len(), 2);
        let table = render(&rows);
        assert!(table.contains("| 10 ms, 5% loss | loss | 5.00% | 4.80% [3.30%, 7.00%] | -0.20 pt | 2.00 pt | 2/3 |"), "{table}");
        assert!(
            table.contains("| RTT median | 20.00 ms | 20.30 ms | +0.30 ms | 0.90 ms | 2/3 |"),
            "{table}"
        );
    }

    #[test]
    fn jitter_rows_compare_with_the_rfc3550_expectation() {
        let point = GridPoint::new(20.0, 5.0, 0.0);
        let rows = judge(point, &[sample(40.1, 5.5, (0.0, 0.0, 0.01))]);
        let metrics: Vec<Metric> = rows.iter().map(|r| r.metric).collect();
        assert_eq!(
            metrics,
            [
                Metric::Rtt,
                Metric::FwdJitter,
                Metric::RevJitter,
                Metric::RttJitter
            ]
        );
        assert_eq!(rows[1].good, 1, "5.5 ms is within 0.5 ms of 5.64 ms");
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
