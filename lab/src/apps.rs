//! Application traffic with real client bytes for DPI: DNS lookups against a local dnsmasq,
//! and TLS handshakes with real SNIs against a local `openssl s_server` (Debian packages
//! `dnsmasq` and `openssl`). Servers are child processes started inside a namespace and
//! killed when their handle drops.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::netns;

/// A server process inside a namespace; killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    _dir: Option<tempfile_dir::Dir>,
}

impl ServerProcess {
    /// Whether the server is still running (`lab down` kills it with its namespace).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod tempfile_dir {
    //! A private temporary directory removed on drop (certificates live here).
    #[derive(Debug)]
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts dnsmasq on `addr:53` in `namespace`, answering `records` (name → IPv4) and
/// refusing to forward anything (no upstream: the lab talks to nothing outside).
pub fn dns_server(
    namespace: &str,
    addr: IpAddr,
    records: &[(String, Ipv4Addr)],
) -> anyhow::Result<ServerProcess> {
    let mut args = vec![
        "--no-daemon".to_string(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={addr}"),
        "--port=53".into(),
        "--user=root".into(),
        "--pid-file=".into(),
        "--log-facility=-".into(),
    ];
    for (name, ip) in records {
        args.push(format!("--host-record={name},{ip}"));
    }
    let child = netns::run_in(namespace, || {
        Command::new("dnsmasq")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    })?
    .context("cannot start dnsmasq (Debian package dnsmasq)")?;
    let server = ServerProcess { child, _dir: None };
    // Ready when it answers.
    let deadline = Instant::now() + Duration::from_secs(3);
    let probe = records.first().map_or("ready.lab", |r| r.0.as_str());
    while dns_query(
        namespace,
        SocketAddr::new(addr, 53),
        probe,
        Duration::from_millis(100),
    )
    .is_err()
    {
        if Instant::now() > deadline {
            bail!("dnsmasq did not answer on {addr}:53");
        }
    }
    Ok(server)
}

/// Encodes a DNS query (recursion desired, type A, class IN) for `name` with `id`.
pub fn encode_query(id: u16, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            bail!("bad DNS name `{name}`");
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(q)
}

/// Reads the IPv4 answers of a response to query `id`; malformed input is an error, never a
/// panic.
pub fn decode_answers(id: u16, msg: &[u8]) -> anyhow::Result<Vec<Ipv4Addr>> {
    let u16_at = |i: usize| -> anyhow::Result<u16> {
        let b = msg.get(i..i + 2).context("truncated DNS message")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    };
    if u16_at(0)? != id {
        bail!("DNS answer for another query");
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        bail!("not a DNS response");
    }
    if flags & 0x000f != 0 {
        bail!("DNS error code {}", flags & 0x000f);
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    let skip_name = |mut at: usize| -> anyhow::Result<usize> {
        loop {
            let len = *msg.get(at).context("truncated name")? as usize;
            if len == 0 {
                return Ok(at + 1);
            }
            if len & 0xc0 == 0xc0 {
                return Ok(at + 2);
            }
            at += 1 + len;
        }
    };
    for _ in 0..qd {
        at = skip_name(at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(at)?;
        let (rtype, len) = (u16_at(at)?, u16_at(at + 8)? as usize);
        let data = msg
            .get(at + 10..at + 10 + len)
            .context("truncated answer")?;
        if rtype == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Ok(out)
}

/// Looks `name` up at `server` from inside `namespace`.
pub fn dns_query(
    namespace: &str,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Ipv4Addr>> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let socket = netns::run_in(namespace, || UdpSocket::bind(bind))??;
    socket.set_read_timeout(Some(timeout))?;
    let id: u16 = rand::random();
    socket.send_to(&encode_query(id, name)?, server)?;
    let mut buf = [0u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).context("no DNS answer")?;
    decode_answers(id, &buf[..n])
}

/// Starts `openssl s_server` on `addr:port` in `namespace` with a fresh self-signed
/// certificate for `cn`.
pub fn tls_server(
    namespace: &str,
    addr: IpAddr,
    port: u16,
    cn: &str,
) -> anyhow::Result<ServerProcess> {
    let dir = std::env::temp_dir().join(format!(
        "wansteer-tls-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    let dir = tempfile_dir::Dir(dir);
    let (key, cert): (PathBuf, PathBuf) = (dir.0.join("key.pem"), dir.0.join("cert.pem"));
    netns::run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key.display().to_string(),
            "-out",
            &cert.display().to_string(),
        ],
    )
    .context("cannot make a certificate (Debian package openssl)")?;
    let accept = SocketAddr::new(addr, port).to_string();
    let child = netns::run_in(namespace, || {
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &accept])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    })??;
    let server = ServerProcess {
        child,
        _dir: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let up = netns::run_in(namespace, || {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(addr, port),
                Duration::from_millis(100),
            )
        })?;
        if up.is_ok() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("openssl s_server did not listen on {accept}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One TLS handshake from `namespace` to `addr:port` with SNI `sni` (OpenSSL's own client, so
/// the ClientHello is a real one); returns the handshake time. Gives up after 5 s (a dead line
/// would otherwise keep the client retrying SYNs).
pub fn tls_connect(namespace: &str, addr: SocketAddr, sni: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut child = netns::run_in(namespace, || {
        Command::new("openssl")
            .args([
                "s_client",
                "-brief",
                "-connect",
                &addr.to_string(),
                "-servername",
                sni,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    })??;
    let deadline = start + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(start.elapsed());
            }
            bail!("TLS handshake with {addr} (SNI {sni}) failed: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("TLS handshake with {addr} (SNI {sni}) timed out after 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer_codec() {
        let q = encode_query(0x1234, "crm.bank.example").unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(&q[12..16], b"\x03crm");
        // A response: the query echoed, then one A answer with a compressed name.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 11]);
        assert_eq!(
            decode_answers(0x1234, &r).unwrap(),
            [Ipv4Addr::new(10, 0, 0, 11)]
        );
        assert!(decode_answers(0x9999, &r).is_err());
        assert!(decode_answers(0x1234, &r[..r.len() - 3]).is_err());
        assert!(encode_query(1, "bad..name").is_err());
    }
}
