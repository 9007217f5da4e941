//! Whether a model's mid-sized kernels split over its threads, found by timing its own runs.
//!
//! A kernel of more than [`SERIAL_GEMM_MACS`](super::gemm::SERIAL_GEMM_MACS) multiply-adds
//! always splits under a thread count of two or more, and one of at most [`MID_MACS`] never
//! does. Between the two, whether splitting pays depends less on the kernel than on the
//! machine: on a two-core virtual machine, the same convolution of 1.2 million multiply-adds
//! ran 1.44 times as fast split over two threads when the hypervisor placed the two cores
//! close (a hand-off from one to the other in about 200 ns), and slower than on one thread
//! when it placed them far apart (about 420 ns), where the data a split moves between the cores
//! costs more than the second core gains. The placement can change while a process runs.
//!
//! So each model with two or more threads times its runs both ways and keeps the faster. A
//! trial takes four turns of [`TURN`] runs, splitting mid-sized kernels and keeping them on
//! the calling thread in turn, and compares the median times of each way's runs (a turn's first
//! run not counted: it follows the other way's, whose data sits in the other core's cache).
//! A run on the calling thread first parks the team's polling workers
//! ([`Team::rest`](super::team::Team::rest)): in some placements of the two cores, a worker
//! still polling after the last split slowed the caller's runs of the bundled CNN from 48 to
//! 60 µs, so the trial's caller turns measured slower than a settled
//! stretch of them runs, and trials took splitting where it lost. A model whose runs split a
//! large kernel after their first mid-sized one (ResNet-18 at batch 1: its stride-2 shortcuts
//! come before 3×3 layers) leaves them polling instead, once a run has shown it: a parked
//! worker joined those layers' splits 20–50 µs late, three times a run. Such a model's later
//! runs split their mid-sized kernels without a trial (`Budget::mid_way` in `threads`).
//! Splitting must win by [`MARGIN`] to be taken, since it keeps a second core busy. The way
//! taken then holds for [`SETTLED_RUNS`] runs, [`GROWTH`] times as many after each trial that
//! keeps the same way (up to [`SETTLED_RUNS_MOST`]), and a new trial starts. A model's first
//! [`WARM_RUNS`] runs take the calling thread and start no trial: they fault in the model's
//! memory and their times are not yet those of its later runs. Only runs with a mid-sized
//! kernel count, each timed from its first one's start: for other runs, and for what comes
//! before that kernel, the two ways are the same. Which way a run takes never changes
//! its result: a split's tasks each write their own part of the output with the same
//! arithmetic as the calling thread alone.

use std::time::Duration;

/// Kernels of more than this many multiply-adds and at most
/// [`SERIAL_GEMM_MACS`](super::gemm::SERIAL_GEMM_MACS) split when the model's runs measure that
/// it pays (see the module's documentation); smaller ones never split. On the bundled CNN at
/// batch 1 and two threads, splitting from here made a run 1.23–1.28 times as fast where the
/// cores are close (its smallest convolution has 0.44 million multiply-adds).
pub(crate) const MID_MACS: usize = 1 << 18;

/// Runs in a trial's turn of one way; a trial takes four turns, two of each way, and counts
/// all but the first run of each turn.
pub(crate) const TURN: usize = 5;

/// Runs with a mid-sized kernel before a model's first trial, on the calling thread: on the
/// bundled CNN, runs took 80 µs on average over the first 50 and 62–64 µs over the next
/// hundreds.
pub(crate) const WARM_RUNS: u32 = 48;

/// Runs with a mid-sized kernel after a model's first trial and after a trial that changed the
/// way.
pub(crate) const SETTLED_RUNS: u32 = 64;

/// How many times as many runs a way holds for after a trial that kept it.
pub(crate) const GROWTH: u32 = 4;

/// The most runs between two trials: about a second of the bundled CNN's.
pub(crate) const SETTLED_RUNS_MOST: u32 = 16 * 1024;

/// How much faster splitting must be to be taken: its median time per run at most this share
/// of the calling thread's. Where it pays on the bundled CNN it takes 0.7–0.8 of that time; a
/// trial of a few runs on a busy virtual machine can show a few percent either way by chance.
pub(crate) const MARGIN: f64 = 0.9;

/// Where a run's mid-sized kernels go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    /// On the calling thread.
    Caller,
    /// Over the model's team.
    Split,
}

impl Way {
    fn index(self) -> usize {
        match self {
            Way::Caller => 0,
            Way::Split => 1,
        }
    }
}

/// A model's choice between the two ways; see the module's documentation.
#[derive(Debug)]
pub(crate) struct Tuner {
    state: State,
    /// The way the last trial took, and the runs it held for.
    last: Option<(Way, u32)>,
}

#[derive(Debug)]
enum State {
    /// Runs take the ways in turns of [`TURN`] runs, starting with splitting: `run` counts the
    /// trial's runs so far, `times` holds each way's counted times.
    Trial { run: usize, times: [Vec<Duration>; 2] },
    /// Runs take `way`, until `left` more with a mid-sized kernel have.
    Settled { way: Way, left: u32 },
}

impl Default for Tuner {
    fn default() -> Self {
        Tuner::new()
    }
}

impl Tuner {
    /// A tuner for a new model, before its first trial.
    pub(crate) fn new() -> Tuner {
        Tuner { state: State::Settled { way: Way::Caller, left: WARM_RUNS }, last: None }
    }

    /// The way the next run takes.
    pub(crate) fn way(&self) -> Way {
        match &self.state {
            State::Trial { run, .. } => turn_way(*run),
            State::Settled { way, .. } => *way,
        }
    }

    /// The way settled on, if not in a trial.
    #[cfg(test)]
    pub(crate) fn settled(&self) -> Option<Way> {
        match self.state {
            State::Settled { way, .. } => Some(way),
            State::Trial { .. } => None,
        }
    }

    /// What a run with a mid-sized kernel that took `way` measured: `took`, its time from that
    /// kernel's start on.
    pub(crate) fn record(&mut self, way: Way, took: Duration) {
        match &mut self.state {
            State::Trial { run, times } => {
                // A turn's first run, which follows runs of the other way (or a settled stretch
                // in which a worker may have parked), is not counted; nor is a run that took
                // another way than the turn's (one that started before the turn did).
                if *run % TURN != 0 && way == turn_way(*run) {
                    times[way.index()].push(took);
                }
                *run += 1;
                if *run == 4 * TURN {
                    let [caller, split] = times.each_mut().map(|t| median(t));
                    // Without a counted run of each way (runs of other ways from other
                    // threads took every place), the calling thread.
                    let way = match (caller, split) {
                        (Some(c), Some(s)) if s.as_secs_f64() <= c.as_secs_f64() * MARGIN => Way::Split,
                        _ => Way::Caller,
                    };
                    let runs = match self.last {
                        Some((last, runs)) if last == way => {
                            runs.saturating_mul(GROWTH).min(SETTLED_RUNS_MOST)
                        }
                        _ => SETTLED_RUNS,
                    };
                    self.last = Some((way, runs));
                    self.state = State::Settled { way, left: runs };
                }
            }
            State::Settled { left, .. } => {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.state = State::Trial { run: 0, times: [Vec::new(), Vec::new()] };
                }
            }
        }
    }
}

/// The way of a trial's run `run`: turns of [`TURN`] runs, splitting first.
fn turn_way(run: usize) -> Way {
    if (run / TURN).is_multiple_of(2) {
        Way::Split
    } else {
        Way::Caller
    }
}

/// The median of `times`, sorting them; `None` when empty.
fn median(times: &mut [Duration]) -> Option<Duration> {
    times.sort_unstable();
    times.get(times.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `tuner` runs with a mid-sized kernel, each taking `time(way, n)` (`n` counting
    /// that way's runs from 1), until a trial ends; returns the ways the runs took and the
    /// way settled on.
    fn trial(tuner: &mut Tuner, time: impl Fn(Way, u32) -> Duration) -> (Vec<Way>, Way) {
        assert!(matches!(tuner.state, State::Trial { run: 0, .. }), "a trial starts");
        let (mut ways, mut counts) = (Vec::new(), [0, 0]);
        loop {
            let way = tuner.way();
            ways.push(way);
            counts[way.index()] += 1;
            tuner.record(way, time(way, counts[way.index()]));
            if let State::Settled { way, .. } = tuner.state {
                return (ways, way);
            }
        }
    }

    /// Runs with a mid-sized kernel until the settled stretch ends; returns how many.
    fn settled(tuner: &mut Tuner, way: Way) -> u32 {
        let mut runs = 0;
        while matches!(tuner.state, State::Settled { .. }) {
            assert_eq!(tuner.way(), way);
            tuner.record(way, MS);
            runs += 1;
        }
        runs
    }

    /// A new model's tuner after its warm-up: [`WARM_RUNS`] runs on the calling thread, slow
    /// ones not making it trial anything.
    fn warm() -> Tuner {
        let mut t = Tuner::new();
        for _ in 0..WARM_RUNS {
            assert_eq!(t.way(), Way::Caller);
            t.record(Way::Caller, 1000 * MS);
        }
        t
    }

    fn flat(split: Duration, caller: Duration) -> impl Fn(Way, u32) -> Duration {
        move |way, _| if way == Way::Split { split } else { caller }
    }

    #[test]
    fn a_trial_takes_each_way_in_turns_and_keeps_the_faster_by_the_margin() {
        let (ways, way) = trial(&mut warm(), flat(80 * MS, 100 * MS));
        let turns: Vec<Way> = [Way::Split, Way::Caller, Way::Split, Way::Caller]
            .into_iter()
            .flat_map(|w| std::iter::repeat_n(w, TURN))
            .collect();
        assert_eq!((ways, way), (turns, Way::Split));
        assert_eq!(trial(&mut warm(), flat(100 * MS, 80 * MS)).1, Way::Caller);
        // Splitting must win by the margin: 91% of the caller's time is not enough, 89% is.
        assert_eq!(trial(&mut warm(), flat(91 * MS, 100 * MS)).1, Way::Caller);
        assert_eq!(trial(&mut warm(), flat(89 * MS, 100 * MS)).1, Way::Split);
        // A turn's first run is not counted: slow ones there change nothing.
        let first_slow = |way, n: u32| match (way, n % TURN as u32) {
            (Way::Split, 1) => 1000 * MS,
            (Way::Split, _) => 50 * MS,
            (Way::Caller, _) => 70 * MS,
        };
        assert_eq!(trial(&mut warm(), first_slow).1, Way::Split);
    }

    #[test]
    fn a_trial_goes_by_medians_and_counts_only_runs_of_its_turns_way() {
        let mut t = warm();
        // Split runs at 50 ms but for three at 1 s (a median of 50), the caller's at 70 ms but
        // for three at 1 ms (a median of 70): splitting wins though its mean is the higher.
        let time = |way, n: u32| match (way, [3, 4, 8].contains(&n)) {
            (Way::Split, true) => 1000 * MS,
            (Way::Split, false) => 50 * MS,
            (Way::Caller, true) => MS,
            (Way::Caller, false) => 70 * MS,
        };
        assert_eq!(trial(&mut t, time).1, Way::Split);
        // A run that took another way than its turn's (started before the turn) is not
        // counted: a trial whose caller turns only saw split runs keeps the calling thread.
        let mut t = warm();
        for _ in 0..4 * TURN {
            t.record(Way::Split, MS);
        }
        assert!(matches!(t.state, State::Settled { way: Way::Caller, .. }));
    }

    #[test]
    fn settled_stretches_grow_while_trials_agree_and_a_change_of_machine_is_followed() {
        let mut t = warm();
        assert_eq!(trial(&mut t, flat(50 * MS, 100 * MS)).1, Way::Split);
        assert_eq!(settled(&mut t, Way::Split), SETTLED_RUNS);
        let mut stretch = SETTLED_RUNS;
        for _ in 0..6 {
            assert_eq!(trial(&mut t, flat(50 * MS, 100 * MS)).1, Way::Split);
            stretch = (stretch * GROWTH).min(SETTLED_RUNS_MOST);
            assert_eq!(settled(&mut t, Way::Split), stretch);
        }
        assert_eq!(stretch, SETTLED_RUNS_MOST);
        // The cores moved apart: splitting now costs more, and the stretch starts over.
        assert_eq!(trial(&mut t, flat(130 * MS, 100 * MS)).1, Way::Caller);
        assert_eq!(settled(&mut t, Way::Caller), SETTLED_RUNS);
        assert_eq!(trial(&mut t, flat(130 * MS, 100 * MS)).1, Way::Caller);
        assert_eq!(settled(&mut t, Way::Caller), GROWTH * SETTLED_RUNS);
    }
}
