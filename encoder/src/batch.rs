//! Cutting sequences into batches.

/// How the worker groups sequences into forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Sort by length (longest first) and fill each batch until its padded size
    /// (`count * longest`) would pass `budget` tokens or it holds `max_seqs` sequences; a
    /// sequence shorter than 3/4 of the batch's longest starts a new batch rather than pad.
    TokenBudget {
        /// Padded tokens per batch at most.
        budget: usize,
        /// Sequences per batch at most.
        max_seqs: usize,
    },
    /// Fixed-size batches in arrival order: the naive baseline the benchmark compares against.
    Fixed(usize),
}

impl Default for Batching {
    fn default() -> Self {
        // 1,024 padded tokens: 4 sequences of 256 or 64 queries of ~16 tokens. Measured on
        // SciFact with Sousuo's forward pass (docs/benchmarks.md, `bench encode --variants
        // fp32@4096,fp32@1024,...`): the activations of 1,024 tokens stay in a core's L2, so
        // fp32 ran 1.14x and int8 1.28x faster than with 4,096 (512 was no faster again).
        Batching::TokenBudget { budget: 1024, max_seqs: 64 }
    }
}

impl Batching {
    /// Larger batches for a GPU, which needs many tokens per launch to be busy.
    pub fn gpu() -> Self {
        Batching::TokenBudget { budget: 32_768, max_seqs: 512 }
    }
}

/// One forward pass: which inputs it holds and the length they are padded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    /// Indices of the batch's sequences in the input.
    pub members: Vec<usize>,
    /// The length every sequence is padded to (the longest).
    pub padded_len: usize,
}

impl PlannedBatch {
    /// Tokens the forward pass computes, padding included.
    pub fn padded_tokens(&self) -> usize {
        self.members.len() * self.padded_len
    }
}

/// Plans the forward passes for sequences of the given lengths. Every index appears in
/// exactly one batch; a sequence longer than the budget gets a batch of its own.
pub fn plan_batches(lengths: &[usize], batching: Batching) -> Vec<PlannedBatch> {
    match batching {
        Batching::Fixed(size) => {
            let size = size.max(1);
            (0..lengths.len())
                .collect::<Vec<_>>()
                .chunks(size)
                .map(|members| PlannedBatch {
                    padded_len: members.iter().map(|&i| lengths[i]).max().unwrap_or(0),
                    members: members.to_vec(),
                })
                .collect()
        }
        Batching::TokenBudget { budget, max_seqs } => {
            let mut order: Vec<usize> = (0..lengths.len()).collect();
            order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
            let mut batches: Vec<PlannedBatch> = Vec::new();
            for i in order {
                let fits = batches.last().is_some_and(|b| {
                    b.members.len() < max_seqs.max(1)
                        && (b.members.len() + 1) * b.padded_len <= budget
                        && lengths[i] * 4 >= b.padded_len * 3
                });
                match batches.last_mut() {
                    Some(b) if fits => b.members.push(i),
                    _ => batches.push(PlannedBatch { members: vec![i], padded_len: lengths[i] }),
                }
            }
            batches
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_partition(lengths: &[usize], plan: &[PlannedBatch]) {
        let mut seen: Vec<usize> = plan.iter().flat_map(|b| b.members.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in plan {
            assert_eq!(b.padded_len, b.members.iter().map(|&i| lengths[i]).max().unwrap());
        }
    }

    #[test]
    fn budget_batches_cover_everything_within_budget() {
        let lengths: Vec<usize> = (0..500).map(|i| (i * 37 % 256) + 1).collect();
        let plan = plan_batches(&lengths, Batching::TokenBudget { budget: 2048, max_seqs: 64 });
        check_partition(&lengths, &plan);
        for b in &plan {
            assert!(b.padded_tokens() <= 2048 || b.members.len() == 1);
            assert!(b.members.len() <= 64);
        }
    }

    #[test]
    fn budget_batching_pads_less_than_fixed_on_mixed_lengths() {
        let lengths: Vec<usize> = (0..256).map(|i| if i % 2 == 0 { 20 } else { 240 }).collect();
        let padded = |plan: Vec<PlannedBatch>| plan.iter().map(PlannedBatch::padded_tokens).sum::<usize>();
        let budget = padded(plan_batches(&lengths, Batching::default()));
        let fixed = padded(plan_batches(&lengths, Batching::Fixed(32)));
        assert_eq!(budget, lengths.iter().sum::<usize>(), "two lengths sort into padding-free batches");
        let spread: Vec<usize> = (0..300).map(|i| 10 + (i * 7919) % 246).collect();
        let real: usize = spread.iter().sum();
        let padded_spread = padded(plan_batches(&spread, Batching::default()));
        assert!(padded_spread * 100 <= real * 115, "padding {padded_spread} vs {real}");
        assert!(fixed > budget * 17 / 10, "fixed {fixed} vs budget {budget}");
    }

    #[test]
    fn oversized_sequences_get_their_own_batch() {
        let plan = plan_batches(&[300, 10, 10], Batching::TokenBudget { budget: 100, max_seqs: 8 });
        check_partition(&[300, 10, 10], &plan);
        assert_eq!(plan[0].members, vec![0]);
        assert_eq!(plan[1].members, vec![1, 2]);
    }

    #[test]
    fn fixed_batches_keep_order() {
        let plan = plan_batches(&[5, 1, 9, 2, 3], Batching::Fixed(2));
        assert_eq!(plan.iter().map(|b| b.members.clone()).collect::<Vec<_>>(), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(plan[1].padded_len, 9);
        assert!(plan_batches(&[], Batching::Fixed(2)).is_empty());
    }
}
