//! A model's team of intra-op threads: the calling thread and `threads - 1` workers that
//! share one split of a kernel's work at a time.
//!
//! In a split, thread `t` (the caller 0, worker `i` thread `i`) first takes task `t`, then any
//! task still left, in order: the same task goes to the same thread from one split to the next
//! whenever that thread is free, so data a task wrote stays in its core's cache for the next
//! split's task of the same index. The caller works as the workers do, so it never waits for a
//! worker to wake before work starts, and a split is never slower than running its tasks on
//! the caller alone by more than the cost of posting it. After a
//! split a worker keeps polling for the next one for [`SPIN`] before it parks: a run's
//! convolutions come one after another, a few microseconds apart, and a parked thread takes
//! tens of microseconds to wake on a busy machine, which is what a pool that parks between
//! kernels pays on every one of them. A run that keeps its kernels on the calling thread
//! tells the workers to park at once ([`Team::rest`]): in some placements of the two cores, a
//! polling worker slows the caller.
//!
//! Which task runs on which thread never changes a result: each task writes its own part of the
//! output with the same serial arithmetic.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker keeps polling for the next split before it parks.
pub(crate) const SPIN: Duration = Duration::from_micros(200);

/// The calling thread and `threads - 1` workers; see the module's documentation.
pub(crate) struct Team {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the split in progress: a second caller (or a split inside a task) runs its
    /// tasks on its own thread.
    busy: Mutex<()>,
}

/// What the caller and the workers share.
struct Shared {
    /// The split in progress, if any.
    job: Mutex<Option<Arc<Job>>>,
    /// Counts the splits posted: a worker that sees it change looks for the job.
    posted: AtomicUsize,
    /// Workers parked on `wake`.
    parked: AtomicUsize,
    /// Set by [`Team::rest`], cleared by the next split: polling workers park at once.
    resting: AtomicBool,
    /// How long a worker polls after a split before it parks ([`SPIN`] but in tests).
    spin: Duration,
    park: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

/// One split: `tasks` calls of `run`. Thread `t` of the team (the caller 0, worker `i` thread
/// `i`) first takes task `t`, then any left, in order through `next`; `claimed` makes each
/// task run once.
struct Job {
    /// The split's task function, its lifetime erased: see [`Team::split`] for why it is only
    /// called while the function lives.
    run: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    claimed: Box<[AtomicBool]>,
    next: AtomicUsize,
    done: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `run` points to a `Sync` function, called from several threads only while
// `Team::split` keeps it alive (see there); the other fields are thread-safe.
unsafe impl Send for Job {}
// SAFETY: as above.
unsafe impl Sync for Job {}

impl Job {
    /// Claims and runs tasks, thread `me`'s own first, until none is left.
    fn work(&self, me: usize) {
        if me < self.tasks {
            self.try_run(me);
        }
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.tasks {
                return;
            }
            self.try_run(i);
        }
    }

    /// Runs task `i` unless another thread has claimed it.
    fn try_run(&self, i: usize) {
        if self.claimed[i].swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: a task was claimed, so `done` has not reached `tasks`, and `split` keeps the
        // function alive until it has.
        let run = unsafe { &*self.run };
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(i))) {
            lock(&self.panic).get_or_insert(p);
        }
        self.done.fetch_add(1, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Team {
    /// A team of `threads` (the caller and `threads - 1` workers named `name-1`, `name-2`, ...).
    pub(crate) fn new(threads: usize, name: &str) -> std::io::Result<Team> {
        Team::with_spin(threads, name, SPIN)
    }

    /// [`Team::new`] with workers that poll for `spin` after a split.
    fn with_spin(threads: usize, name: &str, spin: Duration) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            posted: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            resting: AtomicBool::new(false),
            spin,
            park: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut team = Team { threads, shared, workers: Vec::new(), busy: Mutex::new(()) };
        for i in 1..threads {
            let shared = team.shared.clone();
            // On an error the workers started so far are stopped by `team`'s drop.
            team.workers.push(
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || worker(&shared, i))?,
            );
        }
        Ok(team)
    }

    /// How many threads the team has, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Tells workers still polling for a split to park now rather than at the end of their
    /// [`SPIN`]: for a run that keeps its work on the calling thread, since in some placements
    /// of the cores a polling worker slows the caller.
    pub(crate) fn rest(&self) {
        if !self.workers.is_empty() && !self.shared.resting.load(Ordering::Relaxed) {
            self.shared.resting.store(true, Ordering::Relaxed);
        }
    }

    /// Whether [`Team::rest`] was called after the last split.
    #[cfg(test)]
    pub(crate) fn resting(&self) -> bool {
        self.shared.resting.load(Ordering::SeqCst)
    }

    /// Runs `f(0)`, ..., `f(tasks - 1)` on the team and returns once all have; a panic in a task
    /// resumes on the caller after the others finish.
    pub(crate) fn split(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let busy = match self.busy.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if busy.is_none() || tasks < 2 || self.workers.is_empty() {
            (0..tasks).for_each(f);
            return;
        }
        // SAFETY: the lifetime is erased so that workers can reach `f` through the shared job.
        // A worker calls it only after claiming a task, and this function returns only after
        // every task has finished (`done == tasks`); later claims fail, so `f` is never called
        // once it may be gone.
        let run = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(
                f,
            )
        };
        let job = Arc::new(Job {
            run,
            tasks,
            claimed: (0..tasks).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
        });
        *lock(&self.shared.job) = Some(job.clone());
        if self.shared.resting.load(Ordering::Relaxed) {
            self.shared.resting.store(false, Ordering::Relaxed);
        }
        self.shared.posted.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.shared.park);
            self.shared.wake.notify_all();
        }
        job.work(0);
        let mut spins = 0u32;
        while job.done.load(Ordering::Acquire) < tasks {
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *lock(&self.shared.job) = None;
        drop(busy);
        let panic = lock(&job.panic).take();
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _g = lock(&self.shared.park);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A worker: waits for a split (polling for [`SPIN`], or until [`Team::rest`], then parked),
/// takes its tasks, repeats.
fn worker(shared: &Shared, me: usize) {
    // `posted` starts at 0 when the team does, so a split posted before this thread first runs
    // is still this worker's to join.
    let mut seen = 0;
    loop {
        let since = Instant::now();
        let mut spins = 0u32;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = shared.posted.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                break;
            }
            spins += 1;
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            if since.elapsed() < shared.spin && !shared.resting.load(Ordering::Relaxed) {
                std::thread::yield_now();
                continue;
            }
            // Park until the next split (or the team's drop).
            let mut g = lock(&shared.park);
            shared.parked.fetch_add(1, Ordering::SeqCst);
            while shared.posted.load(Ordering::SeqCst) == seen && !shared.stop.load(Ordering::SeqCst) {
                g = shared.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
            shared.parked.fetch_sub(1, Ordering::SeqCst);
            drop(g);
        }
        let job = lock(&shared.job).clone();
        if let Some(job) = job {
            job.work(me);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_takes_the_task_of_its_own_index_first() {
        let team = Team::new(3, "test-own").unwrap();
        let caller = std::thread::current().name().map(str::to_string);
        for _ in 0..50 {
            // Each task waits until all three have started: no thread can run two of them, so
            // the split completes only with one task per thread, and the names say which.
            let barrier = std::sync::Barrier::new(3);
            let ran: Vec<Mutex<Option<Option<String>>>> = (0..3).map(|_| Mutex::new(None)).collect();
            team.split(3, &|t| {
                *lock(&ran[t]) = Some(std::thread::current().name().map(str::to_string));
                barrier.wait();
            });
            let names: Vec<Option<String>> =
                ran.iter().map(|r| lock(r).clone().expect("every task ran")).collect();
            let want = [caller.clone(), Some("test-own-1".to_string()), Some("test-own-2".to_string())];
            assert_eq!(names, want);
        }
    }

    #[test]
    fn resting_workers_park_before_their_polling_ends_and_wake_for_the_next_split() {
        // Workers that would poll for an hour: only `rest` parks them.
        let team = Team::with_spin(2, "test-rest", Duration::from_secs(3600)).unwrap();
        let parked = || team.shared.parked.load(Ordering::SeqCst);
        let worker_ran = || {
            let barrier = std::sync::Barrier::new(2);
            let names: Vec<Mutex<Option<String>>> = (0..2).map(|_| Mutex::new(None)).collect();
            team.split(2, &|t| {
                *lock(&names[t]) = std::thread::current().name().map(str::to_string);
                barrier.wait();
            });
            let name = lock(&names[1]).clone();
            name
        };
        for _ in 0..3 {
            assert_eq!(worker_ran().as_deref(), Some("test-rest-1"));
            assert_eq!(parked(), 0, "a worker polls after a split");
            team.rest();
            // Parks within a poll or two; the bound only keeps a broken `rest` from hanging.
            let mut polls = 0u64;
            while parked() == 0 {
                polls += 1;
                assert!(polls < 1 << 24, "the worker kept polling after rest");
                std::thread::yield_now();
            }
        }
        // A split clears the rest: the worker polls again after it.
        assert_eq!(worker_ran().as_deref(), Some("test-rest-1"));
        assert!(!team.shared.resting.load(Ordering::SeqCst));
    }

    #[test]
    fn every_task_runs_once_on_whichever_thread_and_panics_reach_the_caller() {
        let team = Team::new(3, "test").unwrap();
        for tasks in [0, 1, 2, 7, 100] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            team.split(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{tasks} tasks");
        }
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.split(4, &|i| assert!(i != 2, "task two fails"));
        }));
        let payload = caught.unwrap_err();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        assert_eq!(message.as_deref(), Some("task two fails"));
        // The team still works after a panic, and a split inside a task runs on its thread.
        let sum = AtomicUsize::new(0);
        team.split(4, &|i| {
            team.split(3, &|j| {
                sum.fetch_add(i * 10 + j, Ordering::Relaxed);
            })
        });
        assert_eq!(sum.load(Ordering::Relaxed), (0..4).map(|i| 3 * i * 10 + 3).sum::<usize>());
    }
}
