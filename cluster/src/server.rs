//! Local `nats-server`s with JetStream ([`NatsServer`], or a 3-server [`NatsCluster`]), for tests
//! and benchmarks on one machine: Debian's
//! package (`apt-get install nats-server`; `scripts/ensure-nats` installs it), started on a
//! free loopback port with its store in a temporary directory, and killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian and others install the server.
const PLACES: [&str; 3] = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No `nats-server` binary.
    #[error("nats-server is not installed: apt-get install nats-server (scripts/ensure-nats installs it)")]
    NotInstalled,
    /// Spawning or waiting for it failed.
    #[error("cannot start nats-server: {0}")]
    Io(#[from] std::io::Error),
    /// It did not listen in time.
    #[error("nats-server did not listen on port {0} within 20 s")]
    NoListen(u16),
}

impl NatsServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> Result<Self, StartError> {
        let bin = binary().ok_or(StartError::NotInstalled)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = tempfile::tempdir()?;
        let mut child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return Err(StartError::NoListen(port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(NatsServer { child, port, _store: store })
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clustered `nats-server -js` processes on loopback (JetStream replicates across them), each
/// of which can be killed and restarted with its store and ports.
pub struct NatsCluster {
    servers: Vec<Member>,
}

struct Member {
    child: Option<Child>,
    port: u16,
    route_port: u16,
    store: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsCluster {
    /// Starts `n` servers routed to each other.
    pub fn start(n: usize) -> Result<Self, StartError> {
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            servers.push(Member {
                child: None,
                port: free_port()?,
                route_port: free_port()?,
                store: tempfile::tempdir()?,
            });
        }
        let mut cluster = NatsCluster { servers };
        for i in 0..n {
            cluster.restart(i)?;
        }
        Ok(cluster)
    }

    /// The client URLs of every server, comma-separated (as `--nats` takes them).
    pub fn urls(&self) -> String {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect::<Vec<_>>().join(",")
    }

    /// Kills server `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers.get_mut(i).and_then(|s| s.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` (again), on its ports and store, and waits until it listens.
    pub fn restart(&mut self, i: usize) -> Result<(), StartError> {
        self.kill(i);
        let bin = binary().ok_or(StartError::NotInstalled)?;
        let routes: Vec<String> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("nats://127.0.0.1:{}", s.route_port))
            .collect();
        let me = &mut self.servers[i];
        let mut child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &me.port.to_string(), "--server_name", &format!("s{i}")])
            .args(["--cluster_name", "sousuo", "--cluster", &format!("nats://127.0.0.1:{}", me.route_port)])
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(me.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", me.port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return Err(StartError::NoListen(me.port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        me.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// The `nats-server` binary, if installed.
pub fn binary() -> Option<PathBuf> {
    PLACES.iter().map(Path::new).find(|p| p.exists()).map(Path::to_path_buf).or_else(|| {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("nats-server")).find(|p| p.exists()))
    })
}
