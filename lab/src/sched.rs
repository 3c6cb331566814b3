//! Scheduling for the lab's timing-critical threads (emulator, echo probes).

/// Real-time priority (SCHED_FIFO 10) for the calling thread: on a loaded 2-core host,
/// ordinary threads wake milliseconds late, and that lateness would show up as delay and
/// jitter nobody configured (netem runs in softirq context for the same reason). These
/// threads block almost all the time, and the kernel's RT throttling keeps 5% of each core for
/// everyone else. Best effort: without the privilege the thread runs, less precisely.
pub fn realtime_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 means the calling thread; `param` lives across the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        tracing::debug!("no real-time priority: {}", std::io::Error::last_os_error());
    }
}
