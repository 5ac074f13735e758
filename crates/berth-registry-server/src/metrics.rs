//! Counters for the Prometheus `/metrics` endpoint: requests by method and status, bytes in
//! and out, a latency histogram; storage size is measured when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Metrics {
    pub fn request(&self, method: &Method, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method.to_string(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn received(&self, n: u64) {
        self.bytes_received.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// The text exposition format; `storage` is (blob count, bytes).
    pub fn render(&self, storage: (u64, u64)) -> String {
        let mut out = String::new();
        out.push_str("# HELP registry_http_requests_total HTTP requests answered.\n# TYPE registry_http_requests_total counter\n");
        for ((method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "registry_http_requests_total{{method=\"{method}\",code=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP registry_http_request_duration_seconds Time to answer a request (headers).\n# TYPE registry_http_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "registry_http_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "registry_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nregistry_http_request_duration_seconds_sum {}\nregistry_http_request_duration_seconds_count {count}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# TYPE registry_bytes_received_total counter\nregistry_bytes_received_total {}\n# TYPE registry_bytes_sent_total counter\nregistry_bytes_sent_total {}",
            self.bytes_received.load(Ordering::Relaxed),
            self.bytes_sent.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP registry_storage_blobs Blobs stored.\n# TYPE registry_storage_blobs gauge\nregistry_storage_blobs {}\n# HELP registry_storage_bytes Bytes of blobs stored.\n# TYPE registry_storage_bytes gauge\nregistry_storage_bytes {}",
            storage.0, storage.1
        );
        out
    }
}
