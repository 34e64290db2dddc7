//! The proposal bookkeeping every budgeted search shares (`Batches`): which
//! proposals count against the budget, when a strategy learns, and from what.
use enas::controller::Searcher;
use enas::space::{Arch, SpaceKind};
use enas::train::trials::{run_budget, Batches};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

fn cell(first_op: usize) -> Arch {
    Arch::from_choices(SpaceKind::Nb201, &[first_op, 0, 0, 0, 0, 0]).unwrap()
}

/// Proposes the batches it was given, in order (then repeats the last), and records what it learned from.
struct Scripted {
    batches: VecDeque<Vec<Arch>>,
    last: Vec<Arch>,
    steady: bool,
    observed: Vec<(Vec<String>, Vec<f64>)>,
}

impl Scripted {
    fn new(batches: Vec<Vec<Arch>>, steady: bool) -> Scripted {
        Scripted { batches: batches.into(), last: Vec::new(), steady, observed: Vec::new() }
    }
}

impl Searcher for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn propose(&mut self, _rng: &mut ChaCha8Rng) -> candle_core::Result<Vec<Arch>> {
        if let Some(b) = self.batches.pop_front() {
            self.last = b;
        }
        Ok(self.last.clone())
    }
    fn steady_state(&self) -> bool {
        self.steady
    }
    fn observe(&mut self, archs: &[Arch], rewards: &[f64], _rng: &mut ChaCha8Rng) -> candle_core::Result<()> {
        self.observed.push((archs.iter().map(Arch::to_arc_string).collect(), rewards.to_vec()));
        Ok(())
    }
}

fn reward(a: &Arch) -> f64 {
    match a {
        Arch::Nb201(c) => (c.ops[0] + 1) as f64 / 10.0,
        _ => unreachable!(),
    }
}

#[test]
fn repeats_are_free_and_the_batch_that_passes_the_budget_is_not_learned_from() {
    let (a, b, c, d) = (cell(0), cell(1), cell(2), cell(3));
    let mut s = Scripted::new(vec![vec![a.clone(), b.clone(), a.clone()], vec![c.clone(), d]], false);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut evaluated = Vec::new();
    let out = run_budget(&mut s, 3, 100, &mut rng, &mut |x: &Arch| -> anyhow::Result<f64> {
        evaluated.push(x.to_arc_string());
        Ok(reward(x))
    })
    .unwrap();
    // A repeat costs no evaluation and no budget; the fourth distinct cell is never evaluated.
    assert_eq!(evaluated, [&a, &b, &c].map(Arch::to_arc_string));
    assert_eq!(out.distinct.iter().map(|d| d.1).collect::<Vec<_>>(), [0.1, 0.2, 0.3]);
    assert_eq!(out.samples, 5, "every proposal counts as a sample, the one past the budget too");
    // The first batch is learned from whole, its repeat answered from the first evaluation; the cut batch not at all.
    assert_eq!(s.observed.len(), 1);
    assert_eq!(s.observed[0].0, [&a, &b, &a].map(Arch::to_arc_string));
    assert_eq!(s.observed[0].1, [0.1, 0.2, 0.1]);
}

#[test]
fn a_search_that_only_repeats_itself_ends_at_the_cap() {
    let mut s = Scripted::new(vec![vec![cell(4), cell(4)]], false);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = run_budget(&mut s, 10, 7, &mut rng, &mut |x: &Arch| -> anyhow::Result<f64> { Ok(reward(x)) }).unwrap();
    assert_eq!(out.distinct.len(), 1);
    // Proposals come a batch at a time, so the cap is passed by at most one batch.
    assert_eq!(out.samples, 8);
    assert_eq!(s.observed.len(), 4);
}

#[test]
fn in_steady_state_the_oldest_is_learned_from_alone_and_only_once_it_finished() {
    let (a, b, c) = (cell(0), cell(1), cell(2));
    let mut s = Scripted::new(vec![vec![a.clone()], vec![b.clone()], vec![c.clone()]], true);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut batches = Batches::new(&s, 10, 100, 2);
    // Two slots: two proposals, one at a time.
    let fresh = batches.propose(&mut s, &mut rng).unwrap();
    assert_eq!(fresh.iter().map(|f| (f.index, f.arch.to_arc_string())).collect::<Vec<_>>(), [(0, a.to_arc_string()), (1, b.to_arc_string())]);
    // The younger finished first: nothing is learned until the oldest has.
    assert!(!batches.learn(&mut s, |i| (i == 1).then_some(0.2), &mut rng).unwrap());
    assert!(s.observed.is_empty());
    assert!(batches.learn(&mut s, |i| [0.1, 0.2].get(i).copied(), &mut rng).unwrap());
    assert_eq!(s.observed, [(vec![a.to_arc_string()], vec![0.1])]);
    // One slot is free again: one more proposal, numbered next.
    let fresh = batches.propose(&mut s, &mut rng).unwrap();
    assert_eq!(fresh.iter().map(|f| f.index).collect::<Vec<_>>(), [2]);
    assert_eq!(batches.samples(), 3);
}
