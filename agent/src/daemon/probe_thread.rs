//! The thread the line probers and the STAMP reflector run on.
//!
//! A probe's RTT and jitter are only as good as the moment its timestamps are taken: on a
//! busy router (a build, a DPI burst, a log flood) an ordinary thread wakes milliseconds
//! late, and that lateness reads as jitter nobody has and, at 8 missed 15 ms probes, as a
//! line outage that triggers a failover. Routers run BFD in a high-priority context for the
//! same reason. So the probes get their own OS thread with a single-threaded tokio runtime,
//! asking for real-time scheduling (SCHED_FIFO, low priority 10) when `ProbePriority::Realtime`.
//! The thread blocks almost all the time; the kernel's RT throttling keeps 5% of each core
//! for everyone else even if it did not. Without the privilege (CAP_SYS_NICE) the thread
//! runs at normal priority and says so once.
//!
//! Tasks are spawned onto it through [`ProbeThread::handle`]; sockets must be registered
//! while [`ProbeThread::enter`]ed so their readiness is driven by this thread's reactor,
//! not the agent's main runtime. Dropping the [`ProbeThread`] ends the thread.

use std::thread::JoinHandle;

use tokio::runtime::{EnterGuard, Handle};
use tokio::sync::oneshot;

/// How the probe thread is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbePriority {
    /// SCHED_FIFO 10 when permitted (root or CAP_SYS_NICE), else normal.
    Realtime,
    /// The ordinary time-sharing scheduler.
    Normal,
}

/// `--probe-priority`, the same for the agent and its stand-alone reflector.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ProbePriorityArg {
    /// Scheduling of the thread that sends and reflects probes: `realtime` (SCHED_FIFO when
    /// permitted, so a busy host's late wake-ups do not read as jitter or outages) or `normal`.
    #[arg(
        long,
        value_name = "PRIORITY",
        default_value = "realtime",
        env = "WANSTEER_PROBE_PRIORITY"
    )]
    pub probe_priority: ProbePriority,
}

/// What the thread got from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    Realtime,
    Normal,
}

impl Scheduling {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduling::Realtime => "realtime (SCHED_FIFO 10)",
            Scheduling::Normal => "normal",
        }
    }
}

/// A running probe thread; dropping it stops the thread and every task on it.
#[derive(Debug)]
pub struct ProbeThread {
    handle: Handle,
    scheduling: Scheduling,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProbeThread {
    /// Starts the thread and its runtime; returns once the runtime accepts tasks.
    pub fn start(priority: ProbePriority) -> std::io::Result<ProbeThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_in, ready) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wansteer-probes".into())
            .spawn(move || {
                let scheduling = match priority {
                    ProbePriority::Realtime => ask_for_realtime(),
                    ProbePriority::Normal => Scheduling::Normal,
                };
                let _ = ready_in.send(scheduling);
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
                // Dropping the runtime here cancels the probers and the reflector.
                drop(runtime);
            })?;
        let scheduling = ready.recv().unwrap_or(Scheduling::Normal);
        match scheduling {
            Scheduling::Realtime => tracing::info!("probes run at real-time priority"),
            Scheduling::Normal if priority == ProbePriority::Realtime => tracing::warn!(
                "probes run at normal priority: real-time scheduling was refused (needs \
                 CAP_SYS_NICE); on a busy host late wake-ups read as jitter or outages"
            ),
            Scheduling::Normal => {}
        }
        Ok(ProbeThread {
            handle,
            scheduling,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Spawn probe tasks with this.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Register sockets with this thread's reactor while the guard lives.
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// What the kernel granted.
    pub fn scheduling(&self) -> Scheduling {
        self.scheduling
    }
}

impl Drop for ProbeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// SCHED_FIFO 10 for the calling thread, if the kernel allows it.
fn ask_for_realtime() -> Scheduling {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Scheduling::Realtime
    } else {
        tracing::debug!(
            "sched_setscheduler(SCHED_FIFO): {}",
            std::io::Error::last_os_error()
        );
        Scheduling::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of_this_thread() -> i32 {
        // SAFETY: pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn tasks_run_on_the_probe_thread_with_the_scheduling_it_reports() {
        let thread = ProbeThread::start(ProbePriority::Realtime).expect("thread starts");
        let (tx, rx) = std::sync::mpsc::channel();
        thread.handle().spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send((name, policy_of_this_thread()));
        });
        let (name, policy) = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the task ran");
        assert_eq!(name.as_deref(), Some("wansteer-probes"));
        let expected = match thread.scheduling() {
            Scheduling::Realtime => libc::SCHED_FIFO,
            Scheduling::Normal => libc::SCHED_OTHER,
        };
        assert_eq!(policy, expected);
        // SAFETY: no arguments, no memory.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                thread.scheduling(),
                Scheduling::Realtime,
                "root may use SCHED_FIFO"
            );
        }
    }

    #[test]
    fn normal_priority_is_not_raised() {
        let thread = ProbeThread::start(ProbePriority::Normal).expect("thread starts");
        assert_eq!(thread.scheduling(), Scheduling::Normal);
        let (tx, rx) = std::sync::mpsc::channel();
        thread.handle().spawn(async move {
            let _ = tx.send(policy_of_this_thread());
        });
        let policy = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the task ran");
        assert_eq!(policy, libc::SCHED_OTHER);
    }

    #[test]
    fn dropping_the_thread_cancels_its_tasks() {
        let thread = ProbeThread::start(ProbePriority::Normal).expect("thread starts");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        thread.handle().spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(thread);
        // The task's sender is dropped with the runtime: the channel disconnects.
        assert!(matches!(
            rx.recv_timeout(std::time::Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
