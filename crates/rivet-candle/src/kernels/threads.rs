//! Where a model's products run under an explicit intra-op thread count: small ones (at most
//! [`MID_MACS`] multiply-adds) on the calling thread, large ones (more than
//! [`SERIAL_GEMM_MACS`]) split over that many threads: a convolution or a Gemm over the
//! model's [`Team`], the calling thread among them; a MatMul that Candle computes over a rayon
//! pool of the model's, started on first use. A convolution, Gemm or sliced element-wise map
//! in between (mid-sized) splits over the team in the runs whose way the model's
//! [`Tuner`](super::tune) picked as splitting, and in every run of a model whose runs split a
//! large kernel after a mid-sized one (`Budget::mid_way`); a 2×2 max pool of one image goes the
//! same way as its run ([`split_as_run`]). The rule is the same for every kernel family but
//! Candle's MatMul, whose hand-off to a rayon pool costs more: it splits from
//! [`SERIAL_GEMM_MACS`] alone.
//!
//! A batch of at least as many images as threads is the exception: its convolutions, max and
//! global average pooling, float sums and means over other axes than the batch's, and its Relu
//! and same-shape arithmetic from 64 Ki values, split by
//! image ranges whatever their size ([`split_batch`]), so that each image stays on one core.
//!
//! A run sets its model's [`Budget`] for the calling thread; the kernels ask it through
//! [`split`], [`split_batch`], [`split_as_run`] and [`candle_product`]. Without a budget (no thread count given),
//! large MatMuls run on the current rayon pool, with as many threads as it has, and large
//! convolutions and Gemms on a team of the process's, as many threads as that pool.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use gemm::Parallelism;
use rayon::prelude::*;

use super::gemm::SERIAL_GEMM_MACS;
use super::team::Team;
use super::tune::{Tuner, Way, MID_MACS};

/// A model's intra-op threads: the team its convolutions split over, the rayon pool its
/// matrix products split over (started when one first needs it), and with two or more threads
/// the [`Tuner`] that says whether its mid-sized kernels split.
#[derive(Clone)]
pub(crate) struct Budget {
    pub(crate) threads: usize,
    team: Arc<Team>,
    pool: Arc<OnceLock<Option<rayon::ThreadPool>>>,
    tuner: Arc<Mutex<Tuner>>,
    /// Whether a run of the model has split a kernel over the team after one of its mid-sized
    /// kernels went to the calling thread: its workers are then wanted again within such runs,
    /// and its later runs split their mid-sized kernels too (see [`Budget::mid_way`]).
    needs_workers: Arc<AtomicBool>,
}

impl Budget {
    /// A budget of `threads` (at least 1), its threads named `rivet-candle-N`.
    pub(crate) fn new(threads: usize) -> std::io::Result<Budget> {
        Ok(Budget {
            threads,
            team: Arc::new(Team::new(threads, "rivet-candle")?),
            pool: Arc::new(OnceLock::new()),
            tuner: Arc::new(Mutex::new(Tuner::new())),
            needs_workers: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The team, for a kernel that splits whatever way the run takes: a split after a
    /// mid-sized kernel that went to the calling thread marks the model as one whose runs need
    /// the workers again (see [`split`]).
    fn team_split(&self) -> Split<'_> {
        if MID.with(|m| m.get()).is_some_and(|(way, _)| way == Way::Caller) {
            self.needs_workers.store(true, Ordering::Relaxed);
        }
        Split::Team(&self.team)
    }

    /// Where the mid-sized kernels of a run starting now go: over the team in a model whose
    /// runs split a large kernel after a mid-sized one, else the way the [`Tuner`] says.
    ///
    /// Such a model's large kernels spread each layer's data over the cores whichever way its
    /// mid-sized kernels go, and keep the workers polling: a mid-sized kernel on the calling
    /// thread then saves no move of data between the cores, pulls its input from the other
    /// core and leaves that core idle. On ResNet-18 at batch 1 and two threads (AMD EPYC,
    /// `RIVET_CANDLE_PROFILE`, each layer's fastest of 60 runs, two runs each way), its
    /// stride-2 shortcuts took 28–29, 30 and 45–47 µs split against 48–54, 47–53 and 76–92
    /// on the calling thread. Its whole runs gain too little (about 70 µs in 6 ms) for a
    /// trial's medians to tell from the noise of such a machine.
    fn mid_way(&self) -> Way {
        if self.needs_workers.load(Ordering::Relaxed) {
            Way::Split
        } else {
            lock(&self.tuner).way()
        }
    }

    /// The way the budget's tuner has settled on, if it is not in a trial.
    #[cfg(test)]
    pub(crate) fn settled_way(&self) -> Option<Way> {
        lock(&self.tuner).settled()
    }

    /// The way the budget's next run with a mid-sized kernel takes, and whether its team's
    /// workers were told to rest since their last split.
    #[cfg(test)]
    pub(crate) fn next_way_and_resting(&self) -> (Way, bool) {
        (self.mid_way(), self.team.resting())
    }

    /// The rayon pool of `threads` threads, or `None` when it cannot start (the product then
    /// runs on the calling thread).
    fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.pool
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(self.threads)
                    .thread_name(|i| format!("rivet-candle-mm-{i}"))
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

thread_local! {
    /// Where the run in progress on this thread sends its mid-sized kernels, and when its first
    /// one started; `None` until it has one.
    static MID: Cell<Option<(Way, Instant)>> = const { Cell::new(None) };
}

/// Runs `f`, a model's run, with `budget` as the calling thread's, restoring the one before
/// after. A run with a mid-sized kernel (see [`split`]) whose way the budget's tuner gave
/// tells the tuner how long it took from that kernel's start; other runs cost the tuner
/// nothing.
pub(crate) fn with_budget<R>(budget: Option<&Budget>, f: impl FnOnce() -> R) -> R {
    let Some(budget) = budget else { return f() };
    let before = MID.with(|m| m.replace(None));
    let out = with_run_budget(budget.clone(), f);
    if let Some((way, start)) = MID.with(|m| m.replace(before)) {
        // A split run of a model that needs its workers took the way without the tuner (only
        // a run on the calling thread marks a model so): the tuner does not count it.
        if way == Way::Caller || !budget.needs_workers.load(Ordering::Relaxed) {
            lock(&budget.tuner).record(way, start.elapsed());
        }
    }
    out
}

/// Runs `f` with `budget` as the calling thread's, restoring the one before after.
fn with_run_budget<R>(budget: Budget, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Budget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.with(|b| *b.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(BUDGET.with(|b| b.borrow_mut().replace(budget)));
    f()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Runs `f`, a product of Candle's own (`macs` multiply-adds), which splits its work over
/// whatever pool it runs in: a large one runs on the budget's pool, at one thread too.
pub(crate) fn candle_product<R>(macs: usize, f: impl FnOnce() -> R) -> R {
    match budget() {
        Some(b) if macs > SERIAL_GEMM_MACS => match b.pool() {
            Some(pool) => on_pool(pool, f),
            None => f(),
        },
        _ => f(),
    }
}

/// Runs `f`, a kernel of `macs` multiply-adds that splits its work into tasks itself, with the
/// [`Split`] it may use: the calling thread alone when small or when the budget is one thread,
/// the budget's team when large. Without a budget, a large one splits over the process's
/// [`default_team`] (as many threads as the global rayon pool), or over the current rayon pool
/// when it runs inside one.
pub(crate) fn split<R>(macs: usize, f: impl FnOnce(Split<'_>) -> R) -> R {
    match budget() {
        None => match parallelism(macs) {
            Parallelism::Rayon(t) if rayon::current_thread_index().is_none() => match default_team() {
                Some(team) => f(Split::Team(team)),
                None => f(Split::Rayon(t)),
            },
            Parallelism::Rayon(t) => f(Split::Rayon(t)),
            _ => f(Split::Serial),
        },
        Some(b) if b.threads > 1 && macs > SERIAL_GEMM_MACS => f(b.team_split()),
        Some(b) if b.threads > 1 && macs > MID_MACS => {
            let way = MID.with(|m| match m.get() {
                Some((way, _)) => way,
                None => {
                    let way = b.mid_way();
                    // The workers park now: a run on the calling thread is one whose model
                    // splits no kernel after this one, or has not shown it yet.
                    if way == Way::Caller {
                        b.team.rest();
                    }
                    m.set(Some((way, Instant::now())));
                    way
                }
            });
            match way {
                Way::Split => f(Split::Team(&b.team)),
                Way::Caller => f(Split::Serial),
            }
        }
        Some(_) => f(Split::Serial),
    }
}

/// Runs `f` with the split of a kernel that goes the way its run does: over the model's team
/// when the run in progress has split a mid-sized kernel ([`split`]), else on the calling
/// thread. A kernel between two such (a 2×2 max pool of one image) then keeps each plane on
/// the thread that computed it, and times no way of its own.
pub(crate) fn split_as_run<R>(f: impl FnOnce(Split<'_>) -> R) -> R {
    match budget() {
        Some(b) if b.threads > 1 && MID.with(|m| m.get()).is_some_and(|(way, _)| way == Way::Split) => {
            f(Split::Team(&b.team))
        }
        _ => f(Split::Serial),
    }
}

/// [`split`] for a kernel over a batch of `images` images (a convolution, a pooling): with at
/// least as many images as threads it splits whatever its size, the images in one range per
/// thread ([`Split::run_ranges`]). Each image then stays on one core from one layer to the
/// next, where a kernel left on the calling thread pulls every image back to it: on the
/// bundled CNN at batch 8 and two threads, splitting its first convolution (3.5 million
/// multiply-adds) and its 2×2 max pools alone made a run slower (0.39 to 0.43–0.44 ms), and
/// both together faster (0.29 ms). Fewer images than threads follow [`split`]'s rule.
pub(crate) fn split_batch<R>(images: usize, macs: usize, f: impl FnOnce(Split<'_>) -> R) -> R {
    match budget() {
        None => {
            let threads = rayon::current_num_threads();
            if threads > 1 && images >= threads && rayon::current_thread_index().is_none() {
                if let Some(team) = default_team() {
                    return f(Split::Team(team));
                }
            }
            split(macs, f)
        }
        Some(b) if b.threads > 1 && images >= b.threads => f(b.team_split()),
        Some(_) => split(macs, f),
    }
}

/// Runs `f(range)` over `len` values of a batch of `images` images (each image's values
/// consecutive) for an element-wise kernel: split by images as [`split_batch`] does from
/// [`CANDLE_POOLED_VALUES`] values up (where Candle itself splits element-wise work), each
/// task given the values of its images; below that, `f(0..len)` on the calling thread.
pub(crate) fn elementwise_by_images(
    images: usize,
    len: usize,
    f: impl Fn(std::ops::Range<usize>) + Sync + Send,
) {
    if images == 0 || len < CANDLE_POOLED_VALUES || !len.is_multiple_of(images) {
        return f(0..len);
    }
    let per = len / images;
    split_batch(images, 0, |split| {
        let tasks = split.threads().min(images);
        split.run(tasks, |t| f(t * images / tasks * per..(t + 1) * images / tasks * per))
    })
}

/// The team that models without an intra-op thread count split their convolutions over: one
/// per process, of as many threads as the global rayon pool (`RAYON_NUM_THREADS`, else the
/// cores), started when a convolution first splits; `None` when its threads cannot start. Its
/// caller works on its own tasks as a model's team's does, so a split costs no hand-off to a
/// pool and back; a second caller while it is busy runs its tasks on its own thread.
fn default_team() -> Option<&'static Team> {
    static TEAM: OnceLock<Option<Team>> = OnceLock::new();
    TEAM.get_or_init(|| Team::new(rayon::current_num_threads(), "rivet-candle-default").ok()).as_ref()
}

/// Where a kernel's tasks run.
pub(crate) enum Split<'a> {
    /// One after another on the calling thread.
    Serial,
    /// On the current rayon pool, of this many threads.
    Rayon(usize),
    /// On a model's team.
    Team(&'a Team),
}

impl Split<'_> {
    /// How many threads the tasks may share.
    pub(crate) fn threads(&self) -> usize {
        match self {
            Split::Serial => 1,
            Split::Rayon(t) => (*t).max(1),
            Split::Team(team) => team.threads(),
        }
    }

    /// Runs `f(0)`, ..., `f(items - 1)`, each once, as one task per thread of consecutive
    /// items (on a team, task `t` on thread `t` when it is free, the first on the calling
    /// thread), and returns when all have. Kernels that split a batch this way keep an image on
    /// the same thread from one layer to the next, where one task per image goes to whichever
    /// thread claims it.
    pub(crate) fn run_ranges(&self, items: usize, f: impl Fn(usize) + Sync + Send) {
        let tasks = self.threads().min(items).max(1);
        self.run(tasks, |t| (t * items / tasks..(t + 1) * items / tasks).for_each(&f));
    }

    /// Runs `f(0)`, ..., `f(tasks - 1)`, each once, and returns when all have.
    pub(crate) fn run(&self, tasks: usize, f: impl Fn(usize) + Sync + Send) {
        match self {
            Split::Serial => (0..tasks).for_each(f),
            Split::Rayon(_) => (0..tasks).into_par_iter().for_each(f),
            Split::Team(team) => team.split(tasks, &f),
        }
    }
}

/// A mutable slice cut into chunks of `size` (the last may be shorter) that a split's tasks
/// take by index, each its own.
pub(crate) struct Chunks<'a, T> {
    ptr: *mut T,
    len: usize,
    size: usize,
    _slice: PhantomData<&'a mut [T]>,
}

// SAFETY: a `Chunks` hands out disjoint parts of a slice it borrows mutably, like
// `chunks_mut`, whose chunks may move to other threads when `T` is `Send`.
unsafe impl<T: Send> Send for Chunks<'_, T> {}
// SAFETY: as above: `take`'s contract keeps two threads off the same chunk.
unsafe impl<T: Send> Sync for Chunks<'_, T> {}

impl<'a, T> Chunks<'a, T> {
    /// `data` in chunks of `size` (at least 1).
    pub(crate) fn new(data: &'a mut [T], size: usize) -> Self {
        Chunks { ptr: data.as_mut_ptr(), len: data.len(), size: size.max(1), _slice: PhantomData }
    }

    /// How many chunks there are.
    pub(crate) fn count(&self) -> usize {
        self.len.div_ceil(self.size)
    }

    /// Chunk `i`.
    ///
    /// # Safety
    /// Each chunk is taken at most once while the `Chunks` lives (as a split's task `i` takes
    /// chunk `i`).
    pub(crate) unsafe fn take(&self, i: usize) -> &'a mut [T] {
        assert!(i < self.count(), "chunk {i} of {}", self.count());
        let start = i * self.size;
        let len = self.size.min(self.len - start);
        // SAFETY: `start..start + len` lies inside the borrowed slice, and (by the contract)
        // no other reference to it exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

impl<'a, T> Chunks<'a, T> {
    /// Chunks `range`, consecutive, as one slice.
    ///
    /// # Safety
    /// As [`Chunks::take`]'s, for each chunk of the range.
    pub(crate) unsafe fn take_range(&self, range: std::ops::Range<usize>) -> &'a mut [T] {
        assert!(
            range.start <= range.end && range.end <= self.count(),
            "chunks {range:?} of {}",
            self.count()
        );
        let start = range.start * self.size;
        let end = (range.end * self.size).min(self.len).max(start);
        // SAFETY: `start..end` lies inside the borrowed slice, and (by the contract) no other
        // reference to it exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), end - start) }
    }
}

/// Candle runs an element-wise map of this many values or more on workers of its own, one
/// pool per process sized by `CANDLE_NUM_THREADS` (else the cores), whatever a model's thread
/// count: `candle_core::cpu_backend::utils`' `PAR_ELEMWISE_MIN`.
pub(crate) const CANDLE_POOLED_VALUES: usize = 64 * 1024;

/// Values per slice when [`candle_map`] cuts a tensor.
const MAP_SLICE: usize = 32 * 1024;

/// `f(x)` for `f`, an element-wise map made of Candle's operators, within the model's thread
/// count: with a budget and [`CANDLE_POOLED_VALUES`] values or more, `x` goes through `f` in
/// slices small enough for Candle to run on the calling thread, the slices split over the
/// budget's team when there are enough values to gain (the same rule as every kernel), and
/// the results are joined. Without a budget, `f(x)` as it is.
pub(crate) fn candle_map(
    x: &candle_core::Tensor,
    f: impl Fn(&candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> + Sync,
) -> candle_core::Result<candle_core::Tensor> {
    let n = x.elem_count();
    if budget().is_none() || n < CANDLE_POOLED_VALUES {
        return f(x);
    }
    let flat = x.flatten_all()?;
    let slices = n.div_ceil(MAP_SLICE);
    let parts: Vec<std::sync::Mutex<Option<candle_core::Result<candle_core::Tensor>>>> =
        (0..slices).map(|_| std::sync::Mutex::new(None)).collect();
    split(n, |s| {
        s.run(slices, |i| {
            let start = i * MAP_SLICE;
            let part = flat.narrow(0, start, MAP_SLICE.min(n - start)).and_then(|v| f(&v));
            *parts[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(part);
        })
    });
    let parts = parts
        .into_iter()
        .map(|p| {
            p.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).unwrap_or_else(|| {
                Err(candle_core::Error::Msg("a slice of an element-wise map did not run".into()))
            })
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    candle_core::Tensor::cat(&parts, 0)?.reshape(x.dims())
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
