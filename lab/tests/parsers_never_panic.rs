//! Hostile input never panics the lab's parsers: voice packets off the wire, topology files,
//! control-socket requests. (The same targets run under cargo-fuzz in `lab/fuzz/`.)

use proptest::prelude::*;
use wansteer_lab::emulator::Request;
use wansteer_lab::topology::Topology;
use wansteer_lab::voice::VoicePacket;

proptest! {
    #[test]
    fn voice_decode_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Some(p) = VoicePacket::decode(&bytes) {
            // Whatever decodes re-encodes to the same header.
            prop_assert_eq!(&p.encode(bytes.len())[..20], &bytes[..20]);
        }
    }

    #[test]
    fn topology_parse_any_text(text in "\\PC{0,300}") {
        let _ = Topology::parse(&text, "fuzz.yaml");
    }

    #[test]
    fn topology_parse_mutated_bank(cut in 0usize..1200, insert in "[ -~]{0,8}") {
        let bank = include_str!("../topologies/bank.yaml");
        let at = bank.char_indices().map(|(i, _)| i).find(|&i| i >= cut.min(bank.len())).unwrap_or(bank.len());
        let text = format!("{}{}{}", &bank[..at], insert, &bank[at..]);
        if let Ok(t) = Topology::parse(&text, "bank.yaml") {
            let plan = t.plan("wl0000");
            for v in &plan.veths {
                prop_assert!(v.a_name.len() <= 15 && v.b_name.len() <= 15);
            }
        }
    }

    #[test]
    fn control_request_any_text(text in "\\PC{0,200}") {
        let _ = serde_json::from_str::<Request>(&text);
    }
}

proptest! {
    #[test]
    fn scenario_parse_any_text(text in "\\PC{0,300}") {
        let lines = vec!["br1-mpls".to_string()];
        let nodes = vec!["br1-pc1".to_string(), "dc-dc1".to_string()];
        let _ = wansteer_lab::scenario::Scenario::parse(&text, "fuzz.yaml", &lines, &nodes);
    }

    #[test]
    fn scenario_parse_mutated_file(cut in 0usize..900, insert in "[ -~]{0,8}") {
        let base = include_str!("../scenarios/emulator-selfcheck.yaml");
        let at = base.char_indices().map(|(i, _)| i).find(|&i| i >= cut.min(base.len())).unwrap_or(base.len());
        let text = format!("{}{}{}", &base[..at], insert, &base[at..]);
        let lines = vec!["br1-mpls".to_string()];
        let nodes = vec!["br1-pc1".to_string(), "dc-dc1".to_string()];
        let _ = wansteer_lab::scenario::Scenario::parse(&text, "s.yaml", &lines, &nodes);
    }
}

proptest! {
    #[test]
    fn dns_answer_any_bytes(id in any::<u16>(), bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = wansteer_lab::apps::decode_answers(id, &bytes);
    }
}
