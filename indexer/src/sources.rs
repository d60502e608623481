//! Finding the files to index: directories walked honouring `.gitignore`/`.ignore`, hidden
//! files skipped and counted.

use crate::formats::Format;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A file to index, with the stable id its documents derive from.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The file.
    pub path: PathBuf,
    /// Path relative to the walked root (the file name when a file was given), `/`-separated.
    pub id: String,
    /// Its format.
    pub format: Format,
}

/// The files found, and what was skipped (reason -> count).
#[derive(Debug, Default)]
pub struct Walk {
    /// Files to read, in a stable order.
    pub files: Vec<SourceFile>,
    /// Files skipped, counted by reason.
    pub skipped: Vec<(String, usize)>,
    /// Given paths that do not exist.
    pub missing: Vec<PathBuf>,
}

/// Walks `paths` (files or directories).
pub fn walk(paths: &[PathBuf]) -> Walk {
    let mut out = Walk::default();
    let hidden = Arc::new(AtomicUsize::new(0));
    let mut unsupported = 0usize;
    for root in paths {
        if !root.exists() {
            out.missing.push(root.clone());
            continue;
        }
        if root.is_file() {
            match Format::from_path(root) {
                Some(format) => out.files.push(SourceFile {
                    path: root.clone(),
                    id: root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    format,
                }),
                None => unsupported += 1,
            }
            continue;
        }
        let counter = hidden.clone();
        let walker = ignore::WalkBuilder::new(root)
            .hidden(false)
            .git_ignore(true)
            .git_global(false)
            .ignore(true)
            .require_git(false)
            .sort_by_file_name(|a, b| a.cmp(b))
            .filter_entry(move |e| {
                let is_hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
                if is_hidden {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                !is_hidden
            })
            .build();
        for entry in walker.flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            match Format::from_path(path) {
                Some(format) => {
                    out.files.push(SourceFile { path: path.to_path_buf(), id: relative_id(root, path), format })
                }
                None => unsupported += 1,
            }
        }
    }
    let hidden = hidden.load(Ordering::Relaxed);
    if hidden > 0 {
        out.skipped.push(("hidden".into(), hidden));
    }
    if unsupported > 0 {
        out.skipped.push(("unsupported format".into(), unsupported));
    }
    out
}

fn relative_id(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_ignore_files_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("sub")).unwrap();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        std::fs::write(p.join("a.md"), "# A").unwrap();
        std::fs::write(p.join("sub/b.txt"), "b").unwrap();
        std::fs::write(p.join("skip.txt"), "x").unwrap();
        std::fs::write(p.join(".secret.txt"), "x").unwrap();
        std::fs::write(p.join("image.png"), "x").unwrap();
        std::fs::write(p.join(".gitignore"), "skip.txt\n").unwrap();
        let w = walk(&[p.to_path_buf()]);
        let ids: Vec<&str> = w.files.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["a.md", "sub/b.txt"]);
        assert!(w.skipped.iter().any(|(r, n)| r == "hidden" && *n >= 2), "{:?}", w.skipped);
        assert!(w.skipped.iter().any(|(r, n)| r == "unsupported format" && *n == 1));
    }
}
