//! The standalone agent (as `agent_daemon`) with a global allocator that reports every
//! heap block of 256 KiB or more when it is made or grown, with where (a backtrace on
//! stderr): finds which buffers make up the agent's RSS under LAN traffic.
//!
//! ```text
//! cargo build --release -p wansteer-agent --example agent_daemon_bigallocs
//! AGENT=target/release/examples/agent_daemon_bigallocs scripts/agent-footprint.sh 60 200
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use clap::Parser;

const BIG: usize = 256 * 1024;

struct Reporting;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

fn report(what: &str, size: usize) {
    if size < BIG {
        return;
    }
    // The report itself allocates: not again from inside it.
    if INSIDE.with(|inside| inside.replace(true)) {
        return;
    }
    let trace = std::backtrace::Backtrace::force_capture();
    eprintln!(
        "BIGALLOC {what} {size} bytes on {:?}\n{trace}",
        std::thread::current().name()
    );
    INSIDE.with(|inside| inside.set(false));
}

// SAFETY: forwards to the system allocator; only reports.
unsafe impl GlobalAlloc for Reporting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        report("alloc", layout.size());
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        report("alloc_zeroed", layout.size());
        // SAFETY: same layout, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        report("realloc", new_size);
        // SAFETY: as `GlobalAlloc::realloc` requires, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Reporting = Reporting;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    daemon: wansteer_agent::daemon::DaemonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    wansteer_agent::daemon::run(Args::parse().daemon).await
}
