#![no_main]
use libfuzzer_sys::fuzz_target;
use wansteer_lab::topology::Topology;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(t) = Topology::parse(text, "fuzz.yaml")
    {
        let _ = t.plan("wl0000");
    }
});
