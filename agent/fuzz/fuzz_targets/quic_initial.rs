//! QUIC: header sighting, Initial decryption with keys from the datagram's own DCID, CRYPTO
//! frame walking and reassembly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wansteer_agent::classifier::dpi::quic;

fuzz_target!(|data: &[u8]| {
    let _ = quic::sight(data);
    let _ = quic::crypto_frames(data);
    if let Some(header) = quic::long_header(data)
        && let Some(keys) = quic::InitialKeys::client(1, header.dcid)
    {
        let mut stream = quic::CryptoStream::default();
        stream.add(quic::initial_crypto_frames(data, &keys));
        let _ = stream.client_hello();
    }
});
