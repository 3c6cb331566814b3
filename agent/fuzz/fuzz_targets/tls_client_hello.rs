//! TLS: ClientHello and certificate readers over arbitrary stream prefixes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wansteer_agent::classifier::dpi::tls;

fuzz_target!(|data: &[u8]| {
    let _ = tls::client_hello_from_stream(data);
    let _ = tls::certificate_name_from_stream(data);
    let _ = tls::client_hello_from_message(data);
});
