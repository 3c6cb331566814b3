//! Any bytes as a policy file: `check_source` must answer (accept or diagnose), never panic,
//! and every diagnostic must point inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(diagnostics) = wansteer_policies::check_source("fuzz.yaml", text) {
        assert!(!diagnostics.is_empty());
        // YAML breaks lines at \n, \r\n and a lone \r.
        let lines = text.matches(['\n', '\r']).count() - text.matches("\r\n").count() + 1;
        for diagnostic in diagnostics {
            assert!(diagnostic.line >= 1 && diagnostic.line <= lines, "{diagnostic}");
            assert!(diagnostic.column >= 1, "{diagnostic}");
        }
    }
});
