//! One thread runs every libtorch call of the process.
//!
//! libtorch's CPU kernels parallelise with OpenMP (GNU libgomp in the PyTorch wheels), and
//! libgomp keeps one team of worker threads per *calling* thread. Once a second thread has called
//! into libtorch, the process holds more OpenMP threads than cores, and libgomp then makes every
//! team sleep in the kernel between parallel regions instead of spinning: each parallel region
//! pays futex wake-ups. Measured on the bundled CNN at batch 1 with default threads on 2 cores
//! (`cargo bench --bench threads`): 0.19 ms from the loading thread, 0.69 ms from any other.
//!
//! So the backend sends each load and run to an executor thread (one by default; the tch option
//! `executors` asks for more), and there are only ever that many OpenMP teams. A caller waits for
//! a short run spinning (a wake-up would cost as much as the run) and for a long one parked,
//! leaving the cores to libtorch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A job: the caller's closure (on the caller's stack) and how to tell the caller it ran.
struct Task {
    run: *mut (dyn FnMut() + Send),
    done: Arc<Done>,
}

// SAFETY: the closure is `Send`; the caller keeps it alive and does not touch it until `done`.
unsafe impl Send for Task {}

struct Done {
    flag: AtomicBool,
    waiter: Thread,
}

struct Executor {
    queue: Mutex<VecDeque<Task>>,
    pending: AtomicUsize,
    /// Executor threads blocked on `wake`.
    sleeping: AtomicUsize,
    wake: Condvar,
    /// Executor threads started.
    threads: Mutex<usize>,
}

/// How long an executor thread looks for the next job before sleeping.
const IDLE_SPIN: Duration = Duration::from_micros(100);
/// A run expected to take less than this is waited for spinning (a wake-up would cost as much
/// as the run); a longer one is waited for parked, leaving the cores to libtorch.
pub(crate) const SHORT_RUN: Duration = Duration::from_micros(100);
/// The longest a caller spins, whatever was expected.
const MAX_SPIN: Duration = Duration::from_millis(1);

fn executor() -> &'static Executor {
    static EXECUTOR: OnceLock<&'static Executor> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        Box::leak(Box::new(Executor {
            queue: Mutex::new(VecDeque::new()),
            pending: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            wake: Condvar::new(),
            threads: Mutex::new(0),
        }))
    })
}

/// Makes sure at least `count` executor threads run (they are never stopped). Each is its own
/// OpenMP master: with more than one, give each `cores / count` intra-op threads.
pub(crate) fn ensure_threads(count: usize) -> std::io::Result<()> {
    let executor = executor();
    let mut started = executor.threads.lock().unwrap_or_else(|p| p.into_inner());
    while *started < count.max(1) {
        std::thread::Builder::new().name("rivet-libtorch".into()).spawn(move || executor.serve())?;
        *started += 1;
    }
    Ok(())
}

impl Executor {
    fn serve(&self) {
        loop {
            let task = self.next();
            // SAFETY: the caller keeps the closure alive until `done` is set, below.
            let run = unsafe { &mut *task.run };
            // A panic is the closure's to report (it catches its own); this keeps the thread.
            let _ = rivet_core::panics::catch_quietly(run);
            task.done.flag.store(true, Ordering::Release);
            task.done.waiter.unpark();
        }
    }

    fn next(&self) -> Task {
        let idle_since = Instant::now();
        loop {
            if self.pending.load(Ordering::Acquire) > 0 {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(task) = queue.pop_front() {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    return task;
                }
            }
            if idle_since.elapsed() < IDLE_SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            self.sleeping.fetch_add(1, Ordering::SeqCst);
            while queue.is_empty() {
                queue = self.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            self.sleeping.fetch_sub(1, Ordering::SeqCst);
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return queue.pop_front().expect("the queue is not empty");
        }
    }
}

/// Runs `f` on an executor thread and returns its result; called from an executor thread itself
/// (a nested call), runs it inline. `expected` is how long the caller thinks it takes (the
/// model's last run), which decides whether to wait spinning or parked.
///
/// `spare_core` says libtorch's threads leave a core free: then a caller waits for a long run
/// yielding (it gives the core to any thread that wants it, and sees the answer at once)
/// rather than parked (a wake-up costs tens of microseconds on a busy machine).
pub(crate) fn run<R: Send>(expected: Duration, spare_core: bool, f: impl FnOnce() -> R + Send) -> R {
    thread_local! {
        static ON_EXECUTOR: bool = std::thread::current().name() == Some("rivet-libtorch");
    }
    if ON_EXECUTOR.with(|on| *on) {
        return f();
    }
    let mut f = Some(f);
    let mut result: Option<R> = None;
    let mut call = || {
        if let Some(f) = f.take() {
            result = Some(f());
        }
    };
    let done = Arc::new(Done { flag: AtomicBool::new(false), waiter: std::thread::current() });
    let dyn_call: &mut (dyn FnMut() + Send) = &mut call;
    // SAFETY: only the lifetime is erased; this function waits for `done` before `call` goes out
    // of scope, and nothing here can unwind between submitting and waiting.
    let run: *mut (dyn FnMut() + Send + 'static) = unsafe { std::mem::transmute(dyn_call) };
    let executor = executor();
    {
        let mut queue = executor.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back(Task { run, done: Arc::clone(&done) });
        executor.pending.fetch_add(1, Ordering::AcqRel);
        if executor.sleeping.load(Ordering::SeqCst) > 0 {
            executor.wake.notify_one();
        }
    }
    let spin = if expected < SHORT_RUN { MAX_SPIN } else { Duration::from_micros(2) };
    let yield_for = if spare_core { expected * 2 + MAX_SPIN } else { Duration::ZERO };
    let started = Instant::now();
    while !done.flag.load(Ordering::Acquire) {
        let waited = started.elapsed();
        if waited < spin {
            std::hint::spin_loop();
        } else if waited < yield_for {
            std::thread::yield_now();
        } else {
            std::thread::park();
        }
    }
    result.expect("the executor ran the call")
}
