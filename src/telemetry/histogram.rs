//! Latency histograms in the Prometheus text format: fixed buckets, plain atomics.
//!
//! One observation is a bucket search over 16 constants and three relaxed atomic adds (bucket,
//! sum, and nothing else: the count is the sum of the buckets, so `_count` always equals the
//! `+Inf` bucket). No lock and no allocation on the hot path; only rendering allocates.
//!
//! The exposition format (Prometheus "text format 0.0.4") wants, per series, cumulative
//! `_bucket{le="..."}` lines in increasing `le` order ending with `le="+Inf"`, then `_sum` and
//! `_count`; buckets are stored per interval here and summed while rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets in nanoseconds: 50 µs (a remembered session) to 10 s (the IdP
/// client's own timeout), roughly 1-2.5-5 per decade.
const BOUNDS_NS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// The same bounds as the `le` label values (seconds, Prometheus' base unit).
const BOUNDS_LE: [&str; 16] = [
    "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1", "2.5", "10",
];

/// One latency series: per-bucket counts (the last one is above every bound) and the sum.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram (`const`, so families can be statics).
    pub const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BOUNDS_NS.len() + 1],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(BOUNDS_NS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Appends this series to `out` as `name_bucket`, `name_sum` and `name_count` lines with
    /// `labels` (already formatted, e.g. `endpoint="token"`). Nothing when empty: a series
    /// appears once it has an observation, so label sets that never occur cost no lines.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total = counts.iter().fold(0, |a: u64, c| a.wrapping_add(*c));
        if total == 0 {
            return;
        }
        let mut cumulative = 0u64;
        for (le, c) in BOUNDS_LE.iter().zip(&counts) {
            cumulative = cumulative.wrapping_add(*c);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
    }
}

/// Appends the `# HELP` and `# TYPE` lines of a histogram family.
pub fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_labels_agree_and_increase() {
        for (ns, le) in BOUNDS_NS.iter().zip(BOUNDS_LE) {
            let secs: f64 = le.parse().unwrap();
            assert!(((secs * 1e9) - *ns as f64).abs() < 1.0, "{le} vs {ns}");
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn buckets_are_cumulative_and_end_with_inf_sum_and_count() {
        let h = Histogram::new();
        let mut empty = String::new();
        h.render(&mut empty, "x", "a=\"b\"");
        assert!(empty.is_empty(), "an empty series renders nothing");
        h.observe(Duration::from_micros(30)); // first bucket
        h.observe(Duration::from_micros(100)); // exactly on a bound: le is inclusive
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60)); // above every bound
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 16 + 1 + 2, "{out}");
        for want in [
            "x_bucket{a=\"b\",le=\"5e-05\"} 1",
            "x_bucket{a=\"b\",le=\"0.0001\"} 2",
            "x_bucket{a=\"b\",le=\"0.0025\"} 2",
            "x_bucket{a=\"b\",le=\"0.005\"} 3",
            "x_bucket{a=\"b\",le=\"10\"} 3",
            "x_bucket{a=\"b\",le=\"+Inf\"} 4",
            "x_sum{a=\"b\"} 60.00313",
            "x_count{a=\"b\"} 4",
        ] {
            assert!(lines.contains(&want), "{want} missing from\n{out}");
        }
        // Cumulative: never decreasing.
        let values: Vec<u64> = lines
            .iter()
            .filter(|l| l.starts_with("x_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{out}");
        assert_eq!(h.count(), 4);
    }
}
