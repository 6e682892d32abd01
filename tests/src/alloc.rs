//! A counting global allocator for the test binaries: heap bytes in use and their peak, seen
//! by requested size, so a reservation that is never touched (invisible to RSS) still counts,
//! and the figures mean the same on every operating system.
//!
//! Allocation is process-wide, so every scenario holds a shared gate ([`Scenario`]) and one that
//! measures trades it for exclusive access ([`measure`]): measurements never overlap another
//! test's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The allocator; each test binary installs it (the `conformance!` macro does).
pub struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static GATE: RwLock<()> = RwLock::new(());

fn grew(n: usize) {
    let now = IN_USE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new);
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new);
        }
        p
    }
}

/// Heap bytes in use now, and the peak since the last [`reset_peak`]. Panics if the counting
/// allocator is not installed (the figures would be zeros that pass every check).
pub fn usage() -> (usize, usize) {
    let probe = Box::new(0u64);
    let now = IN_USE.load(Ordering::Relaxed);
    drop(probe);
    assert!(now > 0, "the counting allocator is not installed");
    (now, PEAK.load(Ordering::Relaxed))
}

/// Starts a new peak at the current usage.
pub fn reset_peak() {
    PEAK.store(IN_USE.load(Ordering::Relaxed), Ordering::Relaxed);
}

thread_local! {
    /// The shared gate held by the scenario running on this thread, if any.
    static HELD: std::cell::RefCell<Option<RwLockReadGuard<'static, ()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Holds the shared gate for one scenario (taken by the `conformance!` tests): scenarios run
/// in parallel, except while one of them [`measure`]s.
pub struct Scenario(());

impl Scenario {
    /// Enters the gate for the scenario on this thread.
    pub fn enter() -> Scenario {
        let guard = GATE.read().unwrap_or_else(|p| p.into_inner());
        HELD.with(|h| *h.borrow_mut() = Some(guard));
        Scenario(())
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        HELD.with(|h| h.borrow_mut().take());
    }
}

/// Exclusive access for a measurement: the calling scenario gives up its shared place, then
/// waits until no other scenario runs; none starts while the guard lives.
pub fn measure() -> RwLockWriteGuard<'static, ()> {
    HELD.with(|h| h.borrow_mut().take());
    GATE.write().unwrap_or_else(|p| p.into_inner())
}
