//! Decoding constrained to copy: every generated token must continue a contiguous run of one
//! of the given token sequences (the text to copy from), so the output exists verbatim in that
//! text by construction. A short answer picked this way cannot name what its source lacks.

use std::collections::HashSet;

/// Where the copy may go next: the positions, in each sequence, right after a run equal to
/// everything generated so far.
pub(crate) struct CopyState<'a> {
    sources: &'a [Vec<u32>],
    /// Where a copy may start: (sequence, index) of the tokens that begin a word.
    starts: Vec<(usize, usize)>,
    /// Per sequence and index: whether the token begins a word.
    word: Vec<Vec<bool>>,
    /// (sequence, index of the next token); `None` before the first token.
    at: Option<Vec<(usize, usize)>>,
}

impl<'a> CopyState<'a> {
    /// A copy of a run of `sources` that starts at a word (`word_start` tells the tokens that
    /// begin one; a sequence's first token always does).
    pub fn new(sources: &'a [Vec<u32>], word_start: impl Fn(u32) -> bool) -> Self {
        let word: Vec<Vec<bool>> =
            sources.iter().map(|seq| seq.iter().enumerate().map(|(i, &t)| i == 0 || word_start(t)).collect()).collect();
        let starts = word
            .iter()
            .enumerate()
            .flat_map(|(s, w)| w.iter().enumerate().filter(|(_, &b)| b).map(move |(i, _)| (s, i)))
            .collect();
        CopyState { sources, starts, word, at: None }
    }

    /// The tokens that keep the output a copy.
    pub fn allowed(&self) -> HashSet<u32> {
        let at = self.at.as_ref().unwrap_or(&self.starts);
        at.iter().filter_map(|&(s, i)| self.sources[s].get(i).copied()).collect()
    }

    /// Records `token` as generated.
    pub fn push(&mut self, token: u32) {
        let next: Vec<(usize, usize)> = match &self.at {
            None => {
                self.starts.iter().filter(|&&(s, i)| self.sources[s][i] == token).map(|&(s, i)| (s, i + 1)).collect()
            }
            Some(at) => {
                at.iter().filter(|&&(s, i)| self.sources[s].get(i) == Some(&token)).map(|&(s, i)| (s, i + 1)).collect()
            }
        };
        self.at = Some(next);
    }

    /// Whether the copy may end here: it has started and ends a word (the run's next token
    /// begins one, or the run is at its sequence's end).
    pub fn can_end(&self) -> bool {
        self.at.as_ref().is_some_and(|at| at.iter().any(|&(s, i)| self.word[s].get(i).copied().unwrap_or(true)))
    }
}

/// The logits with every one outside `allowed` at minus infinity.
pub(crate) fn mask(logits: &[f32], allowed: &HashSet<u32>) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; logits.len()];
    for &t in allowed {
        if let Some(&l) = logits.get(t as usize) {
            out[t as usize] = l;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_continuations_of_a_run_are_allowed() {
        let src = vec![vec![1, 2, 3, 2, 4], vec![7, 2, 5]];
        let mut c = CopyState::new(&src, |t| t != 3);
        assert_eq!(c.allowed(), [1, 2, 4, 5, 7].into_iter().collect());
        assert!(!c.can_end());
        c.push(2);
        assert_eq!(c.allowed(), [3, 4, 5].into_iter().collect());
        // After 2, the runs continue with 3 (inside a word), 4 or 5: it may end.
        assert!(c.can_end());
        c.push(4);
        assert!(c.allowed().is_empty());
        let logits = mask(&[0.5; 6], &[1, 3, 9].into_iter().collect());
        assert_eq!(logits.iter().filter(|l| l.is_finite()).count(), 2);
        assert_eq!((logits[1], logits[3]), (0.5, 0.5));
    }
}
