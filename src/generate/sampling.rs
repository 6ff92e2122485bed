//! Choosing the next token from logits: greedy, or seeded sampling with temperature, top-k and
//! top-p applied in the order Hugging Face's logits processors apply them (temperature, top-k,
//! top-p). The draw uses our own SplitMix64, so a seed gives the same tokens on every runtime
//! and every run (up to logits that tie within the runtimes' tolerance).

use crate::random::SplitMix64;

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// The highest logit (the first on ties, as `torch.argmax`).
    Greedy,
    /// Draw from the softmax of `logits / temperature`, restricted to the `top_k` largest
    /// (0 = all) and to the smallest set whose probability reaches `top_p` (1.0 = all).
    Sample {
        temperature: f64,
        top_k: usize,
        top_p: f64,
    },
}

/// A strategy with its random stream.
pub struct Sampler {
    strategy: Strategy,
    rng: SplitMix64,
    /// Reused per call: candidate indices.
    order: Vec<usize>,
}

impl Sampler {
    /// A sampler; `seed` fixes the draws.
    pub fn new(strategy: Strategy, seed: u64) -> Self {
        Self {
            strategy,
            rng: SplitMix64::new(seed),
            order: Vec::new(),
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The next token for one row of logits.
    pub fn pick(&mut self, logits: &[f32]) -> usize {
        match self.strategy {
            Strategy::Greedy => argmax(logits),
            Strategy::Sample {
                temperature,
                top_k,
                top_p,
            } => {
                let u = self.uniform();
                sample(logits, temperature, top_k, top_p, u, &mut self.order)
            }
        }
    }

    /// The distribution [`pick`](Sampler::pick) draws from for one row of logits, dense over
    /// the row: temperature, top-k and top-p applied as `pick` applies them; greedy is all the
    /// mass on the first maximum. Speculative decoding compares the two models' through it.
    pub fn distribution(&mut self, logits: &[f32]) -> Vec<f64> {
        let mut dense = vec![0.0; logits.len()];
        match self.strategy {
            Strategy::Greedy => {
                if let Some(d) = dense.get_mut(argmax(logits)) {
                    *d = 1.0;
                }
            }
            Strategy::Sample {
                temperature,
                top_k,
                top_p,
            } => {
                let probs = restrict(logits, temperature, top_k, top_p, &mut self.order);
                for (p, &i) in probs.iter().zip(self.order.iter()) {
                    dense[i] = *p;
                }
            }
        }
        dense
    }

    /// A draw from the dense distribution `probs` (need not sum to 1; all zero: index 0).
    pub fn draw(&mut self, probs: &[f64]) -> usize {
        let total: f64 = probs.iter().sum();
        let u = self.uniform() * total;
        let mut acc = 0.0;
        let mut last = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                acc += p;
                last = i;
                if u < acc {
                    return i;
                }
            }
        }
        last
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The index of the largest value, the first on ties; NaN never wins.
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in xs.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

fn sample(
    logits: &[f32],
    temperature: f64,
    top_k: usize,
    top_p: f64,
    u: f64,
    order: &mut Vec<usize>,
) -> usize {
    let probs = restrict(logits, temperature, top_k, top_p, order);
    if order.is_empty() {
        return 0;
    }
    let mut acc = 0.0;
    for (p, &i) in probs.iter().zip(order.iter()) {
        acc += p;
        if u < acc {
            return i;
        }
    }
    order[order.len() - 1]
}

/// The candidates left after temperature, top-k and top-p, largest first, in `order`, and
/// their probabilities (normalised), in the same order.
fn restrict(
    logits: &[f32],
    temperature: f64,
    top_k: usize,
    top_p: f64,
    order: &mut Vec<usize>,
) -> Vec<f64> {
    order.clear();
    order.extend((0..logits.len()).filter(|&i| !logits[i].is_nan()));
    // Largest first; ties keep index order, so the result does not depend on the sort.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if order.is_empty() {
        return vec![];
    }
    if top_k > 0 && top_k < order.len() {
        // HF keeps every token tied with the k-th largest.
        let kth = logits[order[top_k - 1]];
        let keep = order.iter().take_while(|&&i| logits[i] >= kth).count();
        order.truncate(keep);
    }
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let max = f64::from(logits[order[0]]) / t;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| (f64::from(logits[i]) / t - max).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if top_p < 1.0 {
        // The smallest prefix whose mass reaches top_p (at least one token), as HF's TopP.
        let mut mass = 0.0;
        let mut keep = 0;
        for p in &probs {
            keep += 1;
            mass += p;
            if mass >= top_p {
                break;
            }
        }
        probs.truncate(keep);
        order.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    probs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.5, 2.0, 2.0, f32::NAN]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_cuts_the_tail() {
        let logits = [1.0f32, 3.0, 2.0, 0.0];
        let mut order = Vec::new();
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(sample(&logits, 1.0, 1, 1.0, u, &mut order), 1);
        }
        // softmax ≈ [0.087, 0.644, 0.237, 0.032]: top_p 0.7 keeps tokens 1 and 2.
        assert_eq!(sample(&logits, 1.0, 0, 0.7, 0.99, &mut order), 2);
        assert_eq!(sample(&logits, 1.0, 0, 0.7, 0.5, &mut order), 1);
    }

    #[test]
    fn seeded_draws_follow_the_distribution() {
        let logits = [0.0f32, (3.0f64).ln() as f32];
        let mut s = Sampler::new(
            Strategy::Sample {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
            },
            7,
        );
        let ones = (0..20_000).filter(|_| s.pick(&logits) == 1).count();
        // p(1) = 0.75: 15,000 expected, sd ≈ 61.
        assert!((14_700..15_300).contains(&ones), "{ones}");
    }
}
