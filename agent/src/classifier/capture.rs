//! Packet sources: pcap and pcapng files (sniffed by magic, not by extension), and live
//! capture on an interface through pnet on its own thread.
//!
//! File replay walks the bytes in memory with pcap-file's zero-copy parsers and hands each
//! frame to a callback, so the classifier sees borrowed slices and nothing is copied.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::PcapNgParser;
use pcap_file::pcapng::blocks::Block;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;

use super::packet::LinkType;

/// One captured frame, borrowed from the capture.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time since the Unix epoch.
    pub time: Duration,
    pub link: LinkType,
    pub data: &'a [u8],
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a pcap or pcapng capture (magic {0:02x?})")]
    UnknownFormat(Vec<u8>),
    #[error("capture is damaged after {frames} frames: {reason}")]
    Damaged { frames: u64, reason: String },
    #[error("link type {0} carries no IP this classifier decodes")]
    UnsupportedLink(u32),
}

/// What a replay went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub frames: u64,
    /// Frames of interfaces with a link type we do not decode.
    pub skipped_link: u64,
}

/// Reads a whole capture file into memory.
pub fn read_file(path: &Path) -> Result<Vec<u8>, CaptureError> {
    std::fs::read(path).map_err(|source| CaptureError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Calls `on_frame` for every frame of a pcap or pcapng capture held in `bytes`.
///
/// A capture cut off mid-record (a common state for captures copied while being written)
/// ends the replay quietly after the last whole frame.
pub fn replay(
    bytes: &[u8],
    mut on_frame: impl FnMut(Frame<'_>),
) -> Result<ReplaySummary, CaptureError> {
    let magic = bytes.get(..4).unwrap_or(bytes);
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => replay_pcapng(bytes, &mut on_frame),
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d] => replay_pcap(bytes, &mut on_frame),
        _ => Err(CaptureError::UnknownFormat(magic.to_vec())),
    }
}

fn replay_pcap(
    bytes: &[u8],
    on_frame: &mut impl FnMut(Frame<'_>),
) -> Result<ReplaySummary, CaptureError> {
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| CaptureError::Damaged {
        frames: 0,
        reason: e.to_string(),
    })?;
    let linktype = u32::from(parser.header().datalink);
    let link = LinkType::from_linktype(linktype).ok_or(CaptureError::UnsupportedLink(linktype))?;
    let mut summary = ReplaySummary::default();
    while !rest.is_empty() {
        match parser.next_packet(rest) {
            Ok((next, packet)) => {
                rest = next;
                summary.frames += 1;
                on_frame(Frame {
                    time: packet.timestamp,
                    link,
                    data: match packet.data {
                        std::borrow::Cow::Borrowed(data) => data,
                        std::borrow::Cow::Owned(_) => continue,
                    },
                });
            }
            Err(pcap_file::PcapError::IncompleteBuffer) => break,
            Err(e) => {
                return Err(CaptureError::Damaged {
                    frames: summary.frames,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(summary)
}

/// Per-interface decoding facts of a pcapng section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<LinkType>,
    /// Timestamp units per second.
    units_per_second: u64,
}

fn replay_pcapng(
    bytes: &[u8],
    on_frame: &mut impl FnMut(Frame<'_>),
) -> Result<ReplaySummary, CaptureError> {
    let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|e| CaptureError::Damaged {
        frames: 0,
        reason: e.to_string(),
    })?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut summary = ReplaySummary::default();
    while !rest.is_empty() {
        let (next, block) = match parser.next_block(rest) {
            Ok(parsed) => parsed,
            Err(pcap_file::PcapError::IncompleteBuffer) => break,
            Err(e) => {
                return Err(CaptureError::Damaged {
                    frames: summary.frames,
                    reason: e.to_string(),
                });
            }
        };
        rest = next;
        match block {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                let mut units_per_second = 1_000_000u64;
                for option in &idb.options {
                    if let InterfaceDescriptionOption::IfTsResol(resol) = option {
                        units_per_second = if resol & 0x80 != 0 {
                            1u64.checked_shl(u32::from(resol & 0x7f))
                                .unwrap_or(u64::MAX)
                        } else {
                            10u64.checked_pow(u32::from(*resol)).unwrap_or(u64::MAX)
                        };
                    }
                }
                interfaces.push(Interface {
                    link: LinkType::from_linktype(u32::from(idb.linktype)),
                    units_per_second: units_per_second.max(1),
                });
            }
            Block::EnhancedPacket(epb) => {
                summary.frames += 1;
                let Some(interface) = interfaces.get(epb.interface_id as usize).copied() else {
                    summary.skipped_link += 1;
                    continue;
                };
                let Some(link) = interface.link else {
                    summary.skipped_link += 1;
                    continue;
                };
                // pcap-file hands the raw timestamp back as nanoseconds; rescale it.
                let raw = epb.timestamp.as_nanos();
                let nanos =
                    raw.saturating_mul(1_000_000_000) / u128::from(interface.units_per_second);
                let time = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                if let std::borrow::Cow::Borrowed(data) = epb.data {
                    on_frame(Frame { time, link, data });
                }
            }
            Block::SimplePacket(spb) => {
                summary.frames += 1;
                match interfaces.first().and_then(|i| i.link) {
                    Some(link) => {
                        if let std::borrow::Cow::Borrowed(data) = spb.data {
                            on_frame(Frame {
                                time: Duration::ZERO,
                                link,
                                data,
                            });
                        }
                    }
                    None => summary.skipped_link += 1,
                }
            }
            _ => {}
        }
    }
    Ok(summary)
}

/// A frame captured live, owned so it can cross threads.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub time: Duration,
    pub data: Vec<u8>,
}

/// Captures Ethernet frames on `interface` (AF_PACKET through pnet) on a thread of its own
/// and sends them down a bounded channel; when the receiver falls behind, frames are dropped
/// rather than queued without bound. The thread ends when the receiver is dropped.
pub fn spawn_live(
    interface: &str,
    queue: usize,
) -> anyhow::Result<(mpsc::Receiver<LiveFrame>, std::thread::JoinHandle<()>)> {
    use pnet::datalink::{self, Channel};
    let nic = datalink::interfaces()
        .into_iter()
        .find(|nic| nic.name == interface)
        .ok_or_else(|| anyhow::anyhow!("no interface named `{interface}`"))?;
    let config = datalink::Config {
        read_timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let mut rx = match datalink::channel(&nic, config)? {
        Channel::Ethernet(_tx, rx) => rx,
        _ => anyhow::bail!("`{interface}` did not open as an Ethernet channel"),
    };
    let (sender, receiver) = mpsc::sync_channel(queue);
    let handle = std::thread::Builder::new()
        .name(format!("capture-{interface}"))
        .spawn(move || {
            loop {
                match rx.next() {
                    Ok(frame) => {
                        let time = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default();
                        let frame = LiveFrame {
                            time,
                            data: frame.to_vec(),
                        };
                        match sender.try_send(frame) {
                            Ok(()) | Err(mpsc::TrySendError::Full(_)) => {}
                            Err(mpsc::TrySendError::Disconnected(_)) => return,
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        // Wake up now and then to notice a dropped receiver.
                        if sender
                            .try_send(LiveFrame {
                                time: Duration::ZERO,
                                data: Vec::new(),
                            })
                            .is_err_and(|e| matches!(e, mpsc::TrySendError::Disconnected(_)))
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "live capture stopped");
                        return;
                    }
                }
            }
        })?;
    Ok((receiver, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic_pcap(linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&linktype.to_le_bytes());
        for (i, frame) in frames.iter().enumerate() {
            out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(frame);
        }
        out
    }

    #[test]
    fn classic_pcap_frames_come_out_in_order() {
        let bytes = classic_pcap(101, &[b"abc", b"defg"]);
        let mut seen = Vec::new();
        let summary = replay(&bytes, |f| {
            seen.push((f.time.as_secs(), f.link, f.data.to_vec()))
        })
        .unwrap();
        assert_eq!(summary.frames, 2);
        assert_eq!(seen[0], (1, LinkType::RawIp, b"abc".to_vec()));
        assert_eq!(seen[1].2, b"defg");
    }

    #[test]
    fn a_capture_cut_mid_record_keeps_its_whole_frames() {
        let bytes = classic_pcap(1, &[b"abcdef", b"ghijkl"]);
        let cut = &bytes[..bytes.len() - 3];
        let mut count = 0;
        replay(cut, |_| count += 1).unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn text_is_refused_with_a_clear_error() {
        let error = replay(b"hello world", |_| {}).unwrap_err();
        assert!(error.to_string().contains("not a pcap"), "{error}");
        assert!(matches!(
            replay(&classic_pcap(147, &[]), |_| {}),
            Err(CaptureError::UnsupportedLink(147))
        ));
    }
}
