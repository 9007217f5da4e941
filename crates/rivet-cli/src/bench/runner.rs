//! The measurement loop: N client threads sharing one request function, closed loop or at a
//! fixed rate, stopped by a count, a duration or the stability rule.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::stats::{self, Sample, Window};

/// When a measurement ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this many requests in all (spread over the clients).
    Iterations(usize),
    /// When no more requests are due before this many seconds.
    Duration(f64),
    /// When the last `windows` windows of `window_s` seconds agree within `tolerance`
    /// (perf_analyzer's rule), or after `max_windows` windows, reported as not stable.
    Stable {
        /// Window length in seconds.
        window_s: f64,
        /// Consecutive windows that must agree.
        windows: usize,
        /// Allowed deviation from their average (0.1 = 10 %).
        tolerance: f64,
        /// Give up after this many windows.
        max_windows: usize,
    },
}

/// How to load the model with requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Client threads, each sending its next request when the previous one is back (or when it
    /// is due, with `rate`).
    pub concurrency: usize,
    /// Open loop: requests per second over all clients, latency counted from each request's
    /// scheduled time. `None`: closed loop.
    pub rate: Option<f64>,
    /// When to stop.
    pub stop: Stop,
}

/// What a measurement produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The requests that count, in completion order per client.
    pub samples: Vec<Sample>,
    /// Seconds covered by those samples: the counted windows with the stability rule, else from
    /// the first request's scheduled time to the last completion.
    pub elapsed_s: f64,
    /// With `Stop::Stable`: whether the rule was met. `None` otherwise.
    pub stable: Option<bool>,
    /// The windows seen with `Stop::Stable` (empty otherwise).
    pub windows: Vec<Window>,
}

/// Runs `request` under `plan` and returns the timings. The first error any client meets stops
/// every client and is returned.
pub fn measure<E: Send>(plan: &Plan, request: &(dyn Fn() -> Result<(), E> + Sync)) -> Result<Measurement, E> {
    let clients = plan.concurrency.max(1);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let buffers: Vec<Mutex<Vec<Sample>>> = (0..clients).map(|_| Mutex::new(Vec::new())).collect();
    let failure: Mutex<Option<E>> = Mutex::new(None);
    let start = Instant::now();
    let mut windows = Vec::new();
    let mut stable = None;
    let mut counted_from = 0.0;
    let mut counted_to = f64::INFINITY;
    let mut seen: Vec<Sample> = Vec::new();

    std::thread::scope(|scope| {
        for buffer in &buffers {
            let (next, stop, failure) = (&next, &stop, &failure);
            scope.spawn(move || {
                client(plan, request, start, next, stop, buffer, failure);
            });
        }
        if let Stop::Stable { window_s, windows: needed, tolerance, max_windows } = plan.stop {
            let mut window_start = 0.0;
            while !stop.load(Ordering::Relaxed) {
                let window_end = window_start + window_s;
                sleep_until(start, window_end, &stop);
                for buffer in &buffers {
                    seen.append(&mut lock(buffer));
                }
                windows.push(stats::window(&seen, window_start, window_end));
                window_start = window_end;
                let is_stable = stats::is_stable(&windows, needed, tolerance);
                if is_stable || windows.len() >= max_windows.max(needed) {
                    stable = Some(is_stable);
                    counted_from = window_end - window_s * needed.min(windows.len()) as f64;
                    counted_to = window_end;
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    });

    if let Some(err) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err);
    }
    seen.extend(buffers.into_iter().flat_map(|b| b.into_inner().unwrap_or_else(|p| p.into_inner())));
    // With the stability rule only the agreeing windows count: not the windows before them, nor
    // requests that finished after the last window closed.
    let samples: Vec<Sample> =
        seen.into_iter().filter(|s| s.done >= counted_from && s.done < counted_to).collect();
    let last = samples.iter().map(|s| s.done).fold(0.0, f64::max);
    let elapsed_s = match plan.stop {
        Stop::Stable { window_s, windows: needed, .. } => window_s * needed.min(windows.len()) as f64,
        // From the first request (thread start-up is not part of the run) to the last answer.
        _ => last - samples.iter().map(|s| s.scheduled).fold(f64::INFINITY, f64::min).min(last),
    };
    Ok(Measurement { samples, elapsed_s, stable, windows })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps until `at` seconds after `start`, waking early when `stop` is set.
fn sleep_until(start: Instant, at: f64, stop: &AtomicBool) {
    loop {
        let now = start.elapsed().as_secs_f64();
        if now >= at || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64((at - now).min(0.01)));
    }
}

fn client<E>(
    plan: &Plan,
    request: &(dyn Fn() -> Result<(), E> + Sync),
    start: Instant,
    next: &AtomicUsize,
    stop: &AtomicBool,
    buffer: &Mutex<Vec<Sample>>,
    failure: &Mutex<Option<E>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if let Stop::Iterations(n) = plan.stop {
            if index >= n {
                break;
            }
        }
        let scheduled = match plan.rate {
            Some(rate) => stats::scheduled_at(index, rate),
            None => start.elapsed().as_secs_f64(),
        };
        if let Stop::Duration(d) = plan.stop {
            if scheduled >= d {
                break;
            }
        }
        if plan.rate.is_some() {
            sleep_until(start, scheduled, stop);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if let Err(err) = request() {
            lock(failure).get_or_insert(err);
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let done = start.elapsed().as_secs_f64();
        lock(buffer).push(Sample { scheduled, done });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(ms: u64) -> impl Fn() -> Result<(), &'static str> + Sync {
        move || {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        }
    }

    #[test]
    fn iterations_are_shared_by_the_clients() {
        let plan = Plan { concurrency: 3, rate: None, stop: Stop::Iterations(30) };
        let m = measure(&plan, &sleeper(1)).unwrap();
        assert_eq!(m.samples.len(), 30);
        assert!(m.samples.iter().all(|s| s.latency() >= 0.001), "each request slept 1 ms");
        let first = m.samples.iter().map(|s| s.scheduled).fold(f64::INFINITY, f64::min);
        let last = m.samples.iter().map(|s| s.done).fold(0.0, f64::max);
        assert!((m.elapsed_s - (last - first)).abs() < 1e-12, "first request to last answer");
        assert!(m.elapsed_s >= 0.010, "30 requests of 1 ms on 3 clients take 10 ms at least");
        assert_eq!(m.stable, None);
    }

    #[test]
    fn duration_stops_sending_once_the_time_is_up() {
        let plan = Plan { concurrency: 2, rate: None, stop: Stop::Duration(0.05) };
        let m = measure(&plan, &sleeper(2)).unwrap();
        assert!(!m.samples.is_empty());
        assert!(m.samples.iter().all(|s| s.scheduled < 0.05), "nothing sent after the deadline");
    }

    #[test]
    fn open_loop_keeps_the_schedule_and_counts_the_backlog() {
        // 200 requests/s from one client; request 3 stalls 60 ms. Requests due during the stall
        // wait for it, and their latency, counted from the schedule, shows it.
        let count = AtomicUsize::new(0);
        let request = || -> Result<(), &'static str> {
            let i = count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(if i == 3 { 60 } else { 1 }));
            Ok(())
        };
        let plan = Plan { concurrency: 1, rate: Some(200.0), stop: Stop::Iterations(12) };
        let m = measure(&plan, &request).unwrap();
        assert_eq!(m.samples.len(), 12);
        for (i, s) in m.samples.iter().enumerate() {
            assert!((s.scheduled - i as f64 / 200.0).abs() < 1e-12, "request {i} keeps its slot");
            assert!(s.done >= s.scheduled, "request {i} was not sent early");
        }
        // Request 4 was due at 20 ms but could only start once request 3 (due at 15 ms, 60 ms
        // long) was back, at 75 ms or later: at least 55 ms late.
        assert!(m.samples[4].latency() >= 0.055, "{:?}", m.samples[4]);
        assert!(m.samples[5].latency() >= 0.050, "{:?}", m.samples[5]);
    }

    #[test]
    fn stability_stops_once_windows_agree() {
        let plan = Plan {
            concurrency: 1,
            rate: None,
            stop: Stop::Stable { window_s: 0.05, windows: 3, tolerance: 0.5, max_windows: 20 },
        };
        let m = measure(&plan, &sleeper(1)).unwrap();
        assert!(m.windows.len() >= 3 && m.windows.len() <= 20, "{}", m.windows.len());
        assert_eq!(m.stable, Some(stats::is_stable(&m.windows, 3, 0.5)));
        // Only the last three windows' requests count, and they cover 3 windows.
        assert!((m.elapsed_s - 0.15).abs() < 1e-9);
        let counted: usize = m.windows[m.windows.len() - 3..].iter().map(|w| w.count).sum();
        assert_eq!(m.samples.len(), counted);
    }

    #[test]
    fn unstable_runs_end_after_max_windows() {
        // Latency doubles every call: windows never agree.
        let count = AtomicUsize::new(0);
        let request = || -> Result<(), &'static str> {
            let i = count.fetch_add(1, Ordering::SeqCst) as u32;
            std::thread::sleep(Duration::from_micros(100 << i.min(9)));
            Ok(())
        };
        let plan = Plan {
            concurrency: 1,
            rate: None,
            stop: Stop::Stable { window_s: 0.02, windows: 3, tolerance: 0.01, max_windows: 4 },
        };
        let m = measure(&plan, &request).unwrap();
        assert_eq!(m.windows.len(), 4);
        assert_eq!(m.stable, Some(false));
    }

    #[test]
    fn the_first_error_stops_every_client() {
        let count = AtomicUsize::new(0);
        let request = || -> Result<(), &'static str> {
            if count.fetch_add(1, Ordering::SeqCst) == 5 {
                return Err("request 5 failed");
            }
            Ok(())
        };
        let plan = Plan { concurrency: 4, rate: None, stop: Stop::Iterations(1_000_000) };
        assert_eq!(measure(&plan, &request).unwrap_err(), "request 5 failed");
        assert!(count.load(Ordering::SeqCst) < 1_000_000);
    }
}
