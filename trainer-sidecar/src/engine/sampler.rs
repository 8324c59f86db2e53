//! Poisson sampling: every example joins a logical batch independently with probability q, so
//! batch sizes vary and can be zero. This is the sampling the accountants analyse; fixed-size
//! shuffled batches would not get the same guarantee.

use rand::Rng;

use super::NoiseSource;

/// Draws logical batches of example indices.
#[derive(Debug)]
pub struct PoissonSampler {
    examples: usize,
    rate: f64,
}

impl PoissonSampler {
    /// `examples` examples, each taken with probability `rate` in [0, 1].
    pub fn new(examples: usize, rate: f64) -> Self {
        Self {
            examples,
            rate: rate.clamp(0.0, 1.0),
        }
    }

    /// The sample rate q.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The expected batch size q·N.
    pub fn expected_batch_size(&self) -> f64 {
        self.rate * self.examples as f64
    }

    /// One logical batch, in increasing index order. Skips ahead by geometric gaps, so the cost
    /// is proportional to the batch, not the dataset.
    pub fn sample(&self, source: &mut NoiseSource) -> Vec<i64> {
        let rng = source.rng();
        if self.rate >= 1.0 {
            return (0..self.examples as i64).collect();
        }
        if self.rate <= 0.0 {
            return Vec::new();
        }
        let log_miss = (-self.rate).ln_1p();
        let mut out = Vec::with_capacity((self.expected_batch_size() * 1.2) as usize + 4);
        let mut i: f64 = -1.0;
        loop {
            // u in (0, 1]; gap ~ Geometric(q) failures before the next success.
            let u = 1.0 - rng.random::<f64>();
            let gap = (u.ln() / log_miss).floor();
            i += gap + 1.0;
            if i >= self.examples as f64 || i.is_nan() {
                return out;
            }
            out.push(i as i64);
        }
    }
}

/// Split a logical batch into physical batches of at most `max` examples. Clipping is per
/// example, so the split changes memory use, never the result.
pub fn physical_batches(indices: &[i64], max: usize) -> impl Iterator<Item = &[i64]> {
    indices.chunks(max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_follow_the_binomial() {
        let s = PoissonSampler::new(10_000, 0.01);
        let mut src = NoiseSource::for_tests(7);
        let sizes: Vec<usize> = (0..2000).map(|_| s.sample(&mut src).len()).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        let var = sizes
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / sizes.len() as f64;
        // Binomial(10000, 0.01): mean 100, variance 99; 2000 draws put the mean within ±0.7.
        assert!((mean - 100.0).abs() < 1.0, "mean {mean}");
        assert!((var - 99.0).abs() < 15.0, "variance {var}");
        // Every index is equally likely: the first and second halves get the same share.
        let mut halves = [0usize; 2];
        for _ in 0..500 {
            for i in s.sample(&mut src) {
                halves[usize::from(i >= 5000)] += 1;
            }
        }
        let ratio = halves[0] as f64 / halves[1] as f64;
        assert!((ratio - 1.0).abs() < 0.05, "{halves:?}");
    }

    #[test]
    fn empty_batches_happen_at_small_rates_and_indices_are_sorted_and_unique() {
        let s = PoissonSampler::new(50, 0.01);
        let mut src = NoiseSource::for_tests(1);
        let batches: Vec<Vec<i64>> = (0..200).map(|_| s.sample(&mut src)).collect();
        // P(empty) = 0.99^50 = 0.605.
        let empty = batches.iter().filter(|b| b.is_empty()).count();
        assert!((90..150).contains(&empty), "{empty} empty batches of 200");
        for b in &batches {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
            assert!(b.iter().all(|&i| (0..50).contains(&i)));
        }
        assert_eq!(
            PoissonSampler::new(5, 1.0).sample(&mut src),
            vec![0, 1, 2, 3, 4]
        );
        assert!(PoissonSampler::new(5, 0.0).sample(&mut src).is_empty());
    }
}
