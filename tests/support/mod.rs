//! Helpers shared by the cluster tests: a private home whose model cache links to the shared
//! one, and the binary run in it.

#![allow(dead_code)]

use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A private SOUSUO_HOME whose model cache links to the shared one (fetched if missing).
pub fn home() -> tempfile::TempDir {
    let shared = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
    let root = default_cache_root(shared.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME");
    ModelCache::new(&root)
        .ensure(&MINILM, |_| eprintln!("fetching the encoder for the cluster tests"))
        .unwrap_or_else(|e| panic!("the cluster tests need {}: {e}; run `cargo run -- models fetch`", MINILM.name));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&root, dir.path().join("models")).unwrap();
    dir
}

pub fn cmd(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sousuo"));
    c.arg("--home").arg(home).args(args).env_remove("SOUSUO_ENCODER").env_remove("SOUSUO_NATS");
    c
}

pub fn run(home: &Path, args: &[&str]) -> Output {
    cmd(home, args).stdin(Stdio::null()).output().unwrap()
}

pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Proc(pub std::process::Child);

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
