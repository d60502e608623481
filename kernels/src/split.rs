//! Splitting a product's output channels over threads: each task takes a contiguous run of
//! weight panels and writes those columns of every row, through a shared raw pointer.

use std::ops::Range;

/// A product's output, shared by tasks that write disjoint columns of it.
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: the users (`int8`, `blockq`) write through the pointer only to the columns of their
// own panel range, and the ranges given out by `panel_ranges` are disjoint.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: concurrent tasks write disjoint columns, and nobody reads the output
// until `panel_ranges` has joined them all.
unsafe impl Sync for Out {}

/// Runs `task` on up to `threads` disjoint, contiguous ranges covering `0..panels`: inline on
/// the caller's thread for one, else on rayon's current pool, returning when all are done.
pub(crate) fn panel_ranges(panels: usize, threads: usize, task: impl Fn(Range<usize>) + Sync) {
    let parts = threads.clamp(1, panels.max(1));
    if parts == 1 {
        task(0..panels);
        return;
    }
    let task = &task;
    rayon::scope(|s| {
        for p in 0..parts {
            let range = panels * p / parts..panels * (p + 1) / parts;
            s.spawn(move |_| task(range));
        }
    });
}
