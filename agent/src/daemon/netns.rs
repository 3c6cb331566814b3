//! Sockets inside a named network namespace: created on a short-lived thread that
//! `setns`es into it (a socket stays in the namespace it was created in).

use std::fs::File;
use std::os::fd::AsRawFd;

/// Runs `f` on a thread inside namespace `name` (or here when `None`).
pub fn run_in<T: Send>(name: Option<&str>, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let Some(name) = name else {
        return Ok(f());
    };
    let file = File::open(format!("/run/netns/{name}"))
        .map_err(|e| std::io::Error::new(e.kind(), format!("namespace {name}: {e}")))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns reads the fd, which `file` keeps open during the call, and
                // moves only this thread, which ends after the closure.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|_| std::io::Error::other("thread inside the namespace panicked"))?
    })
}
