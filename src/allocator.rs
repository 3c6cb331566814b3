//! The process's heap allocator, chosen by role before `main` runs.
//!
//! `wansteer controller` uses mimalloc: its solve, policy check and push build and free
//! millions of small objects, and glibc's malloc spent about a quarter of a 10,000-site
//! solve in malloc, free and heap consolidation (first full solve 1.19 s with glibc,
//! 0.87–0.99 s with mimalloc; docs/benchmarks/solver.md). Every other role keeps glibc's
//! malloc: the agent measured 22 MiB RSS and 2.4% of a core with it under LAN load, but
//! 41 MiB and 5.6% with mimalloc (per-thread heaps; docs/benchmarks/agent.md), against a
//! 25 MB footprint target.
//!
//! The choice is made once, from `argv[1]`, by a function in `.init_array`: glibc calls
//! those with `argc`/`argv` before Rust's runtime starts, so no Rust allocation happens
//! before it and every block is freed by the allocator that made it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{CStr, c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// Set before `main` when the process runs the controller; never changes after.
static CONTROLLER: AtomicBool = AtomicBool::new(false);

/// Forwards to mimalloc in the controller, to the system allocator otherwise.
#[derive(Debug)]
pub struct ByRole;

/// The allocator this process uses.
fn chosen() -> &'static dyn GlobalAlloc {
    if CONTROLLER.load(Ordering::Relaxed) {
        &MiMalloc
    } else {
        &System
    }
}

// SAFETY: each call forwards to one of two sound allocators; which one is fixed before the
// first allocation, so a block is always reallocated and freed by the allocator that gave it.
unsafe impl GlobalAlloc for ByRole {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { chosen().alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { chosen().alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees; the same allocator made `ptr`.
        unsafe { chosen().dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees; the same allocator made `ptr`.
        unsafe { chosen().realloc(ptr, layout, new_size) }
    }
}

/// Whether a command line runs the controller: `wansteer controller …`.
fn runs_controller(first_argument: Option<&[u8]>) -> bool {
    first_argument == Some(b"controller".as_slice())
}

extern "C" fn choose(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    let first = if argc >= 2 && !argv.is_null() {
        // SAFETY: glibc passes the process's argv, `argc` valid NUL-terminated strings.
        unsafe {
            let arg = *argv.add(1);
            (!arg.is_null()).then(|| CStr::from_ptr(arg).to_bytes())
        }
    } else {
        None
    };
    CONTROLLER.store(runs_controller(first), Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static CHOOSE: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = choose;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_controller_subcommand_picks_mimalloc() {
        assert!(runs_controller(Some(b"controller")));
        assert!(!runs_controller(Some(b"agent")));
        assert!(!runs_controller(Some(b"lab")));
        assert!(!runs_controller(Some(b"--help")));
        assert!(!runs_controller(None));
    }
}
