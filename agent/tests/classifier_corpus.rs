//! Agreement with nDPI's labels on the shared corpus (`../shared/corpus/ndpi`).
//!
//! Every capture of the public half is replayed through the classifier and each flow's class
//! is compared with the classes the corpus accepts for it (lenient scoring, as
//! `expected_flows.py --score` does). The floor sits a little under the figure reached so a
//! regression fails the suite; docs/benchmarks/classifier.md has the exact figure.
//! Set `WANSTEER_PREDICTIONS=FILE` to also write the predictions for the Python scorer.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wansteer_agent::classifier::capture;
use wansteer_agent::classifier::{Catalogue, Classifier, Config, FlowRecord};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/ndpi");

/// Lenient agreement must not fall below this (reached: see docs/benchmarks/classifier.md).
const LENIENT_FLOOR: f64 = 0.96;

fn classify_capture(path: &Path) -> Vec<FlowRecord> {
    let bytes = capture::read_file(path).unwrap();
    let config = Config {
        max_flows: 1 << 20,
        ..Config::default()
    };
    let mut classifier = Classifier::new(Catalogue::builtin().clone(), None, config);
    classifier.keep_flow_records(true);
    capture::replay(&bytes, |frame| {
        classifier.process_frame(frame.time, frame.link, frame.data)
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    classifier.finish()
}

type FlowId = (String, String, Vec<(IpAddr, u16)>);

fn flow_id(pcap: &str, l4: &str, a: (IpAddr, u16), b: (IpAddr, u16)) -> FlowId {
    let mut ends = vec![a, b];
    ends.sort();
    (pcap.to_owned(), l4.to_owned(), ends)
}

#[test]
fn agreement_with_ndpi_labels_stays_above_the_floor() {
    let corpus = PathBuf::from(CORPUS);
    let expected_path = corpus.join("public/expected_flows.json");
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("corpus missing at {}: {e}", expected_path.display())),
    )
    .unwrap();

    let mut predictions: HashMap<FlowId, Vec<(Option<u16>, String)>> = HashMap::new();
    let mut dump = Vec::new();
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(corpus.join("public/pcap"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    pcaps.sort();
    for path in &pcaps {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for record in classify_capture(path) {
            let v = &record.verdict;
            let id = flow_id(
                &name,
                &v.tuple.l4_name(),
                (v.tuple.src, v.tuple.sport),
                (v.tuple.dst, v.tuple.dport),
            );
            predictions
                .entry(id)
                .or_default()
                .push((v.tuple.vlan, v.class.clone()));
            dump.push(serde_json::json!({
                "pcap": name, "l4": v.tuple.l4_name(), "src": v.tuple.src.to_string(),
                "sport": v.tuple.sport, "dst": v.tuple.dst.to_string(), "dport": v.tuple.dport,
                "vlan": v.tuple.vlan, "app": v.app, "sdwan_class": v.class, "reason": v.reason,
            }));
        }
    }
    if let Ok(out) = std::env::var("WANSTEER_PREDICTIONS") {
        std::fs::write(out, serde_json::to_string(&dump).unwrap()).unwrap();
    }

    // class -> (flows, agreeing)
    let mut per_class: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut misses = Vec::new();
    for flow in &expected {
        let text = |key: &str| flow[key].as_str().unwrap_or_default().to_owned();
        let port = |key: &str| flow[key].as_u64().unwrap_or(0) as u16;
        let truth = text("sdwan_class");
        let accept: Vec<String> = flow["accept_classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let entry = per_class.entry(truth.clone()).or_default();
        entry.0 += 1;
        // nDPI prints some IPv6 addresses in a non-standard form that does not parse; those
        // flows count as misses.
        let (Ok(src), Ok(dst)) = (text("src").parse::<IpAddr>(), text("dst").parse::<IpAddr>())
        else {
            misses.push(format!("{} unparsable address", text("pcap")));
            continue;
        };
        let id = flow_id(
            &text("pcap"),
            &text("l4"),
            (src, port("sport")),
            (dst, port("dport")),
        );
        let vlan = flow["vlan"].as_u64().map(|v| v as u16);
        let predicted = predictions.get(&id).and_then(|candidates| {
            candidates
                .iter()
                .find(|(v, _)| vlan.is_none() || *v == vlan)
                .or(candidates.first())
                .map(|(_, class)| class.clone())
        });
        match predicted {
            Some(class) if accept.contains(&class) => entry.1 += 1,
            other => misses.push(format!(
                "{} {} {}:{} {}:{} {} -> {:?}",
                text("pcap"),
                text("l4"),
                src,
                port("sport"),
                dst,
                port("dport"),
                text("ndpi_label"),
                other
            )),
        }
    }
    let total: u32 = per_class.values().map(|(n, _)| n).sum();
    let agreeing: u32 = per_class.values().map(|(_, ok)| ok).sum();
    let lenient = f64::from(agreeing) / f64::from(total);
    println!("{:<16} {:>6} {:>8}", "class", "flows", "lenient");
    for (class, (n, ok)) in &per_class {
        println!(
            "{class:<16} {n:>6} {:>7.1}%",
            100.0 * f64::from(*ok) / f64::from(*n)
        );
    }
    println!("{:<16} {total:>6} {:>7.1}%", "ALL", 100.0 * lenient);
    for miss in &misses {
        println!("miss: {miss}");
    }
    assert!(
        lenient >= LENIENT_FLOOR,
        "lenient agreement {:.1}% fell below the floor {:.1}%",
        100.0 * lenient,
        100.0 * LENIENT_FLOOR
    );
}
