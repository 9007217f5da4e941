//! Statistics of a benchmark run: percentiles, measurement windows, the stability rule and the
//! open-loop request schedule. Pure functions on timings, so they are tested on synthetic data.

use serde::{Deserialize, Serialize};

/// One completed request, in seconds since the measurement started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the request was due: its send time in a closed loop, its slot in the schedule with
    /// `--rate` (so time spent waiting behind a stalled request counts as latency).
    pub scheduled: f64,
    /// When its outputs were back.
    pub done: f64,
}

impl Sample {
    /// The request's latency in seconds.
    pub fn latency(&self) -> f64 {
        self.done - self.scheduled
    }
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of requests summarised.
    pub count: usize,
    /// Smallest latency.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest latency.
    pub max: f64,
}

/// The `q`-th percentile (0 < q <= 100) of ascending `sorted` values by the nearest-rank
/// method: the smallest value with at least q% of the values at or below it. `None` when empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summary of latencies given in seconds (reported in milliseconds); `None` when empty.
pub fn summarize(latencies_s: &[f64]) -> Option<Summary> {
    let mut ms: Vec<f64> = latencies_s.iter().map(|s| s * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q| percentile(&ms, q);
    Some(Summary {
        count: ms.len(),
        min: *ms.first()?,
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
        p50: at(50.0)?,
        p90: at(90.0)?,
        p95: at(95.0)?,
        p99: at(99.0)?,
        max: *ms.last()?,
    })
}

/// What one measurement window saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Requests completed in the window.
    pub count: usize,
    /// Completed requests per second over the window.
    pub throughput: f64,
    /// Median latency of those requests, in milliseconds (0 when none completed).
    pub p50_ms: f64,
}

/// The window `[start, end)` (seconds): the samples that completed in it.
pub fn window(samples: &[Sample], start: f64, end: f64) -> Window {
    let latencies: Vec<f64> =
        samples.iter().filter(|s| s.done >= start && s.done < end).map(Sample::latency).collect();
    let span = end - start;
    Window {
        count: latencies.len(),
        throughput: if span > 0.0 { latencies.len() as f64 / span } else { 0.0 },
        p50_ms: summarize(&latencies).map_or(0.0, |s| s.p50),
    }
}

/// perf_analyzer's stability rule: the last `needed` windows all completed requests, and each
/// one's throughput and median latency lie within `tolerance` (0.1 = 10 %) of those windows'
/// average.
pub fn is_stable(windows: &[Window], needed: usize, tolerance: f64) -> bool {
    if needed == 0 || windows.len() < needed {
        return false;
    }
    let last = &windows[windows.len() - needed..];
    if last.iter().any(|w| w.count == 0) {
        return false;
    }
    let within = |value: fn(&Window) -> f64| {
        let mean = last.iter().map(value).sum::<f64>() / needed as f64;
        last.iter().all(|w| (value(w) - mean).abs() <= tolerance * mean)
    };
    within(|w| w.throughput) && within(|w| w.p50_ms)
}

/// The open-loop schedule of `--rate`: request `index` is due `index / rate` seconds after the
/// start, whatever happened to the requests before it.
pub fn scheduled_at(index: usize, rate: f64) -> f64 {
    index as f64 / rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 90.0), Some(90.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.1), Some(1.0));
        // Five values: p50 is the 3rd, p90/p95/p99 the 5th (ceil(0.9 * 5) = 5).
        let five = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile(&five, 50.0), Some(3.0));
        assert_eq!(percentile(&five, 80.0), Some(4.0));
        assert_eq!(percentile(&five, 90.0), Some(10.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_is_in_milliseconds_and_ordered() {
        // Latencies 1..=1000 ms in shuffled order.
        let latencies: Vec<f64> = (0..1000).map(|i| ((i * 389) % 1000 + 1) as f64 / 1e3).collect();
        let s = summarize(&latencies).unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!((s.min, s.max), (1.0, 1000.0));
        assert!((s.mean - 500.5).abs() < 1e-9, "{}", s.mean);
        assert!((s.p50 - 500.0).abs() < 1e-9 && (s.p90 - 900.0).abs() < 1e-9, "{s:?}");
        assert!((s.p95 - 950.0).abs() < 1e-9 && (s.p99 - 990.0).abs() < 1e-9, "{s:?}");
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn windows_count_requests_by_completion_time() {
        // One request every 10 ms, each taking 2 ms, for one second.
        let samples: Vec<Sample> =
            (0..100).map(|i| Sample { scheduled: i as f64 * 0.01, done: i as f64 * 0.01 + 0.002 }).collect();
        let w = window(&samples, 0.0, 0.5);
        assert_eq!(w.count, 50);
        assert!((w.throughput - 100.0).abs() < 1e-9);
        assert!((w.p50_ms - 2.0).abs() < 1e-9);
        // The half-open interval: a request done exactly at 0.502 belongs to the second window.
        assert_eq!(window(&samples, 0.5, 1.0).count, 50);
        assert_eq!(window(&samples, 2.0, 3.0), Window { count: 0, throughput: 0.0, p50_ms: 0.0 });
    }

    fn w(throughput: f64, p50_ms: f64) -> Window {
        Window { count: 10, throughput, p50_ms }
    }

    #[test]
    fn stability_needs_the_last_windows_to_agree_within_tolerance() {
        let settled = [w(50.0, 9.0), w(100.0, 5.0), w(104.0, 5.1), w(98.0, 4.9)];
        assert!(is_stable(&settled, 3, 0.1));
        // The same windows with a tighter tolerance: 104 is 3.3 % above their mean of 100.7.
        assert!(!is_stable(&settled, 3, 0.03));
        // A throughput drift beyond 10 % in the last three.
        assert!(!is_stable(&[w(100.0, 5.0), w(100.0, 5.0), w(120.0, 5.0)], 3, 0.1));
        // Latency drifting while throughput holds.
        assert!(!is_stable(&[w(100.0, 5.0), w(100.0, 5.0), w(100.0, 6.5)], 3, 0.1));
        // Too few windows, or an empty one.
        assert!(!is_stable(&settled[..2], 3, 0.1));
        let empty = Window { count: 0, throughput: 0.0, p50_ms: 0.0 };
        assert!(!is_stable(&[empty, empty, empty], 3, 0.1));
        assert!(!is_stable(&settled, 0, 0.1));
    }

    #[test]
    fn schedule_is_fixed_by_rate() {
        assert_eq!(scheduled_at(0, 200.0), 0.0);
        assert!((scheduled_at(10, 200.0) - 0.05).abs() < 1e-12);
        assert!((scheduled_at(3, 0.5) - 6.0).abs() < 1e-12);
    }

    #[test]
    fn latency_counts_from_the_schedule_so_a_stall_shows_in_later_requests() {
        // A server that answers in 1 ms but stalls 100 ms on request 5, sent at 100 requests/s
        // by one client: requests 6.. queue behind the stall. Measured from their schedule they
        // are late; measured from when the client got to send them they would look fine.
        let rate = 100.0;
        let mut free_at = 0.0f64;
        let samples: Vec<Sample> = (0..20)
            .map(|i| {
                let scheduled = scheduled_at(i, rate);
                let start = free_at.max(scheduled);
                free_at = start + if i == 5 { 0.1 } else { 0.001 };
                Sample { scheduled, done: free_at }
            })
            .collect();
        let latencies: Vec<f64> = samples.iter().map(Sample::latency).collect();
        assert!((latencies[5] - 0.1).abs() < 1e-9);
        // Request 6 was due at 60 ms and ran at 150 ms: 91 ms late.
        assert!((latencies[6] - 0.091).abs() < 1e-9, "{}", latencies[6]);
        let s = summarize(&latencies).unwrap();
        assert!(s.p90 > 50.0, "the backlog dominates the tail: {s:?}");
    }
}
