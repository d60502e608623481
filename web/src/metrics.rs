//! Prometheus text metrics: requests and latency by route and status, queue depth, tokens
//! generated, documents indexed.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    /// (method, route, status) -> count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (method, route) -> (count, seconds sum, bucket counts).
    latency: Mutex<BTreeMap<(String, String), Latency>>,
    pub documents_indexed: AtomicU64,
}

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Default, Clone)]
struct Latency {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method.to_string(), route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let e = l.entry((method.to_string(), route.to_string())).or_default();
            e.count += 1;
            e.sum += seconds;
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    e.buckets[i] += 1;
                }
            }
        }
    }

    /// The exposition text; `gauges` are (name, help, value) added as they are.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP sousuo_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE sousuo_http_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((m, route, s), n) in r.iter() {
                out.push_str(&format!(
                    "sousuo_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{s}\"}} {n}\n",
                    esc(route)
                ));
            }
        }
        out.push_str("# HELP sousuo_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE sousuo_http_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for ((m, route), v) in l.iter() {
                let labels = format!("method=\"{m}\",route=\"{}\"", esc(route));
                for (i, b) in BUCKETS.iter().enumerate() {
                    out.push_str(&format!(
                        "sousuo_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}\n",
                        v.buckets[i]
                    ));
                }
                out.push_str(&format!(
                    "sousuo_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
                    v.count
                ));
                out.push_str(&format!("sousuo_http_request_duration_seconds_sum{{{labels}}} {}\n", v.sum));
                out.push_str(&format!("sousuo_http_request_duration_seconds_count{{{labels}}} {}\n", v.count));
            }
        }
        for (name, help, value) in gauges {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
        }
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
