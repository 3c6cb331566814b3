//! QUIC: the server name of a connection from its client Initial packets.
//!
//! IETF QUIC (v1 RFC 9000/9001, v2 RFC 9369, drafts 23–34 and mvfst's draft builds) protects
//! Initials with keys anyone can derive from the client's Destination Connection ID: derive
//! them (HKDF with `ring`), remove header protection, open the AES-128-GCM payload, collect
//! the CRYPTO frames (a large ClientHello spans two or three Initials) and read the
//! ClientHello. Google QUIC (Q0xx) carries its CHLO in the clear; its SNI tag is read directly.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, quic as hp};
use ring::hkdf;

use super::tls::{self, ClientHello, Progress};

const V1: u32 = 0x0000_0001;
const V2: u32 = 0x6b33_43cf;
const SALT_V1: [u8; 20] = hex20("38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
const SALT_V2: [u8; 20] = hex20("0dede3def700a6db819381be6e269dcbf9bd2ed9");
const SALT_DRAFT_29: [u8; 20] = hex20("afbfec289993d24c9e9786f19c6111e04390a899");
const SALT_DRAFT_23: [u8; 20] = hex20("c3eef712c72ebb5a11a7d2432bb46365bef9f502");
/// Google QUIC versions that adopted IETF Initial protection (Chrome 2020–2021).
const Q050: u32 = u32::from_be_bytes(*b"Q050");
const T050: u32 = u32::from_be_bytes(*b"T050");
const T051: u32 = u32::from_be_bytes(*b"T051");
const SALT_Q050: [u8; 20] = hex20("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45");
const SALT_T050: [u8; 20] = hex20("7ff579e5acd072915580304c43a2367c60488310");
const SALT_T051: [u8; 20] = hex20("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d");

const fn hex20(text: &str) -> [u8; 20] {
    let bytes = text.as_bytes();
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not hex"),
    }
}

/// The Initial salt and label prefix a version uses, or `None` for versions we cannot open.
fn version_params(version: u32) -> Option<(&'static [u8; 20], &'static str)> {
    match version {
        V1 => Some((&SALT_V1, "quic ")),
        V2 => Some((&SALT_V2, "quicv2 ")),
        0xff00_001d..=0xff00_0022 => Some((&SALT_DRAFT_29, "quic ")),
        0xff00_0017..=0xff00_001c => Some((&SALT_DRAFT_23, "quic ")),
        // Facebook mvfst builds of draft-22/27 and the mvfst experimental versions.
        0xface_b001 | 0xface_b002 | 0xface_b00e => Some((&SALT_DRAFT_23, "quic ")),
        0xface_b003 => Some((&SALT_DRAFT_29, "quic ")),
        Q050 => Some((&SALT_Q050, "quic ")),
        T050 => Some((&SALT_T050, "quic ")),
        T051 => Some((&SALT_T051, "quic ")),
        _ => None,
    }
}

/// True if the long-header type bits of `first` mean Initial for `version`.
fn is_initial(version: u32, first: u8) -> bool {
    let kind = (first >> 4) & 0b11;
    if version == V2 {
        kind == 0b01
    } else {
        kind == 0b00
    }
}

/// Keys that open a client's Initial packets.
pub struct InitialKeys {
    key: LessSafeKey,
    iv: [u8; 12],
    hp: hp::HeaderProtectionKey,
}

impl std::fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialKeys { .. }")
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &str, out: &mut [u8]) -> Option<()> {
    let length = (out.len() as u16).to_be_bytes();
    let full_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &full_len, b"tls13 ", label.as_bytes(), &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

impl InitialKeys {
    /// Derives the client Initial keys for `version` from the client's first DCID.
    pub fn client(version: u32, dcid: &[u8]) -> Option<InitialKeys> {
        let (salt, prefix) = version_params(version)?;
        let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
        let mut secret = [0u8; 32];
        expand_label(&initial, "client in", &mut secret)?;
        let secret = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let (mut key, mut iv, mut hp_key) = ([0u8; 16], [0u8; 12], [0u8; 16]);
        expand_label(&secret, &format!("{prefix}key"), &mut key)?;
        expand_label(&secret, &format!("{prefix}iv"), &mut iv)?;
        expand_label(&secret, &format!("{prefix}hp"), &mut hp_key)?;
        Some(InitialKeys {
            key: LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: hp::HeaderProtectionKey::new(&hp::AES_128, &hp_key).ok()?,
        })
    }
}

/// Reads a QUIC variable-length integer.
fn varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let first = *data.get(*at)?;
    let len = 1usize << (first >> 6);
    let bytes = data.get(*at..*at + len)?;
    let mut value = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    *at += len;
    Some(value)
}

/// The clear part of a long-header packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongHeader<'a> {
    pub version: u32,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
}

/// Reads the version and connection IDs of a long-header packet.
pub fn long_header(datagram: &[u8]) -> Option<LongHeader<'_>> {
    let first = *datagram.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let version = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
    let dcid_len = usize::from(*datagram.get(5)?);
    let dcid = datagram.get(6..6 + dcid_len)?;
    let scid_len = usize::from(*datagram.get(6 + dcid_len)?);
    let scid = datagram.get(7 + dcid_len..7 + dcid_len + scid_len)?;
    if dcid_len > 20 || scid_len > 20 {
        return None;
    }
    Some(LongHeader {
        version,
        dcid,
        scid,
    })
}

/// A CRYPTO frame's offset and data, copied out of the decrypted packet.
pub type CryptoChunk = (u64, Vec<u8>);

/// Opens every Initial packet of one datagram (coalesced packets included) with `keys`
/// and returns their CRYPTO frames. Packets that do not open are skipped.
pub fn initial_crypto_frames(datagram: &[u8], keys: &InitialKeys) -> Vec<CryptoChunk> {
    let mut chunks = Vec::new();
    let mut rest = datagram;
    while let Some((used, frames)) = open_one(rest, keys) {
        chunks.extend(frames);
        rest = &rest[used..];
        if rest.first().is_none_or(|b| b & 0x80 == 0) {
            break;
        }
    }
    chunks
}

/// Opens one Initial packet at the start of `data`: (bytes it occupies, its CRYPTO frames).
fn open_one(data: &[u8], keys: &InitialKeys) -> Option<(usize, Vec<CryptoChunk>)> {
    let header = long_header(data)?;
    if !is_initial(header.version, data[0]) {
        // Another packet type in the datagram: skip it by its length field if we can.
        return None;
    }
    let mut at = 7 + header.dcid.len() + header.scid.len();
    let token_len = usize::try_from(varint(data, &mut at)?).ok()?;
    at = at.checked_add(token_len)?;
    let length = usize::try_from(varint(data, &mut at)?).ok()?;
    let pn_offset = at;
    let end = pn_offset.checked_add(length)?;
    if end > data.len() || length < 20 {
        return None;
    }
    let sample = data.get(pn_offset + 4..pn_offset + 20)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let mut packet = data[..end].to_vec();
    packet[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(packet[0] & 0x03) + 1;
    let mut pn: u64 = 0;
    for i in 0..pn_len {
        packet[pn_offset + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(packet[pn_offset + i]);
    }
    let mut nonce = keys.iv;
    for (i, b) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let (head, body) = packet.split_at_mut(pn_offset + pn_len);
    let plain = keys
        .key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&*head), body)
        .ok()?;
    Some((end, crypto_frames(plain)))
}

/// Walks the frames of a decrypted Initial payload and keeps the CRYPTO frames.
pub fn crypto_frames(plain: &[u8]) -> Vec<CryptoChunk> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < plain.len() {
        let Some(kind) = varint(plain, &mut at) else {
            break;
        };
        match kind {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, ranges, [ECN counts].
                let parsed = (|| {
                    varint(plain, &mut at)?;
                    varint(plain, &mut at)?;
                    let ranges = varint(plain, &mut at)?;
                    varint(plain, &mut at)?;
                    for _ in 0..ranges.min(256) {
                        varint(plain, &mut at)?;
                        varint(plain, &mut at)?;
                    }
                    if kind == 0x03 {
                        for _ in 0..3 {
                            varint(plain, &mut at)?;
                        }
                    }
                    Some(())
                })();
                if parsed.is_none() {
                    break;
                }
            }
            0x06 => {
                let (Some(offset), Some(len)) = (varint(plain, &mut at), varint(plain, &mut at))
                else {
                    break;
                };
                let Some(data) = usize::try_from(len)
                    .ok()
                    .and_then(|len| plain.get(at..at.checked_add(len)?))
                else {
                    break;
                };
                at += data.len();
                out.push((offset, data.to_vec()));
            }
            _ => break, // CONNECTION_CLOSE or a frame an Initial should not carry
        }
    }
    out
}

/// Puts CRYPTO frames of several Initials back in order, up to a cap.
#[derive(Debug, Clone, Default)]
pub struct CryptoStream {
    chunks: Vec<CryptoChunk>,
    held: usize,
}

/// CRYPTO bytes kept per flow at most.
const CRYPTO_CAP: usize = 64 * 1024;

impl CryptoStream {
    pub fn add(&mut self, chunks: Vec<CryptoChunk>) {
        for (offset, data) in chunks {
            if offset > CRYPTO_CAP as u64 || self.held + data.len() > CRYPTO_CAP {
                continue;
            }
            self.held += data.len();
            self.chunks.push((offset, data));
        }
    }

    /// The contiguous bytes from offset 0.
    pub fn contiguous(&self) -> Vec<u8> {
        let mut sorted: Vec<&CryptoChunk> = self.chunks.iter().collect();
        sorted.sort_by_key(|(offset, _)| *offset);
        let mut out: Vec<u8> = Vec::new();
        for (offset, data) in sorted {
            let offset = *offset as usize;
            if offset > out.len() {
                break;
            }
            let skip = out.len() - offset;
            if skip < data.len() {
                out.extend_from_slice(&data[skip..]);
            }
        }
        out
    }

    /// The ClientHello, once its bytes are all here. Q050 carries a gQUIC CHLO instead.
    pub fn client_hello(&self) -> Progress<ClientHello> {
        let bytes = self.contiguous();
        if bytes.len() < 4 {
            return Progress::NeedMore;
        }
        if bytes.starts_with(b"CHLO") {
            return match chlo_sni(&bytes) {
                Some(sni) => Progress::Done(ClientHello {
                    sni: Some(sni),
                    alpn: Vec::new(),
                }),
                None if bytes.len() < 4096 => Progress::NeedMore,
                None => Progress::NotThis,
            };
        }
        if bytes[0] != 1 {
            return Progress::NotThis;
        }
        let len =
            (usize::from(bytes[1]) << 16) | (usize::from(bytes[2]) << 8) | usize::from(bytes[3]);
        if len > CRYPTO_CAP {
            return Progress::NotThis;
        }
        if bytes.len() < 4 + len {
            return Progress::NeedMore;
        }
        match tls::client_hello_from_message(&bytes[..4 + len]) {
            Some(hello) => Progress::Done(hello),
            None => Progress::NotThis,
        }
    }
}

/// What one UDP datagram says at first sight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sighting<'a> {
    /// An IETF QUIC client Initial we have keys for.
    Initial(LongHeader<'a>),
    /// Some other long-header QUIC packet (a version we cannot open, Handshake, Retry…).
    OtherLong(u32),
    /// Google QUIC (Q0xx) with its version and, when present, the CHLO's SNI.
    Gquic { sni: Option<String> },
}

/// Recognises QUIC in a datagram.
pub fn sight(datagram: &[u8]) -> Option<Sighting<'_>> {
    if let Some(sni) = gquic(datagram) {
        return Some(Sighting::Gquic { sni });
    }
    let header = long_header(datagram)?;
    if datagram[0] & 0x40 == 0 && header.version != 0 {
        return None; // the fixed bit must be set
    }
    if version_params(header.version).is_some() {
        if is_initial(header.version, datagram[0]) && datagram.len() >= 1200 {
            return Some(Sighting::Initial(header));
        }
        return Some(Sighting::OtherLong(header.version));
    }
    None
}

/// Google QUIC before IETF framing: a public header with a `Q0xx` version, and a CHLO
/// handshake message in the clear. `Some(sni)` for gQUIC, `None` otherwise.
fn gquic(datagram: &[u8]) -> Option<Option<String>> {
    let flags = *datagram.first()?;
    let version_at = if flags & 0x80 != 0 {
        1 // Q046+ long header
    } else if flags & 0x01 != 0 && flags & 0x08 != 0 {
        9 // public flags, 8-byte connection id, version
    } else if flags & 0x01 != 0 {
        1
    } else {
        return None;
    };
    let version = datagram.get(version_at..version_at + 4)?;
    if !(version[0] == b'Q' && version[1..].iter().all(u8::is_ascii_digit)) {
        return None;
    }
    if version_params(u32::from_be_bytes(version.try_into().ok()?)).is_some() {
        return None; // Q050: protected like IETF Initials, opened there
    }
    let chlo = datagram.windows(4).position(|w| w == b"CHLO");
    Some(chlo.and_then(|at| chlo_sni(&datagram[at..])))
}

/// Reads the SNI tag of a gQUIC CHLO message (tag, count, padding, tag/end-offset table, values).
fn chlo_sni(message: &[u8]) -> Option<String> {
    let count = usize::from(u16::from_le_bytes(message.get(4..6)?.try_into().ok()?));
    let table = message.get(8..8 + count.checked_mul(8)?)?;
    let values = &message[8 + count * 8..];
    let mut start = 0usize;
    for entry in table.chunks_exact(8) {
        let end = u32::from_le_bytes(entry[4..8].try_into().ok()?) as usize;
        if &entry[..4] == b"SNI\0" {
            return tls::clean_host_name(values.get(start..end)?);
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9001 Appendix A.2: the client's protected Initial, header then 1,162 bytes.
    pub(crate) fn rfc9001_client_initial() -> Vec<u8> {
        unhex(include_str!("testdata/rfc9001_client_initial.hex"))
    }

    #[test]
    fn rfc9001_appendix_a_keys_open_the_client_initial() {
        let datagram = rfc9001_client_initial();
        let Some(Sighting::Initial(header)) = sight(&datagram) else {
            panic!("not seen as an Initial");
        };
        assert_eq!(header.dcid, unhex("8394c8f03e515708"));
        let keys = InitialKeys::client(V1, header.dcid).unwrap();
        let frames = initial_crypto_frames(&datagram, &keys);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, 0);
        assert_eq!(frames[0].1.len(), 241);
        let mut stream = CryptoStream::default();
        stream.add(frames);
        let Progress::Done(hello) = stream.client_hello() else {
            panic!("no ClientHello");
        };
        assert_eq!(hello.sni.as_deref(), Some("example.com"));
    }

    #[test]
    fn rfc9369_appendix_a_v2_client_initial_opens() {
        let datagram = unhex(include_str!("testdata/rfc9369_client_initial.hex"));
        let Some(Sighting::Initial(header)) = sight(&datagram) else {
            panic!("v2 Initial not seen");
        };
        let keys = InitialKeys::client(V2, header.dcid).unwrap();
        let mut stream = CryptoStream::default();
        stream.add(initial_crypto_frames(&datagram, &keys));
        assert!(
            matches!(stream.client_hello(), Progress::Done(h) if h.sni.as_deref() == Some("example.com"))
        );
        // Opening it with v1 keys fails: the version's salt matters.
        let v1_keys = InitialKeys::client(V1, header.dcid).unwrap();
        assert!(initial_crypto_frames(&datagram, &v1_keys).is_empty());
    }

    #[test]
    fn rfc9001_appendix_a_derived_values() {
        // A.1: client key/iv/hp from DCID 0x8394c8f03e515708.
        let dcid = unhex("8394c8f03e515708");
        let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, &SALT_V1).extract(&dcid);
        let mut secret = [0u8; 32];
        expand_label(&initial, "client in", &mut secret).unwrap();
        assert_eq!(
            secret.to_vec(),
            unhex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        let mut hp_key = [0u8; 16];
        expand_label(&prk, "quic key", &mut key).unwrap();
        expand_label(&prk, "quic iv", &mut iv).unwrap();
        expand_label(&prk, "quic hp", &mut hp_key).unwrap();
        assert_eq!(key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hp_key.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn a_client_hello_split_over_two_initials_is_reassembled() {
        let datagram = rfc9001_client_initial();
        let header = long_header(&datagram).unwrap();
        let keys = InitialKeys::client(V1, header.dcid).unwrap();
        let (offset, data) = initial_crypto_frames(&datagram, &keys).remove(0);
        let (a, b) = data.split_at(100);
        let mut stream = CryptoStream::default();
        stream.add(vec![(offset + 100, b.to_vec())]);
        assert_eq!(stream.client_hello(), Progress::NeedMore);
        stream.add(vec![(offset, a.to_vec())]);
        assert!(
            matches!(stream.client_hello(), Progress::Done(h) if h.sni.as_deref() == Some("example.com"))
        );
    }

    #[test]
    fn a_tampered_initial_does_not_open() {
        let mut datagram = rfc9001_client_initial();
        let last = datagram.len() - 1;
        datagram[last] ^= 1;
        let header = long_header(&datagram).unwrap();
        let keys = InitialKeys::client(V1, header.dcid).unwrap();
        assert!(initial_crypto_frames(&datagram, &keys).is_empty());
    }

    #[test]
    fn gquic_chlo_sni_is_read() {
        let mut packet = vec![0x0d];
        packet.extend_from_slice(&[1; 8]);
        packet.extend_from_slice(b"Q035");
        packet.extend_from_slice(&[0; 14]);
        packet.extend_from_slice(b"CHLO");
        packet.extend_from_slice(&2u16.to_le_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(b"PAD\0");
        packet.extend_from_slice(&3u32.to_le_bytes());
        packet.extend_from_slice(b"SNI\0");
        packet.extend_from_slice(&18u32.to_le_bytes());
        packet.extend_from_slice(b"---www.youtube.com");
        assert_eq!(
            sight(&packet),
            Some(Sighting::Gquic {
                sni: Some("www.youtube.com".into())
            })
        );
    }
}
