//! Thread counts: one rule for "how many threads does 0 mean".

/// The threads a component given `requested` threads uses: 0 means every thread of rayon's
/// global pool (which the binary sizes from `--threads`).
pub fn resolve(requested: usize) -> usize {
    if requested == 0 {
        rayon::current_num_threads()
    } else {
        requested
    }
}
