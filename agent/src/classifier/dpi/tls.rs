//! TLS: the server name (SNI) and ALPN of a ClientHello, and the subject name of the
//! server's certificate (TLS 1.2 and older send it in the clear).
//!
//! Input is the reassembled leading bytes of one TCP direction. Records are walked by hand
//! so a handshake message split over several records (or segments) is put back together
//! before tls-parser reads it; the same handshake reader serves QUIC's CRYPTO stream.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_message_handshake,
};

/// What a ClientHello says about where the client is going.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

/// How far a parser got with the bytes it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<T> {
    /// The bytes so far are consistent with the protocol but incomplete.
    NeedMore,
    Done(T),
    /// These bytes are not this protocol (or are damaged beyond use).
    NotThis,
}

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_CERTIFICATE: u8 = 11;
/// Handshake messages larger than this are refused rather than buffered.
const MAX_HANDSHAKE: usize = 64 * 1024;

/// True when `payload` starts like a TLS handshake record (or SSLv2-compatible hello).
pub fn looks_like_tls(payload: &[u8]) -> bool {
    matches!(payload, [CONTENT_HANDSHAKE, 3, 0..=4, ..])
}

/// Concatenates the handshake-record bodies at the start of `stream`.
/// Returns `None` if the stream does not start with handshake records.
fn handshake_bytes(stream: &[u8]) -> Option<(Vec<u8>, bool)> {
    let mut rest = stream;
    let mut out = Vec::new();
    let mut complete_records_only = true;
    while rest.len() >= 5 {
        if rest[0] != CONTENT_HANDSHAKE || rest[1] != 3 {
            if out.is_empty() {
                return None;
            }
            break;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let body = &rest[5..];
        if body.len() < len {
            out.extend_from_slice(body);
            complete_records_only = false;
            break;
        }
        out.extend_from_slice(&body[..len]);
        rest = &body[len..];
    }
    if out.is_empty() && !stream.is_empty() && !looks_like_tls_prefix(stream) {
        return None;
    }
    Some((out, complete_records_only))
}

fn looks_like_tls_prefix(stream: &[u8]) -> bool {
    match stream {
        [] => true,
        [t] => *t == CONTENT_HANDSHAKE,
        [t, v, ..] => *t == CONTENT_HANDSHAKE && *v == 3,
    }
}

/// Finds the handshake message of `wanted` type in a stream of handshake messages.
fn find_message(handshake: &[u8], wanted: u8) -> Progress<&[u8]> {
    let mut rest = handshake;
    loop {
        if rest.len() < 4 {
            return Progress::NeedMore;
        }
        let len = (usize::from(rest[1]) << 16) | (usize::from(rest[2]) << 8) | usize::from(rest[3]);
        if len > MAX_HANDSHAKE {
            return Progress::NotThis;
        }
        if rest[0] == wanted {
            return if rest.len() < 4 + len {
                Progress::NeedMore
            } else {
                Progress::Done(&rest[..4 + len])
            };
        }
        if rest.len() < 4 + len {
            return Progress::NeedMore;
        }
        rest = &rest[4 + len..];
    }
}

/// Reads the ClientHello at the start of a client's TCP stream.
pub fn client_hello_from_stream(stream: &[u8]) -> Progress<ClientHello> {
    let Some((handshake, _)) = handshake_bytes(stream) else {
        return Progress::NotThis;
    };
    if let Some(&first) = handshake.first()
        && first != HANDSHAKE_CLIENT_HELLO
    {
        return Progress::NotThis;
    }
    match find_message(&handshake, HANDSHAKE_CLIENT_HELLO) {
        Progress::Done(message) => match client_hello_from_message(message) {
            Some(hello) => Progress::Done(hello),
            None => Progress::NotThis,
        },
        Progress::NeedMore => Progress::NeedMore,
        Progress::NotThis => Progress::NotThis,
    }
}

/// Reads one complete ClientHello handshake message (type, 24-bit length, body).
pub fn client_hello_from_message(message: &[u8]) -> Option<ClientHello> {
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)))) =
        parse_tls_message_handshake(message)
    else {
        return None;
    };
    let mut out = ClientHello::default();
    let Some(ext) = hello.ext else {
        return Some(out);
    };
    let Ok((_, extensions)) = parse_tls_extensions(ext) else {
        return Some(out);
    };
    for extension in extensions {
        match extension {
            TlsExtension::SNI(names) => {
                out.sni = names
                    .iter()
                    .find(|(kind, _)| *kind == SNIType::HostName)
                    .and_then(|(_, name)| clean_host_name(name));
            }
            TlsExtension::ALPN(protocols) => {
                out.alpn = protocols
                    .iter()
                    .filter_map(|p| std::str::from_utf8(p).ok().map(str::to_owned))
                    .collect();
            }
            _ => {}
        }
    }
    Some(out)
}

/// Lower-cases a host name and refuses anything that is not plausibly one.
pub fn clean_host_name(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.trim_end_matches('.');
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
    ok.then(|| text.to_ascii_lowercase())
}

/// Reads the subject common name of the first certificate a server sends.
/// `Done(None)` when the handshake went past the point a certificate would be (TLS 1.3).
pub fn certificate_name_from_stream(stream: &[u8]) -> Progress<Option<String>> {
    let Some((handshake, _)) = handshake_bytes(stream) else {
        return Progress::NotThis;
    };
    // The server's flight: ServerHello, then Certificate in TLS <= 1.2.
    let mut rest: &[u8] = &handshake;
    loop {
        if rest.len() < 4 {
            return Progress::NeedMore;
        }
        let len = (usize::from(rest[1]) << 16) | (usize::from(rest[2]) << 8) | usize::from(rest[3]);
        if len > MAX_HANDSHAKE {
            return Progress::NotThis;
        }
        match rest[0] {
            HANDSHAKE_CERTIFICATE => {
                // Body: 3-byte list length, then 3-byte cert length, then the DER.
                let body = &rest[4..];
                if body.len() < 6 {
                    return Progress::NeedMore;
                }
                let cert_len = (usize::from(body[3]) << 16)
                    | (usize::from(body[4]) << 8)
                    | usize::from(body[5]);
                let cert = &body[6..];
                if cert.len() < cert_len.min(4096) {
                    return Progress::NeedMore;
                }
                return Progress::Done(subject_common_name(&cert[..cert_len.min(cert.len())]));
            }
            2 if rest.len() >= 4 + len => rest = &rest[4 + len..],
            2 => return Progress::NeedMore,
            _ => return Progress::Done(None),
        }
    }
}

/// The subject CN of a DER certificate: the last commonName attribute before the key.
/// (Issuer comes before subject in the TBSCertificate, so the last CN is the subject's.)
fn subject_common_name(der: &[u8]) -> Option<String> {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(5).rposition(|w| w == CN_OID)?;
    let value = der.get(at + 5..)?;
    let (&tag, rest) = value.split_first()?;
    if !matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if len >= 0x80 {
        return None;
    }
    // Kept even when it is not a host name ("AnyDesk Client"): the catalogue lists such names.
    let name = std::str::from_utf8(rest.get(..len)?).ok()?;
    let printable = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    printable.then(|| name.trim_start_matches("*.").to_ascii_lowercase())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TLS 1.2-style ClientHello record carrying `sni` and ALPN h2, http/1.1.
    pub fn client_hello_record(sni: &str) -> Vec<u8> {
        let mut ext = Vec::new();
        // server_name
        let name = sni.as_bytes();
        let mut sni_ext = Vec::new();
        sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sni_ext.push(0);
        sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni_ext.extend_from_slice(name);
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni_ext);
        // ALPN
        let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        ext.extend_from_slice(&16u16.to_be_bytes());
        ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);

        let mut body = Vec::new();
        body.extend_from_slice(&[3, 3]);
        body.extend_from_slice(&[0x11; 32]);
        body.push(0); // session id
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&[0x13, 0x01]);
        body.extend_from_slice(&[1, 0]); // compression: null
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);

        let mut handshake = vec![HANDSHAKE_CLIENT_HELLO];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);

        let mut record = vec![CONTENT_HANDSHAKE, 3, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn sni_and_alpn_come_out_of_a_client_hello() {
        let record = client_hello_record("Teams.Microsoft.com");
        let Progress::Done(hello) = client_hello_from_stream(&record) else {
            panic!("not parsed");
        };
        assert_eq!(hello.sni.as_deref(), Some("teams.microsoft.com"));
        assert_eq!(hello.alpn, vec!["h2", "http/1.1"]);
    }

    #[test]
    fn a_client_hello_cut_short_asks_for_more_then_completes() {
        let record = client_hello_record("www.bloomberg.com");
        for cut in [1, 3, 5, 9, 40, record.len() - 1] {
            assert_eq!(
                client_hello_from_stream(&record[..cut]),
                Progress::NeedMore,
                "cut {cut}"
            );
        }
        assert!(matches!(
            client_hello_from_stream(&record),
            Progress::Done(_)
        ));
    }

    #[test]
    fn a_handshake_split_over_two_records_is_joined() {
        let record = client_hello_record("login.salesforce.com");
        let handshake = &record[5..];
        let (a, b) = handshake.split_at(30);
        let mut stream = Vec::new();
        for part in [a, b] {
            stream.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 3]);
            stream.extend_from_slice(&(part.len() as u16).to_be_bytes());
            stream.extend_from_slice(part);
        }
        let Progress::Done(hello) = client_hello_from_stream(&stream) else {
            panic!("not parsed");
        };
        assert_eq!(hello.sni.as_deref(), Some("login.salesforce.com"));
    }

    #[test]
    fn other_protocols_are_refused() {
        assert_eq!(
            client_hello_from_stream(b"GET / HTTP/1.1\r\n"),
            Progress::NotThis
        );
        assert_eq!(
            client_hello_from_stream(b"SSH-2.0-OpenSSH"),
            Progress::NotThis
        );
    }
}
