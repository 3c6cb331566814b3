//! The whole packet path: link decoding, flow table, DPI, verdicts, on every link type.
//! The input is split into frames at 0xff 0xfe markers so one run drives several packets
//! of the same flows.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wansteer_agent::classifier::packet::LinkType;
use wansteer_agent::classifier::{Catalogue, Classifier, Config};

fuzz_target!(|data: &[u8]| {
    let mut classifier = Classifier::new(
        Catalogue::builtin().clone(),
        None,
        Config { max_flows: 64, ..Config::default() },
    );
    let (kind, rest) = data.split_first().unwrap_or((&0, &[]));
    let link = [LinkType::Ethernet, LinkType::RawIp, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Null]
        [usize::from(*kind) % 5];
    for (i, frame) in rest.split(|&b| b == 0xff).enumerate() {
        classifier.process_frame(Duration::from_millis(i as u64 * 10), link, frame);
    }
    let _ = classifier.take_verdicts();
    let _ = classifier.finish();
});
