//! A counting global allocator for the tests that bound how much a reader may allocate. Counts
//! are per thread: the tests of this one binary run side by side, and a reader under test runs
//! on its caller's thread, so another test's allocations never enter its peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Bytes this thread allocated and has not freed (a block freed on another thread than
    /// the one that allocated it moves the two counts apart; peaks are taken within one call).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(size: usize) {
    // `try_with`: a thread being torn down has no counters left; its allocations go uncounted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size as isize;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    // Zeroed pages from the system, not written here: a decoder's zeroed image buffer stays
    // as cheap as it is without the counter.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        let _ = LIVE.try_with(|live| live.set(live.get() - layout.size() as isize));
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` on this thread, returning its value and the most bytes it had allocated at once
/// beyond what this thread had live before.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let value = f();
    let peak = PEAK.with(Cell::get);
    (value, usize::try_from(peak - before).unwrap_or(0))
}
