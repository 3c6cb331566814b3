//! The classifier in the running agent (`wansteer agent --lan IFACE`): frames captured on
//! the LAN interfaces go to one classifier thread holding the policy's classes; its
//! verdicts come to the event loop (the data plane's only owner), which installs each as a
//! `dpi4`/`dpi6` map element with [`Dataplane::add_dpi_verdict`].
//!
//! ```text
//!  capture thread per LAN iface ──► classifier thread ──► Vec<Verdict> ──► event loop
//!                                        └─► metrics (flows, verdicts, bytes per class)
//! ```
//!
//! Only verdicts that name a class other than the policy's default are installed: an
//! unmatched flow gets the default class from nft already, and an nft map element cannot be
//! overwritten in place (`add element` of an existing key with another mark fails), so a
//! flow whose class changes has its element deleted first. A batch's new elements go into
//! the kernel as one `nft` transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wansteer_policies::model::Policy;

use super::metrics::AgentMetrics;
use super::netns;
use crate::classifier::capture::{self, LiveFrame};
use crate::classifier::flow::Timeouts;
use crate::classifier::packet::LinkType;
use crate::classifier::policy::PolicyClasses;
use crate::classifier::{Catalogue, Classifier, Config, FlowTuple, Verdict};
use crate::dataplane::nft::{self, DPI_MAP_V4, DPI_MAP_V6, FlowKey};
use crate::dataplane::{Dataplane, NFT_TABLE};

/// Frames queued per LAN interface before capture drops (the classifier fell behind).
const CAPTURE_QUEUE: usize = 4096;
/// How often the classifier thread publishes its counters when traffic is quiet.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Installed verdicts remembered per flow. Entries leave when their nft element has timed
/// out; past this bound (more live verdicts than the classifier keeps flows) the memory is
/// cleared, and a later class change of a forgotten flow fails once as an install error.
const REMEMBERED: usize = 16_384;

/// The running classifier: verdict batches for the event loop.
#[derive(Debug)]
pub struct Dpi {
    verdicts: Option<mpsc::Receiver<Vec<Verdict>>>,
    default_class: String,
    installed: InstalledVerdicts,
    metrics: Option<AgentMetrics>,
}

/// Which class each flow's nft verdict element holds, for as long as the element lives
/// (it is added with the classifier's idle timeout and the kernel drops it after that).
/// Class names are shared, so an entry costs the tuple, a pointer and a time.
#[derive(Debug, Default)]
pub struct InstalledVerdicts {
    flows: HashMap<FlowTuple, (Arc<str>, Instant)>,
    classes: Vec<Arc<str>>,
}

impl InstalledVerdicts {
    /// The class installed for `tuple` whose element has not timed out at `now`.
    pub fn class(&self, tuple: &FlowTuple, now: Instant) -> Option<&str> {
        let (class, expires) = self.flows.get(tuple)?;
        (now < *expires).then_some(&**class)
    }

    /// Records an element added at `now`; forgets expired ones when the memory is full.
    pub fn insert(&mut self, tuple: FlowTuple, class: &str, now: Instant) {
        if self.flows.len() >= REMEMBERED {
            self.flows.retain(|_, (_, expires)| now < *expires);
            if self.flows.len() >= REMEMBERED {
                self.flows.clear();
            }
        }
        let class = match self.classes.iter().find(|known| &***known == class) {
            Some(known) => known.clone(),
            None => {
                let new: Arc<str> = Arc::from(class);
                self.classes.push(new.clone());
                new
            }
        };
        let expires = now + verdict_timeout(tuple.proto);
        self.flows.insert(tuple, (class, expires));
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// Starts capture on every `lan` interface (inside `netns`) and the classifier thread.
/// `None` when no LAN interface is given.
pub fn spawn(
    lan: &[String],
    netns: Option<&str>,
    policy: &Policy,
    metrics: Option<AgentMetrics>,
) -> anyhow::Result<Option<Dpi>> {
    if lan.is_empty() {
        return Ok(None);
    }
    let classes = PolicyClasses::new(policy)?;
    let default_class = policy
        .default_class()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let (frames_in, frames) = std_mpsc::sync_channel::<LiveFrame>(CAPTURE_QUEUE);
    for interface in lan {
        let (live, _capture) =
            netns::run_in(netns, || capture::spawn_live(interface, CAPTURE_QUEUE))?
                .map_err(|e| anyhow::anyhow!("capture on LAN interface {interface}: {e:#}"))?;
        let forward = frames_in.clone();
        // Merges this interface's frames into the classifier's one queue (one DNS cache,
        // one flow table for every LAN).
        std::thread::Builder::new()
            .name(format!("lan-{interface}"))
            .spawn(move || {
                for frame in live {
                    if frame.data.is_empty() {
                        continue;
                    }
                    match forward.try_send(frame) {
                        Ok(()) | Err(std_mpsc::TrySendError::Full(_)) => {}
                        Err(std_mpsc::TrySendError::Disconnected(_)) => return,
                    }
                }
            })?;
    }
    drop(frames_in);
    let (verdicts_in, verdicts) = mpsc::channel(1024);
    let classifier = Classifier::new(
        Catalogue::builtin().clone(),
        Some(classes),
        Config::default(),
    );
    let thread_metrics = metrics.clone();
    std::thread::Builder::new()
        .name("classifier".into())
        .spawn(move || classify(classifier, &frames, &verdicts_in, thread_metrics.as_ref()))?;
    Ok(Some(Dpi {
        verdicts: Some(verdicts),
        default_class,
        installed: InstalledVerdicts::default(),
        metrics,
    }))
}

/// The classifier thread: frames in, verdict batches out, until either side goes away.
fn classify(
    mut classifier: Classifier,
    frames: &std_mpsc::Receiver<LiveFrame>,
    verdicts: &mpsc::Sender<Vec<Verdict>>,
    metrics: Option<&AgentMetrics>,
) {
    let mut published = std::time::Instant::now();
    loop {
        match frames.recv_timeout(STATS_EVERY) {
            Ok(frame) => classifier.process_frame(frame.time, LinkType::Ethernet, &frame.data),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let batch = classifier.take_verdicts();
        if !batch.is_empty() && verdicts.blocking_send(batch).is_err() {
            return;
        }
        if let Some(metrics) = metrics
            && published.elapsed() >= STATS_EVERY
        {
            metrics.observe_classifier(
                classifier.counters,
                classifier.table_counters(),
                classifier.live_flows(),
                &classifier.class_stats(),
            );
            published = std::time::Instant::now();
        }
    }
}

/// The next batch of verdicts; never resolves when there is no classifier (or it stopped).
pub async fn next(dpi: &mut Option<Dpi>) -> Vec<Verdict> {
    if let Some(receiver) = dpi.as_mut().and_then(|d| d.verdicts.as_mut()) {
        if let Some(batch) = receiver.recv().await {
            return batch;
        }
        tracing::warn!("the classifier stopped; no more DPI verdicts");
        if let Some(dpi) = dpi.as_mut() {
            dpi.verdicts = None;
        }
    }
    std::future::pending().await
}

/// How long a verdict stays in the nft map: the classifier's idle timeout of the protocol
/// (the conntrack mark keeps the class afterwards for as long as the flow lives).
pub fn verdict_timeout(proto: u8) -> Duration {
    let timeouts = Timeouts::default();
    match proto {
        6 => timeouts.tcp,
        17 => timeouts.udp,
        _ => timeouts.other,
    }
}

pub fn flow_key(tuple: &FlowTuple) -> FlowKey {
    FlowKey {
        source: tuple.src,
        destination: tuple.dst,
        protocol: tuple.proto,
        source_port: tuple.sport,
        destination_port: tuple.dport,
    }
}

/// The nft command that removes a flow's verdict element.
fn delete_element(flow: &FlowKey) -> String {
    let map = if flow.source.is_ipv4() {
        DPI_MAP_V4
    } else {
        DPI_MAP_V6
    };
    format!(
        "delete element inet {NFT_TABLE} {map} {{ {} . {} . {} . {} . {} }}",
        flow.source, flow.destination, flow.protocol, flow.source_port, flow.destination_port
    )
}

/// What to do with one verdict, given the class already installed for its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// The default class (nft gives it anyway) or the class already installed.
    Skip,
    Add,
    /// Another class is installed: delete that element, then add.
    Replace,
}

pub fn install_action(verdict: &Verdict, default_class: &str, installed: Option<&str>) -> Install {
    match installed {
        Some(class) if class == verdict.class => Install::Skip,
        Some(_) => Install::Replace,
        None if verdict.class == default_class => Install::Skip,
        None => Install::Add,
    }
}

/// The nft text adding `verdict`'s element, when its class is in the rule set in force.
fn element_text(dataplane: &Dataplane, verdict: &Verdict) -> Option<String> {
    let mark = dataplane.ruleset()?.class(&verdict.class)?.mark;
    let timeout = verdict_timeout(verdict.tuple.proto).as_secs();
    nft::dpi_element(&flow_key(&verdict.tuple), mark, timeout)
}

impl Dpi {
    /// The installer alone, without capture: verdicts come from the caller (tests, replay).
    pub fn installer(default_class: &str, metrics: Option<AgentMetrics>) -> Dpi {
        Dpi {
            verdicts: None,
            default_class: default_class.to_string(),
            installed: InstalledVerdicts::default(),
            metrics,
        }
    }

    /// Installs a batch of verdicts; returns the errors (the verdicts that did go in stay).
    ///
    /// The batch's new elements go in as one `nft` transaction (one process, a few ms, while
    /// the event loop waits); when that fails, they go one by one through
    /// [`Dataplane::add_dpi_verdict`] so only the bad ones are refused.
    pub fn install(&mut self, dataplane: &Dataplane, batch: Vec<Verdict>) -> Vec<String> {
        let started = Instant::now();
        // The latest verdict of a flow within the batch is the one that counts.
        let mut latest: HashMap<FlowTuple, Verdict> = HashMap::new();
        for verdict in batch {
            latest.insert(verdict.tuple, verdict);
        }
        let mut adds = Vec::new();
        for verdict in latest.into_values() {
            match install_action(
                &verdict,
                &self.default_class,
                self.installed.class(&verdict.tuple, started),
            ) {
                Install::Skip => continue,
                Install::Add => {}
                Install::Replace => {
                    // Best effort: the element may have timed out already.
                    let _ = dataplane
                        .kernel()
                        .nft_text(&delete_element(&flow_key(&verdict.tuple)));
                }
            }
            adds.push(verdict);
        }
        if adds.is_empty() {
            return Vec::new();
        }
        let script = adds
            .iter()
            .map(|verdict| element_text(dataplane, verdict))
            .collect::<Option<Vec<String>>>()
            .map(|lines| lines.join("\n"));
        let all_in = script.is_some_and(|script| dataplane.kernel().nft_text(&script).is_ok());
        let mut errors = Vec::new();
        for verdict in adds {
            let result = if all_in {
                Ok(())
            } else {
                dataplane.add_dpi_verdict(
                    &flow_key(&verdict.tuple),
                    &verdict.class,
                    verdict_timeout(verdict.tuple.proto),
                )
            };
            if let Some(metrics) = &self.metrics {
                metrics.verdict_installed(&verdict.class, result.is_ok());
            }
            match result {
                Ok(()) => {
                    tracing::debug!(class = %verdict.class, reason = %verdict.reason, "dpi verdict");
                    self.installed
                        .insert(verdict.tuple, &verdict.class, Instant::now());
                }
                Err(error) => errors.push(format!(
                    "dpi verdict {} for {}:{} → {}:{}: {error}",
                    verdict.class,
                    verdict.tuple.src,
                    verdict.tuple.sport,
                    verdict.tuple.dst,
                    verdict.tuple.dport
                )),
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.install_took(started.elapsed().as_secs_f64());
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(class: &str) -> Verdict {
        Verdict {
            tuple: FlowTuple {
                proto: 6,
                vlan: None,
                src: "10.1.0.2".parse().unwrap(),
                sport: 40000,
                dst: "203.0.113.9".parse().unwrap(),
                dport: 443,
            },
            app: "teams".into(),
            class: class.into(),
            reason: "tls sni".into(),
        }
    }

    #[test]
    fn only_a_new_non_default_class_reaches_the_kernel() {
        let meetings = "meetings";
        assert_eq!(
            install_action(&verdict("default"), "default", None),
            Install::Skip
        );
        assert_eq!(
            install_action(&verdict("meetings"), "default", None),
            Install::Add
        );
        assert_eq!(
            install_action(&verdict("meetings"), "default", Some(meetings)),
            Install::Skip
        );
        // nft refuses to overwrite a map element with another mark: delete it first.
        assert_eq!(
            install_action(&verdict("bulk"), "default", Some(meetings)),
            Install::Replace
        );
        assert_eq!(
            install_action(&verdict("default"), "default", Some(meetings)),
            Install::Replace
        );
    }

    #[test]
    fn installed_verdicts_are_forgotten_when_their_element_times_out() {
        let mut installed = InstalledVerdicts::default();
        let t0 = Instant::now();
        let flow = verdict("meetings").tuple;
        installed.insert(flow, "meetings", t0);
        assert_eq!(installed.class(&flow, t0), Some("meetings"));
        // The kernel dropped the element: the same verdict must go in again, not be skipped.
        let later = t0 + verdict_timeout(flow.proto);
        assert_eq!(installed.class(&flow, later), None);
        assert_eq!(
            install_action(
                &verdict("meetings"),
                "default",
                installed.class(&flow, later)
            ),
            Install::Add
        );
    }

    #[test]
    fn installed_verdicts_stay_bounded_and_share_class_names() {
        let mut installed = InstalledVerdicts::default();
        let t0 = Instant::now();
        let flow = |n: usize| FlowTuple {
            sport: (n % 60_000) as u16,
            src: std::net::Ipv4Addr::from(0x0a00_0000 + (n / 60_000) as u32).into(),
            ..verdict("x").tuple
        };
        for n in 0..REMEMBERED {
            installed.insert(flow(n), "meetings", t0);
        }
        assert_eq!(installed.len(), REMEMBERED);
        assert_eq!(installed.classes.len(), 1, "one shared name for every flow");
        // Full of expired entries: they go, the live one stays.
        let later = t0 + verdict_timeout(6);
        installed.insert(flow(REMEMBERED), "bulk", later);
        assert_eq!(installed.len(), 1);
        assert_eq!(installed.class(&flow(REMEMBERED), later), Some("bulk"));
        // Full of live entries: cleared rather than grown.
        for n in 0..REMEMBERED {
            installed.insert(flow(n), "meetings", later);
        }
        installed.insert(flow(REMEMBERED + 1), "bulk", later);
        assert!(installed.len() <= 2, "{}", installed.len());
    }

    #[test]
    fn verdicts_live_as_long_as_the_classifier_keeps_the_flow() {
        assert_eq!(verdict_timeout(6), Timeouts::default().tcp);
        assert_eq!(verdict_timeout(17), Timeouts::default().udp);
        assert_eq!(verdict_timeout(1), Timeouts::default().other);
        let text = delete_element(&flow_key(&verdict("x").tuple));
        assert_eq!(
            text,
            "delete element inet wansteer dpi4 { 10.1.0.2 . 203.0.113.9 . 6 . 40000 . 443 }"
        );
    }
}
