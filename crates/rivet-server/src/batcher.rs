//! A model's queue: a thread of its own takes requests off it and forms batches (Triton's
//! dynamic batcher); `instances` worker threads run them, so the next batch forms while the
//! current one runs and inference never blocks the async threads. The batcher waits on
//! channels with deadlines the OS keeps to the microsecond (Tokio's timer ticks in whole
//! milliseconds, which would stretch a 500 µs queue delay to 1-2 ms).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, unbounded, Receiver, Sender, TrySendError};
use rivet::{Model, Tensor};
use tokio::sync::oneshot;

use crate::error::ServeError;
use crate::metrics::ModelMetrics;

/// What a queued request gets back: the model's outputs in signature order.
pub type Reply = Result<Vec<Tensor>, ServeError>;

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
}

/// The sending side of a model's queue.
pub struct Queue {
    sender: Sender<Job>,
}

impl Queue {
    /// Starts the batcher thread and `instances` worker threads of `model`: `capacity` requests
    /// may wait, `instances` executions run at once.
    pub fn start(
        model: Arc<dyn Model>,
        policy: BatchPolicy,
        capacity: usize,
        instances: usize,
        metrics: Arc<ModelMetrics>,
    ) -> std::io::Result<Queue> {
        let (sender, receiver) = bounded(capacity);
        // One token per instance: the batcher takes one to dispatch, the worker gives it back.
        let (free, tokens) = bounded(instances);
        let (work, batches) = unbounded::<Batch>();
        for i in 0..instances {
            let (model, metrics, batches, free) =
                (Arc::clone(&model), Arc::clone(&metrics), batches.clone(), free.clone());
            let _ = free.send(());
            std::thread::Builder::new().name(format!("rivet-model-{i}")).spawn(move || {
                for batch in batches {
                    batch.run(model.as_ref(), &metrics);
                    if free.send(()).is_err() {
                        return;
                    }
                }
            })?;
        }
        std::thread::Builder::new()
            .name("rivet-batcher".into())
            .spawn(move || form_batches(receiver, policy, (free, tokens), work))?;
        Ok(Queue { sender })
    }

    /// Queues a job; a full queue is refused at once.
    pub fn submit(&self, job: Job, model: &str) -> Result<(), ServeError> {
        self.sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => {
                ServeError::Unavailable(format!("model \"{model}\": the queue is full, try again later"))
            }
            TrySendError::Disconnected(_) => {
                ServeError::Unavailable(format!("model \"{model}\" is shutting down"))
            }
        })
    }
}

fn form_batches(
    receiver: Receiver<Job>,
    policy: BatchPolicy,
    (free, tokens): (Sender<()>, Receiver<()>),
    work: Sender<Batch>,
) {
    // Jobs taken off the queue that did not fit the batch being formed; they start the next.
    let mut held: VecDeque<Job> = VecDeque::new();
    let none = never::<Job>();
    loop {
        let first = match held.pop_front() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        if first.reply.is_closed() {
            continue; // The client went away while it waited.
        }
        let mut batch = Batch { rows: first.rows, jobs: vec![first] };
        if policy.max_rows > 0 {
            // Held jobs are older than anything still queued: they go first.
            for job in std::mem::take(&mut held) {
                held.extend(batch.offer(job, &policy));
            }
            let deadline = batch.jobs[0].enqueued + policy.max_delay;
            while batch.rows < policy.target_rows {
                let left = deadline.saturating_duration_since(Instant::now());
                select! {
                    recv(receiver) -> job => match job {
                        Ok(job) => held.extend(batch.offer(job, &policy)),
                        Err(_) => break,
                    },
                    default(left) => break,
                }
            }
        }
        // Wait for a free instance; requests that arrive meanwhile still join this batch.
        loop {
            let room = policy.max_rows > 0 && batch.rows < policy.max_rows;
            select! {
                recv(tokens) -> token => match token {
                    Ok(()) => break,
                    Err(_) => return,
                },
                recv(if room { &receiver } else { &none }) -> job => match job {
                    Ok(job) => held.extend(batch.offer(job, &policy)),
                    Err(_) => {
                        if tokens.recv().is_err() {
                            return;
                        }
                        break;
                    }
                },
            }
        }
        // Clients that gave up while the batch waited for an instance are not run for.
        batch.jobs.retain(|job| !job.reply.is_closed());
        batch.rows = batch.jobs.iter().map(|job| job.rows).sum();
        if batch.jobs.is_empty() {
            let _ = free.send(()); // The token goes back unused.
            continue;
        }
        if work.send(batch).is_err() {
            return;
        }
    }
}

/// Jobs that run as one execution.
struct Batch {
    jobs: Vec<Job>,
    rows: usize,
}

impl Batch {
    /// Adds `job` when it fits; gives it back otherwise (or drops it when its client left).
    fn offer(&mut self, job: Job, policy: &BatchPolicy) -> Option<Job> {
        if job.reply.is_closed() {
            return None;
        }
        if self.rows + job.rows <= policy.max_rows && self.jobs[0].batches_with(&job) {
            self.rows += job.rows;
            self.jobs.push(job);
            None
        } else {
            Some(job)
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
        metrics.executed(self.rows as u64, start.elapsed());
        match result {
            Ok(per_job) => {
                for (job, outputs) in self.jobs.into_iter().zip(per_job) {
                    let _ = job.reply.send(Ok(outputs));
                }
            }
            Err(error) => {
                for job in self.jobs {
                    let _ = job.reply.send(Err(error.clone()));
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
    }

    impl Doubler {
        fn new(closed: bool) -> Arc<Doubler> {
            let spec =
                |name: &str| TensorSpec::new(name, DType::F32, vec![Dim::Dynamic(None), Dim::Fixed(2)]);
            Arc::new(Doubler {
                signature: Signature { inputs: vec![spec("x")], outputs: vec![spec("y")] },
                batches: Mutex::new(Vec::new()),
                closed: AtomicBool::new(closed),
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
        let policy =
            BatchPolicy { max_rows, target_rows: max_rows, max_delay: Duration::from_millis(delay_ms) };
        let metrics = Arc::new(crate::metrics::Metrics::default().for_model("m", "1"));
        Queue::start(Arc::clone(model) as Arc<dyn Model>, policy, capacity, 1, metrics).unwrap()
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
            let outputs = answer.await.unwrap().unwrap();
            assert_eq!(outputs[0].shape(), &[rows, 2]);
            assert!(outputs[0].as_slice::<f32>().unwrap().iter().all(|&v| v == 2.0 * i as f32));
        }
        let batches = model.batches.lock().unwrap().clone();
        // 1+2+1 fill 4; 3 does not fit and starts the next batch with the last 1.
        assert_eq!(batches, vec![4, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_and_a_client_that_left_is_not_run_for() {
        let model = Doubler::new(true);
        let queue = start(&model, 0, 0, 1);
        let pause = || tokio::time::sleep(Duration::from_millis(100));
        let (a, a_answer) = job(1, 1.0);
        queue.submit(a, "m").unwrap();
        pause().await; // a runs (and waits for the model to open)
        let (b, b_answer) = job(1, 2.0);
        queue.submit(b, "m").unwrap();
        pause().await; // b is taken off the queue and waits for the instance
        let (c, c_answer) = job(1, 3.0);
        queue.submit(c, "m").unwrap(); // c fills the queue of one
        let (d, _) = job(1, 4.0);
        assert_eq!(
            queue.submit(d, "m").unwrap_err(),
            ServeError::Unavailable("model \"m\": the queue is full, try again later".into())
        );
        drop(b_answer); // b's client goes away
        model.closed.store(false, Ordering::SeqCst);
        assert_eq!(a_answer.await.unwrap().unwrap()[0].as_slice::<f32>().unwrap(), &[2.0, 2.0]);
        assert_eq!(c_answer.await.unwrap().unwrap()[0].as_slice::<f32>().unwrap(), &[6.0, 6.0]);
        assert_eq!(*model.batches.lock().unwrap(), vec![1, 1], "b must not run");
    }
}
