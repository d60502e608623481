//! libFuzzer over every parser a document or request reaches. One binary; the target is named
//! by `SOUSUO_FUZZ_TARGET` (see [`targets::NAMES`]). Built and run by `scripts/fuzz` on stable
//! Rust (coverage through LLVM's sancov pass, no sanitizer): a panic (for `formats`, one that
//! escapes the parsers' own guard), an abort, a timeout or an allocation past libFuzzer's RSS
//! limit is a crash.

#![no_main]

mod api;
mod targets;

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static TARGET: LazyLock<targets::Target> = LazyLock::new(|| {
    let name = std::env::var("SOUSUO_FUZZ_TARGET").unwrap_or_default();
    let target = targets::Target::named(&name)
        .unwrap_or_else(|| panic!("set SOUSUO_FUZZ_TARGET to one of {:?} (got {name:?})", targets::NAMES));
    if matches!(target, targets::Target::Formats) {
        // libfuzzer-sys's hook aborts on every panic, even one the product catches on purpose:
        // the PDF parsers run behind a panic guard (a third-party panic there is a refused
        // file, not a crash). The default hook back for this target: a panic that escapes the
        // parsers still aborts, in libfuzzer-sys's own `catch_unwind` around each input. The
        // other targets keep the hook, so a panic anywhere (a spawned task's too) is a crash.
        drop(std::panic::take_hook());
    }
    target
});

fuzz_target!(|data: &[u8]| targets::run(*TARGET, data));
