//! A model's queue: `instances` worker threads take requests off it, each forming a batch when
//! it is free (Triton's dynamic batcher), so inference never blocks the async threads. While a
//! batch runs, new requests wait in the queue: the next batch is ready when an instance frees,
//! taken at once if its oldest request has waited the delay. The queue is a mutex and two
//! condition variables: a worker sleeps in the kernel until a request arrives (while forming a
//! batch: until enough rows wait to complete it) or its deadline passes (which the OS keeps to
//! tens of microseconds; Tokio's timer ticks in whole
//! milliseconds, which would stretch a 500 µs delay to 1-2 ms). Channels that spin and yield
//! before they sleep cost more CPU per request than the model on a small one, CPU the clients
//! on the same machine need.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rivet::{Model, Tensor};
use tokio::sync::oneshot;

use crate::error::ServeError;
use crate::metrics::ModelMetrics;

/// What a queued request gets back: the model's outputs in signature order, and how long it
/// waited in the queue and how long the execution it was part of took.
#[derive(Debug)]
pub struct Reply {
    /// The outputs, or why there are none.
    pub outputs: Result<Vec<Tensor>, ServeError>,
    /// From queueing to the start of its execution.
    pub queued: Duration,
    /// The execution (of the whole batch it ran in).
    pub compute: Duration,
}

/// One validated request waiting to run.
pub struct Job {
    /// Inputs in signature order.
    pub inputs: Vec<Tensor>,
    /// The leading dimension shared by every input (a request's batch size), or 1 for a model
    /// served without a batch dimension.
    pub rows: usize,
    /// When it was queued.
    pub enqueued: Instant,
    /// Where the answer goes; closed when the client went away.
    pub reply: oneshot::Sender<Reply>,
}

impl Job {
    /// Whether `other` can join a batch this job is in: same dtypes and trailing dimensions.
    fn batches_with(&self, other: &Job) -> bool {
        self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| {
                a.dtype() == b.dtype() && a.shape().get(1..) == b.shape().get(1..) && !a.shape().is_empty()
            })
    }
}

/// How the queue forms batches.
#[derive(Debug, Clone)]
pub struct BatchPolicy {
    /// Rows a batch may hold; 0 turns batching off (one request per execution).
    pub max_rows: usize,
    /// Collecting stops once a batch holds this many rows (the largest preferred size, or
    /// `max_rows`).
    pub target_rows: usize,
    /// How long the oldest request of a forming batch waits for more.
    pub max_delay: Duration,
    /// When no execution of the model is running, a batch runs at once with what waits, and a
    /// forming batch closes as soon as the running execution ends: batches form only under
    /// load (the next one while the current one runs), and a lone request never waits.
    pub idle_first: bool,
}

/// What the workers and the submitting side share.
struct Shared {
    state: Mutex<State>,
    /// Signalled for the worker forming a batch: a request arrived.
    arrived: Condvar,
    /// Signalled for idle workers: there is something to start a batch with, or the queue
    /// closed.
    idle: Condvar,
    capacity: usize,
}

struct State {
    /// Requests not yet taken into a batch, oldest first.
    waiting: Waiting,
    /// Whether a worker is forming a batch (one at a time, as Triton's batcher forms one).
    forming: bool,
    /// Executions running now.
    running: usize,
    /// Rows the forming batch still takes before it closes: an arrival wakes its worker only
    /// once this many rows wait, so a batch of N requests costs one wake-up, not N.
    needed: usize,
    /// Times a forming worker woke before its deadline (tests check arrivals wake it once).
    #[cfg(test)]
    early_wakes: u64,
    /// Set when the queue is dropped: workers finish what is queued, then exit.
    closed: bool,
}

/// The queue's requests and the rows they hold together.
#[derive(Default)]
struct Waiting {
    jobs: VecDeque<Job>,
    rows: usize,
}

impl Waiting {
    fn push_back(&mut self, job: Job) {
        self.rows += job.rows;
        self.jobs.push_back(job);
    }

    fn pop_front(&mut self) -> Option<Job> {
        let job = self.jobs.pop_front()?;
        self.rows -= job.rows;
        Some(job)
    }

    fn remove(&mut self, index: usize) -> Option<Job> {
        let job = self.jobs.remove(index)?;
        self.rows -= job.rows;
        Some(job)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker never panics while holding the lock (the model runs outside it).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side of a model's queue.
pub struct Queue {
    shared: Arc<Shared>,
}

impl Queue {
    /// Starts `instances` worker threads of `model`: `capacity` requests may wait, `instances`
    /// executions run at once. `background` threads run at the lowest scheduling priority (a
    /// shadow's).
    pub fn start(
        model: Arc<dyn Model>,
        policy: BatchPolicy,
        capacity: usize,
        instances: usize,
        metrics: Arc<ModelMetrics>,
        background: bool,
    ) -> std::io::Result<Queue> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiting: Waiting::default(),
                forming: false,
                running: 0,
                needed: 0,
                #[cfg(test)]
                early_wakes: 0,
                closed: false,
            }),
            arrived: Condvar::new(),
            idle: Condvar::new(),
            capacity,
        });
        for i in 0..instances.max(1) {
            let (model, metrics, shared, policy) =
                (Arc::clone(&model), Arc::clone(&metrics), Arc::clone(&shared), policy.clone());
            let name = if background { format!("rivet-shadow-{i}") } else { format!("rivet-model-{i}") };
            std::thread::Builder::new().name(name).spawn(move || {
                if background {
                    rivet::shadow::background_thread();
                }
                while let Some(batch) = next_batch(&shared, &policy) {
                    // Every client of the batch may have gone away while it formed.
                    if !batch.jobs.is_empty() {
                        batch.run(model.as_ref(), &metrics);
                    }
                    let mut state = shared.lock();
                    state.running -= 1;
                    if policy.idle_first && state.running == 0 && state.forming {
                        // The model is idle: the forming batch runs now.
                        shared.arrived.notify_one();
                    }
                }
            })?;
        }
        Ok(Queue { shared })
    }

    /// Queues a job; a full queue is refused at once.
    pub fn submit(&self, job: Job, model: &str) -> Result<(), ServeError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(ServeError::Unavailable(format!("model \"{model}\" is shutting down")));
        }
        if state.waiting.jobs.len() >= self.shared.capacity {
            return Err(ServeError::Unavailable(format!(
                "model \"{model}\": the queue is full, try again later"
            )));
        }
        state.waiting.push_back(job);
        if state.forming {
            // Jobs that cannot join the forming batch count too: at worst a wake-up finds
            // nothing to take and the worker sleeps again.
            if state.waiting.rows >= state.needed {
                self.shared.arrived.notify_one();
            }
        } else {
            self.shared.idle.notify_one();
        }
        Ok(())
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.idle.notify_all();
        self.shared.arrived.notify_all();
    }
}

/// The next batch for a free worker: waits for a request, then, with batching on, for more until
/// the batch holds `target_rows` rows or its oldest request has waited `max_delay`. `None` once
/// the queue is closed and empty.
fn next_batch(shared: &Shared, policy: &BatchPolicy) -> Option<Batch> {
    let mut state = shared.lock();
    loop {
        // Clients that went away while they waited are not run for: dropped here when they
        // reach the front, or when a batch passes over them (`take_fitting`), so that a wake
        // does not scan the whole queue.
        while state.waiting.jobs.front().is_some_and(|job| job.reply.is_closed()) {
            state.waiting.pop_front();
        }
        if !state.forming && !state.waiting.jobs.is_empty() {
            break;
        }
        if state.closed && state.waiting.jobs.is_empty() {
            return None;
        }
        state = shared.idle.wait(state).unwrap_or_else(|p| p.into_inner());
    }
    let first = state.waiting.pop_front().expect("a waiting job");
    let mut batch = Batch { rows: first.rows, jobs: vec![first] };
    if policy.max_rows > 0 {
        state.forming = true;
        let deadline = batch.jobs[0].enqueued + policy.max_delay;
        // What queued while every instance was busy joins at once, up to the maximum; then
        // the batch waits for more until its target or its deadline.
        batch.take_fitting(&mut state.waiting, policy, policy.max_rows);
        while batch.rows < policy.target_rows && !state.closed && !(policy.idle_first && state.running == 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.needed = policy.target_rows - batch.rows;
            let (woken, _timeout) =
                shared.arrived.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner());
            state = woken;
            #[cfg(test)]
            {
                state.early_wakes += u64::from(!_timeout.timed_out());
            }
            batch.take_fitting(&mut state.waiting, policy, policy.target_rows);
        }
        state.forming = false;
    }
    state.running += 1;
    // Another idle worker may start the next batch with what is left.
    if !state.waiting.jobs.is_empty() {
        shared.idle.notify_one();
    }
    drop(state);
    batch.jobs.retain(|job| !job.reply.is_closed());
    batch.rows = batch.jobs.iter().map(|job| job.rows).sum();
    Some(batch)
}

/// Jobs that run as one execution.
struct Batch {
    jobs: Vec<Job>,
    rows: usize,
}

impl Batch {
    /// Moves the waiting jobs that fit (same dtypes and trailing dimensions, rows within
    /// `policy.max_rows`) into the batch, oldest first, until it holds `until` rows; the others
    /// keep their places for the next batch. Jobs whose client left are dropped.
    fn take_fitting(&mut self, waiting: &mut Waiting, policy: &BatchPolicy, until: usize) {
        let mut i = 0;
        while i < waiting.jobs.len() && self.rows < until {
            let job = &waiting.jobs[i];
            if job.reply.is_closed() {
                waiting.remove(i);
            } else if self.rows + job.rows <= policy.max_rows && self.jobs[0].batches_with(job) {
                let job = waiting.remove(i).expect("an index inside the queue");
                self.rows += job.rows;
                self.jobs.push(job);
            } else {
                i += 1;
            }
        }
    }

    /// Runs the batch on this (blocking) thread and answers every job.
    fn run(self, model: &dyn Model, metrics: &ModelMetrics) {
        let start = Instant::now();
        for job in &self.jobs {
            metrics.queue_us.inc_by(crate::metrics::micros(start - job.enqueued));
        }
        let result = catch_unwind(AssertUnwindSafe(|| self.execute(model))).unwrap_or_else(|_| {
            Err(ServeError::Internal(format!("backend {} panicked while running the model", model.backend())))
        });
        let compute = start.elapsed();
        metrics.executed(self.rows as u64, compute);
        let reply = |job: Job, outputs| {
            let _ = job.reply.send(Reply { outputs, queued: start - job.enqueued, compute });
        };
        match result {
            Ok(per_job) => {
                for (job, outputs) in self.jobs.into_iter().zip(per_job) {
                    reply(job, Ok(outputs));
                }
            }
            Err(error) => {
                for job in self.jobs {
                    reply(job, Err(error.clone()));
                }
            }
        }
    }

    /// The outputs of each job: one run of the concatenated inputs, split back by rows.
    fn execute(&self, model: &dyn Model) -> Result<Vec<Vec<Tensor>>, ServeError> {
        if let [job] = self.jobs.as_slice() {
            let inputs: Vec<&Tensor> = job.inputs.iter().collect();
            return Ok(vec![model.run(&inputs)?.into_tensors()]);
        }
        let count = self.jobs[0].inputs.len();
        let joined = (0..count)
            .map(|i| Tensor::concat(&self.jobs.iter().map(|j| j.inputs[i].view()).collect::<Vec<_>>()))
            .collect::<rivet::Result<Vec<Tensor>>>()?;
        let outputs = model.run(&joined.iter().collect::<Vec<_>>())?.into_tensors();
        let rows: Vec<usize> = self.jobs.iter().map(|j| j.rows).collect();
        let mut per_job: Vec<Vec<Tensor>> =
            self.jobs.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
        for (index, output) in outputs.iter().enumerate() {
            if output.shape().first() != Some(&self.rows) {
                return Err(ServeError::Internal(format!(
                    "output {index} has shape {:?}, so it cannot be split back into requests of \
                     {rows:?} rows: serve this model without dynamic batching",
                    output.shape()
                )));
            }
            for (parts, part) in per_job.iter_mut().zip(output.split(&rows)?) {
                parts.push(part);
            }
        }
        Ok(per_job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivet::{Backend, DType, Dim, Signature, TensorSpec, TensorView};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// y = 2x over [batch, 2] f32; records each execution's rows; waits while `closed`.
    struct Doubler {
        signature: Signature,
        batches: Mutex<Vec<usize>>,
        closed: AtomicBool,
        /// Notified each time a run starts: the tests' signal that a request is running.
        entered: tokio::sync::Notify,
    }

    impl Doubler {
        fn new(closed: bool) -> Arc<Doubler> {
            let spec =
                |name: &str| TensorSpec::new(name, DType::F32, vec![Dim::Dynamic(None), Dim::Fixed(2)]);
            Arc::new(Doubler {
                signature: Signature { inputs: vec![spec("x")], outputs: vec![spec("y")] },
                batches: Mutex::new(Vec::new()),
                closed: AtomicBool::new(closed),
                entered: tokio::sync::Notify::new(),
            })
        }
    }

    impl Model for Doubler {
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn backend(&self) -> Backend {
            "doubler".parse().unwrap()
        }
        fn execute(&self, inputs: &[TensorView<'_>]) -> rivet::Result<Vec<Tensor>> {
            self.entered.notify_one();
            while self.closed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.batches.lock().unwrap().push(inputs[0].shape()[0]);
            let x = inputs[0].as_slice::<f32>()?;
            let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
            Ok(vec![Tensor::from_slice(inputs[0].shape(), &y)?])
        }
    }

    fn job(rows: usize, value: f32) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let x = Tensor::from_slice(&[rows, 2], &vec![value; rows * 2]).unwrap();
        (Job { inputs: vec![x], rows, enqueued: Instant::now(), reply }, answer)
    }

    fn start(model: &Arc<Doubler>, max_rows: usize, delay_ms: u64, capacity: usize) -> Queue {
        start_with(model, max_rows, delay_ms, capacity, 1, false)
    }

    fn start_with(
        model: &Arc<Doubler>,
        max_rows: usize,
        delay_ms: u64,
        capacity: usize,
        instances: usize,
        idle_first: bool,
    ) -> Queue {
        let policy = BatchPolicy {
            max_rows,
            target_rows: max_rows,
            max_delay: Duration::from_millis(delay_ms),
            idle_first,
        };
        let metrics = Arc::new(crate::metrics::Metrics::default().for_model("m", "1"));
        Queue::start(Arc::clone(model) as Arc<dyn Model>, policy, capacity, instances, metrics, false)
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_first_runs_a_lone_request_at_once_and_batches_what_queues_behind_a_run() {
        let model = Doubler::new(true);
        // A 10 s delay: under idle-first no batch may wait for it.
        let queue = start_with(&model, 4, 10_000, 64, 1, true);
        let started = Instant::now();
        let (a, a_answer) = job(1, 1.0);
        queue.submit(a, "m").unwrap();
        model.entered.notified().await; // a runs at once: the model was idle
        let mut answers = Vec::new();
        for i in 2..5 {
            let (job, answer) = job(1, i as f32);
            queue.submit(job, "m").unwrap(); // queued behind a
            answers.push((i, answer));
        }
        model.closed.store(false, Ordering::SeqCst);
        assert_eq!(a_answer.await.unwrap().outputs.unwrap()[0].as_slice::<f32>().unwrap(), &[2.0, 2.0]);
        for (i, answer) in answers {
            let outputs = answer.await.unwrap().outputs.unwrap();
            assert_eq!(outputs[0].as_slice::<f32>().unwrap(), &[2.0 * i as f32; 2]);
        }
        // The three that queued ran as one batch of 3 (under the target of 4) as soon as a ended.
        assert_eq!(*model.batches.lock().unwrap(), vec![1, 3]);
        assert!(started.elapsed() < Duration::from_secs(5), "waited for the delay: {:?}", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_first_closes_a_forming_batch_when_the_running_one_ends() {
        let model = Doubler::new(true);
        let queue = start_with(&model, 4, 10_000, 64, 2, true);
        let started = Instant::now();
        let (a, a_answer) = job(1, 1.0);
        queue.submit(a, "m").unwrap();
        model.entered.notified().await; // instance 1 runs a
        let (b, b_answer) = job(1, 2.0);
        queue.submit(b, "m").unwrap();
        // Instance 2 forms a batch with b: the model is busy, so it waits for more.
        while !queue.shared.lock().forming {
            tokio::task::yield_now().await;
        }
        let (c, c_answer) = job(1, 3.0);
        queue.submit(c, "m").unwrap();
        model.closed.store(false, Ordering::SeqCst); // a ends: the model is idle, b and c run
        for (answer, v) in [(a_answer, 2.0), (b_answer, 4.0), (c_answer, 6.0)] {
            assert_eq!(answer.await.unwrap().outputs.unwrap()[0].as_slice::<f32>().unwrap(), &[v, v]);
        }
        assert_eq!(*model.batches.lock().unwrap(), vec![1, 2]);
        assert!(started.elapsed() < Duration::from_secs(5), "waited for the delay: {:?}", started.elapsed());
    }

    #[test]
    fn only_requests_with_the_same_dtypes_and_trailing_dimensions_batch_together() {
        let with = |dtype: DType, shape: &[usize]| {
            let (reply, _) = oneshot::channel();
            Job {
                inputs: vec![Tensor::zeros(dtype, shape).unwrap()],
                rows: shape[0],
                enqueued: Instant::now(),
                reply,
            }
        };
        let base = with(DType::F32, &[1, 2]);
        assert!(base.batches_with(&with(DType::F32, &[3, 2])));
        assert!(!base.batches_with(&with(DType::F32, &[1, 3])), "other trailing dimension");
        assert!(!base.batches_with(&with(DType::F64, &[1, 2])), "other dtype");
        assert!(!base.batches_with(&with(DType::F32, &[1, 2, 1])), "other rank");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_stay_within_the_maximum_and_each_request_gets_its_own_rows() {
        let model = Doubler::new(false);
        let queue = start(&model, 4, 200, 64);
        let mut answers = Vec::new();
        for (i, rows) in [1, 2, 1, 3, 1].into_iter().enumerate() {
            let (job, answer) = job(rows, i as f32);
            queue.submit(job, "m").unwrap();
            answers.push((i, rows, answer));
        }
        for (i, rows, answer) in answers {
            let outputs = answer.await.unwrap().outputs.unwrap();
            assert_eq!(outputs[0].shape(), &[rows, 2]);
            assert!(outputs[0].as_slice::<f32>().unwrap().iter().all(|&v| v == 2.0 * i as f32));
        }
        let batches = model.batches.lock().unwrap().clone();
        // 1+2+1 fill 4; 3 does not fit and starts the next batch with the last 1.
        assert_eq!(batches, vec![4, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn arrivals_wake_a_forming_batch_once_it_can_close() {
        let model = Doubler::new(false);
        // A 10 s delay: the batch must close on its rows, not on its deadline.
        let queue = start(&model, 4, 10_000, 64);
        let started = Instant::now();
        let mut answers = Vec::new();
        for i in 0..4 {
            let (job, answer) = job(1, i as f32);
            queue.submit(job, "m").unwrap();
            answers.push(answer);
            // The first job starts the batch; each later one arrives while it forms.
            while i == 0 && !queue.shared.lock().forming {
                tokio::task::yield_now().await;
            }
        }
        for (i, answer) in answers.into_iter().enumerate() {
            let outputs = answer.await.unwrap().outputs.unwrap();
            assert_eq!(outputs[0].as_slice::<f32>().unwrap(), &[2.0 * i as f32; 2]);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the deadline: {:?}",
            started.elapsed()
        );
        assert_eq!(*model.batches.lock().unwrap(), vec![4]);
        // Three arrivals, one wake-up: the one that completed the batch. Waking on every
        // arrival would make three; the margin is for a spurious wake-up.
        let wakes = queue.shared.lock().early_wakes;
        assert!((1..3).contains(&wakes), "{wakes} wake-ups for three arrivals");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_queue_still_answers_what_it_holds() {
        let model = Doubler::new(true);
        let queue = start(&model, 4, 10, 8);
        let (a, a_answer) = job(1, 1.0);
        queue.submit(a, "m").unwrap();
        model.entered.notified().await; // a runs, held by the model
        let (b, b_answer) = job(2, 2.0);
        queue.submit(b, "m").unwrap(); // b waits
        drop(queue); // shutdown: the worker finishes a, runs b, then exits
        model.closed.store(false, Ordering::SeqCst);
        assert_eq!(a_answer.await.unwrap().outputs.unwrap()[0].as_slice::<f32>().unwrap(), &[2.0, 2.0]);
        assert_eq!(b_answer.await.unwrap().outputs.unwrap()[0].as_slice::<f32>().unwrap(), &[4.0; 4]);
        assert_eq!(*model.batches.lock().unwrap(), vec![1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_and_a_client_that_left_is_not_run_for() {
        let model = Doubler::new(true);
        let queue = start(&model, 0, 0, 2);
        let (a, a_answer) = job(1, 1.0);
        queue.submit(a, "m").unwrap();
        model.entered.notified().await; // a runs (and waits for the model to open)
        let (b, b_answer) = job(1, 2.0);
        queue.submit(b, "m").unwrap(); // b waits for the instance
        let (c, c_answer) = job(1, 3.0);
        queue.submit(c, "m").unwrap(); // c fills the queue of two
        let (d, _) = job(1, 4.0);
        assert_eq!(
            queue.submit(d, "m").unwrap_err(),
            ServeError::Unavailable("model \"m\": the queue is full, try again later".into())
        );
        drop(b_answer); // b's client goes away
        model.closed.store(false, Ordering::SeqCst);
        assert_eq!(a_answer.await.unwrap().outputs.unwrap()[0].as_slice::<f32>().unwrap(), &[2.0, 2.0]);
        assert_eq!(c_answer.await.unwrap().outputs.unwrap()[0].as_slice::<f32>().unwrap(), &[6.0, 6.0]);
        assert_eq!(*model.batches.lock().unwrap(), vec![1, 1], "b must not run");
    }
}
