//! Indexing into a file system that fills up: a 4 MiB tmpfs mounted over the home's data
//! directory (root needed: the test fails saying so without it). The run that would fill it
//! stops with an error naming the collection's directory; the collection still opens and
//! searches; once the file system is grown, the same command completes.

use super::crash_home;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tmpfs, unmounted when dropped (even when an assertion fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
        match out {
            Ok(o) if o.status.success() => Tmpfs(dir.to_path_buf()),
            other => panic!(
                "the disk-full test mounts a small tmpfs and needs root for it (CI runs as root); run it as root, \
                 or skip it by name: cargo test --test crash -- --skip disk (mount: {other:?})"
            ),
        }
    }

    fn grow(&self, size: &str) {
        let st = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(st.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn sousuo(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sousuo")).arg("--home").arg(home).args(args).output().unwrap()
}

fn lines(from: usize, n: usize, to: &Path) -> PathBuf {
    let text = super::scifact_lines();
    let body: Vec<&str> = text.lines().skip(from).take(n).collect();
    std::fs::write(to, body.join("\n") + "\n").unwrap();
    to.to_path_buf()
}

#[test]
fn a_full_disk_stops_indexing_with_the_path_and_the_collection_stays_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, _) = crash_home(tmp.path());
    let data = home.join("data");
    let disk = Tmpfs::mount(&data, "4m");
    let first = lines(0, 100, &tmp.path().join("first.jsonl"));
    let more = lines(100, 300, &tmp.path().join("more.jsonl"));
    let reserve = ["--min-free-mb", "1"];
    let index = |file: &Path| {
        let f = file.to_str().unwrap();
        sousuo(&home, &[&["index", f, "--collection", "c", "--json"][..], &reserve[..]].concat())
    };
    let out = index(&first);
    assert!(out.status.success(), "100 documents fit: {}", String::from_utf8_lossy(&out.stderr));

    let out = index(&more);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "300 more documents do not fit in 4 MiB");
    let dir = data.join("c").display().to_string();
    assert!(err.contains(&dir) && err.contains("not enough free disk space"), "the error names the path: {err}");
    eprintln!("the run that filled the disk: {}", err.trim());

    let out = sousuo(&home, &["search", "-c", "c", "--json", "cancer cells"]);
    assert!(
        out.status.success(),
        "the collection searches after the failed run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(hits["hits"].as_array().is_some_and(|h| !h.is_empty()), "{hits}");

    disk.grow("64m");
    let out = index(&more);
    assert!(
        out.status.success(),
        "with space freed the same command completes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sousuo(&home, &["stats", "-c", "c", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["documents"], 400, "{stats}");
}
