//! AF_PACKET plumbing of the emulator: sockets through pnet, one receive and one send thread
//! per direction, and a delivery queue ordered by send time.
//!
//! Sockets are opened inside the line's namespace (a thread `setns`es there) and keep working
//! from any thread afterwards. They get large kernel buffers (`SO_SNDBUFFORCE`, DESIGN §6) so
//! drops happen where the model or the far qdisc decide, not in the emulator, and
//! `PACKET_IGNORE_OUTGOING` so frames the emulator itself sends are never read back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use pnet_datalink::{DataLinkReceiver, DataLinkSender, NetworkInterface};

use super::control::{self, LineStatus, Request, Response, Target};
use super::model::{Direction, DirectionModel, Impairment, Verdict};
use crate::netns;

const SOL_PACKET: libc::c_int = 263;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PR_SET_TIMERSLACK: libc::c_int = 29;
const SOCKET_BUFFER: libc::c_int = 8 << 20;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

struct Scheduled {
    at: Duration,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct DeliveryQueue {
    heap: Mutex<BinaryHeap<Reverse<Scheduled>>>,
    wake: Condvar,
}

struct Shared {
    line: String,
    start: Instant,
    stop: AtomicBool,
    baseline: Impairment,
    /// [up, down]
    models: Mutex<[DirectionModel; 2]>,
    queues: [DeliveryQueue; 2],
    sent: [AtomicU64; 2],
    send_errors: [AtomicU64; 2],
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn status(&self) -> LineStatus {
        let now = self.now();
        let models = self.models.lock().expect("model lock");
        let dir = |i: usize| {
            let mut counters = models[i].counters();
            counters.sent = self.sent[i].load(Ordering::Relaxed);
            counters.send_errors = self.send_errors[i].load(Ordering::Relaxed);
            control::DirectionStatus {
                impairment: *models[i].impairment(),
                counters,
                backlog_us: models[i].backlog(now).as_micros() as u64,
            }
        };
        LineStatus {
            line: self.line.clone(),
            up: dir(0),
            down: dir(1),
        }
    }

    fn handle(&self, request: &Request) -> Response {
        match request {
            Request::Status => Response::ok(self.status()),
            Request::Clear { target } => {
                let mut models = self.models.lock().expect("model lock");
                for i in target.indices() {
                    models[i].set(self.baseline);
                }
                drop(models);
                Response::ok(self.status())
            }
            Request::Change { target, change } => {
                let mut models = self.models.lock().expect("model lock");
                let new: Vec<(usize, Impairment)> = target
                    .indices()
                    .map(|i| (i, models[i].impairment().with(change)))
                    .collect();
                if let Some(err) = new.iter().find_map(|(_, imp)| imp.validate().err()) {
                    return Response::error(err);
                }
                for (i, imp) in new {
                    models[i].set(imp);
                }
                drop(models);
                Response::ok(self.status())
            }
        }
    }
}

/// A running emulator for one line. Dropping it stops its threads.
pub struct Emulator {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    socket_path: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("line", &self.shared.line)
            .field("socket", &self.socket_path)
            .finish()
    }
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::Up => 0,
        Direction::Down => 1,
    }
}

impl Emulator {
    /// Starts emulating line `line` between devices `near` and `far` of namespace `namespace`
    /// with `baseline` settings in both directions; serves `socket` if given.
    pub fn start(
        line: &str,
        namespace: &str,
        near: &str,
        far: &str,
        baseline: Impairment,
        socket: Option<&Path>,
    ) -> anyhow::Result<Emulator> {
        baseline.validate().map_err(anyhow::Error::msg)?;
        let (near_channel, far_channel) = netns::run_in(namespace, || -> anyhow::Result<_> {
            Ok((open(near)?, open(far)?))
        })??;
        let seed = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
        let shared = Arc::new(Shared {
            line: line.to_string(),
            start: Instant::now(),
            stop: AtomicBool::new(false),
            baseline,
            models: Mutex::new([
                DirectionModel::new(baseline, seed),
                DirectionModel::new(baseline, seed.wrapping_add(1)),
            ]),
            queues: [DeliveryQueue::default(), DeliveryQueue::default()],
            sent: [AtomicU64::new(0), AtomicU64::new(0)],
            send_errors: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let (near_tx, near_rx) = near_channel;
        let (far_tx, far_rx) = far_channel;
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f)
        };
        for (direction, rx, tx) in [
            (Direction::Up, near_rx, far_tx),
            (Direction::Down, far_rx, near_tx),
        ] {
            let s = shared.clone();
            threads.push(spawn(
                format!("rx-{line}-{direction:?}"),
                Box::new(move || receive_loop(&s, direction, rx)),
            )?);
            let s = shared.clone();
            threads.push(spawn(
                format!("tx-{line}-{direction:?}"),
                Box::new(move || send_loop(&s, direction, tx)),
            )?);
        }
        let mut emulator = Emulator {
            shared,
            threads,
            socket_path: None,
        };
        if let Some(path) = socket {
            let listener = control::bind(path)?;
            let s = emulator.shared.clone();
            emulator.socket_path = Some(path.to_path_buf());
            emulator.threads.push(spawn(
                format!("ctl-{line}"),
                Box::new(move || control::serve(listener, &s.stop, |r| s.handle(r))),
            )?);
        }
        Ok(emulator)
    }

    pub fn line(&self) -> &str {
        &self.shared.line
    }

    /// Current settings and counters.
    pub fn status(&self) -> LineStatus {
        self.shared.status()
    }

    /// Applies a control request, as the control socket would.
    pub fn apply(&self, request: &Request) -> Response {
        self.shared.handle(request)
    }

    /// Convenience: applies a change to both directions.
    pub fn change(&self, change: super::model::ImpairmentChange) -> anyhow::Result<LineStatus> {
        self.apply(&Request::Change {
            target: Target::Both,
            change,
        })
        .into_result()
    }

    /// Stops all threads and removes the control socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for q in &self.shared.queues {
            q.wake.notify_all();
        }
        if let Some(path) = &self.socket_path {
            control::wake(path);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(path) = self.socket_path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type Channel = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>);

/// Opens an AF_PACKET channel on `dev` of the calling thread's namespace.
fn open(dev: &str) -> anyhow::Result<Channel> {
    let name = std::ffi::CString::new(dev)?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        anyhow::bail!("no device {dev} in this namespace");
    }
    // SAFETY: plain socket(2) call; the fd is handed to pnet, which owns and closes it.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as libc::c_int,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    let set = |level, option, value: libc::c_int| -> std::io::Result<()> {
        // SAFETY: `value` lives across the call and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let configured = set(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER)
        .and_then(|_| set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER))
        .and_then(|_| set(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1));
    if let Err(e) = configured {
        // SAFETY: fd is ours and not yet handed over.
        unsafe { libc::close(fd) };
        return Err(e).context("configuring AF_PACKET socket");
    }
    let interface = NetworkInterface {
        name: dev.to_string(),
        description: String::new(),
        index: ifindex,
        mac: None,
        ips: Vec::new(),
        flags: 0,
    };
    let config = pnet_datalink::linux::Config {
        read_buffer_size: 65_536,
        write_buffer_size: 65_536,
        read_timeout: Some(POLL_INTERVAL),
        socket_fd: Some(fd),
        ..Default::default()
    };
    match pnet_datalink::linux::channel(&interface, config)
        .with_context(|| format!("AF_PACKET channel on {dev}"))?
    {
        pnet_datalink::Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => anyhow::bail!("unexpected channel type on {dev}"),
    }
}

fn receive_loop(shared: &Shared, direction: Direction, mut rx: Box<dyn DataLinkReceiver>) {
    crate::sched::realtime_priority();
    let i = index(direction);
    let mut seq = 0u64;
    let mut errors = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let frame = match rx.next() {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => {
                errors += 1;
                if errors > 1000 {
                    tracing::error!(line = %shared.line, "receive failing, stopping: {e}");
                    return;
                }
                continue;
            }
        };
        let now = shared.now();
        let verdict = shared.models.lock().expect("model lock")[i].admit(now, frame.len());
        if let Verdict::SendAt(at) = verdict {
            seq += 1;
            let queue = &shared.queues[i];
            queue
                .heap
                .lock()
                .expect("queue lock")
                .push(Reverse(Scheduled {
                    at,
                    seq,
                    frame: frame.to_vec(),
                }));
            queue.wake.notify_one();
        }
    }
}

fn send_loop(shared: &Shared, direction: Direction, mut tx: Box<dyn DataLinkSender>) {
    // Wake-ups within microseconds, not the default 50 µs timer slack.
    // SAFETY: prctl with integer arguments only affects this thread's timer slack.
    unsafe { libc::prctl(PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    crate::sched::realtime_priority();
    let i = index(direction);
    let queue = &shared.queues[i];
    let mut heap = queue.heap.lock().expect("queue lock");
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = shared.now();
        let wait = match heap.peek() {
            Some(Reverse(next)) if next.at <= now => {
                let Reverse(item) = heap.pop().expect("peeked");
                drop(heap);
                match tx.send_to(&item.frame, None) {
                    Some(Ok(())) => shared.sent[i].fetch_add(1, Ordering::Relaxed),
                    _ => shared.send_errors[i].fetch_add(1, Ordering::Relaxed),
                };
                heap = queue.heap.lock().expect("queue lock");
                continue;
            }
            Some(Reverse(next)) => next.at - now,
            None => POLL_INTERVAL,
        };
        heap = queue.wake.wait_timeout(heap, wait).expect("queue lock").0;
    }
}
