//! Where a model's products run under an explicit intra-op thread count: small ones on the
//! calling thread, large ones (more than [`SERIAL_GEMM_MACS`] multiply-adds, the one rule for
//! every kernel family) on the model's pool of that many threads.
//!
//! A run sets its model's [`Budget`] for the calling thread; the kernels ask it through
//! [`products`]. Without a budget (no thread count given), large products run on the current
//! rayon pool, with as many threads as it has.

use std::cell::RefCell;
use std::sync::Arc;

use gemm::Parallelism;

use super::gemm::SERIAL_GEMM_MACS;

/// A model's intra-op threads and the pool that holds them.
#[derive(Clone)]
pub(crate) struct Budget {
    pub(crate) threads: usize,
    pub(crate) pool: Arc<rayon::ThreadPool>,
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// Runs `f` with `budget` as the calling thread's, restoring the one before after.
pub(crate) fn with_budget<R>(budget: Option<&Budget>, f: impl FnOnce() -> R) -> R {
    let Some(budget) = budget else { return f() };
    struct Restore(Option<Budget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.with(|b| *b.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(BUDGET.with(|b| b.borrow_mut().replace(budget.clone())));
    f()
}

/// A value moved to a pool thread and back across [`rayon::ThreadPool::install`], which
/// blocks the caller until it returns: nothing else touches it meanwhile.
struct Handoff<T>(T);

impl<T> Handoff<T> {
    /// The value (a method, so that a closure moves the whole `Handoff`, not its field).
    fn into_inner(self) -> T {
        self.0
    }
}

// SAFETY: see above: the caller waits in `install` while a pool thread runs the closure, so the
// value (and what it borrows) is used by one thread at a time, as on the caller alone.
unsafe impl<T> Send for Handoff<T> {}

/// Runs `f`, the products of one of Rivet's kernels (`macs` multiply-adds in all), with the
/// parallelism they may use: on the calling thread when small or when the budget is one thread,
/// else split over the budget's pool; without a budget, as [`parallelism`] says.
pub(crate) fn products<R>(macs: usize, f: impl FnOnce(Parallelism) -> R) -> R {
    match budget() {
        None => f(parallelism(macs)),
        Some(Budget { threads, pool }) if threads > 1 && macs > SERIAL_GEMM_MACS => {
            on_pool(&pool, move || f(Parallelism::Rayon(threads)))
        }
        Some(_) => f(Parallelism::None),
    }
}

/// Runs `f`, a product of Candle's own (`macs` multiply-adds), which splits its work over
/// whatever pool it runs in: a large one runs on the budget's pool, at one thread too.
pub(crate) fn candle_product<R>(macs: usize, f: impl FnOnce() -> R) -> R {
    match budget() {
        Some(Budget { pool, .. }) if macs > SERIAL_GEMM_MACS => on_pool(&pool, f),
        _ => f(),
    }
}

fn budget() -> Option<Budget> {
    BUDGET.with(|b| b.borrow().clone())
}

fn on_pool<R>(pool: &rayon::ThreadPool, f: impl FnOnce() -> R) -> R {
    let task = Handoff(f);
    pool.install(move || Handoff(task.into_inner()())).into_inner()
}

/// How a product of `macs` multiply-adds runs without a budget: on the calling thread when
/// small, else on the current rayon pool.
pub(crate) fn parallelism(macs: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if macs <= SERIAL_GEMM_MACS || threads < 2 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}
