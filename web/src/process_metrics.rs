//! The process's own metrics, as Prometheus client libraries name them: CPU seconds, resident
//! and virtual memory, open and maximum file descriptors, threads, start time. Read from
//! `/proc/self` on Linux; elsewhere none are reported.

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Clock ticks per second of `/proc/self/stat` (USER_HZ: 100 on every Linux architecture).
const TICKS: f64 = 100.0;

/// A `/proc/self/status` field in kB, as bytes.
fn status_kb(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Fields of `/proc/self/stat` after the command name (field 3 onwards, 0-based here).
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: split after its closing one.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Registers what can be read now.
pub fn register(r: &mut Registry) {
    if let Some(f) = stat_fields() {
        // After the name: state is [0]; utime [11], stime [12], starttime [19] (fields 14, 15, 22).
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (num(11), num(12)) {
            r.register_with_unit(
                "process_cpu",
                "User and system CPU time.",
                Unit::Seconds,
                ConstCounter::new((u + s) / TICKS),
            );
        }
        if let (Some(start), Some(boot)) = (num(19), boot_time()) {
            r.register_with_unit(
                "process_start_time",
                "Start time of the process since the Unix epoch.",
                Unit::Seconds,
                ConstGauge::new(boot + start / TICKS),
            );
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(b) = status_kb(&status, "VmRSS:") {
            r.register_with_unit("process_resident_memory", "Resident memory.", Unit::Bytes, ConstGauge::new(b));
        }
        if let Some(b) = status_kb(&status, "VmSize:") {
            r.register_with_unit("process_virtual_memory", "Virtual memory.", Unit::Bytes, ConstGauge::new(b));
        }
        let threads =
            status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse::<i64>().ok());
        if let Some(t) = threads {
            r.register("process_threads", "OS threads.", ConstGauge::new(t));
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        r.register("process_open_fds", "Open file descriptors.", ConstGauge::new(fds.count() as i64));
    }
    if let Some(m) = max_fds() {
        r.register("process_max_fds", "Maximum open file descriptors.", ConstGauge::new(m));
    }
}
