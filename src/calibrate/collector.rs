//! One matrix input's values, summarised as they stream past: the extremes (for `minmax`) and a
//! histogram of each sign's magnitudes (for `percentile`), whose bins widen by doubling as larger
//! values arrive, so a set of any size is read in one pass with fixed memory. ONNX Runtime's
//! quantisation tool collects the same way (`onnxruntime/quantization/calibrate.py`,
//! `HistogramCollector`), with a rebinning of its own.

use crate::graph::calibration::Range;
use crate::graph::CalibrationMethod;

/// Bins per sign. A percentile is read to within one bin: a range's top bin at most
/// `1 / BINS` of the largest magnitude seen (0.05 % of it).
const BINS: usize = 2048;

/// The running summary of one tensor's values.
#[derive(Debug, Clone)]
pub struct Collector {
    min: f32,
    max: f32,
    /// Values seen (non-finite ones are skipped: they have no place on an integer grid).
    count: u64,
    /// Magnitudes `v ≥ 0` in bins of `width`: bin `i` holds `[i·width, (i+1)·width)`.
    positive: Vec<u64>,
    /// Magnitudes of `v < 0`, the same bins.
    negative: Vec<u64>,
    width: f32,
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
            positive: vec![0; BINS],
            negative: vec![0; BINS],
            width: 0.0,
        }
    }
}

impl Collector {
    /// Adds a batch of values.
    pub fn add(&mut self, values: &[f32]) {
        let finite = || values.iter().copied().filter(|v| v.is_finite());
        let magnitude = finite().fold(0f32, |m, v| m.max(v.abs()));
        for v in finite() {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.cover(magnitude);
        let width = self.width;
        for v in finite() {
            // `cover` made every magnitude fall below BINS · width; the clamp only guards the
            // last bin against rounding.
            let bin = ((v.abs() / width) as usize).min(BINS - 1);
            match v < 0.0 {
                true => self.negative[bin] += 1,
                false => self.positive[bin] += 1,
            }
            self.count += 1;
        }
    }

    /// Widens the bins (doubling, merging pairs) until `magnitude` falls inside them.
    fn cover(&mut self, magnitude: f32) {
        if self.width == 0.0 {
            // First values: bins just wide enough, with a floor so an all-zero start still
            // leaves a usable width.
            self.width = (magnitude / BINS as f32).max(f32::MIN_POSITIVE * 1e6);
        }
        while magnitude >= self.width * BINS as f32 {
            for bins in [&mut self.positive, &mut self.negative] {
                for i in 0..BINS / 2 {
                    bins[i] = bins[2 * i] + bins[2 * i + 1];
                }
                bins[BINS / 2..].fill(0);
            }
            self.width *= 2.0;
        }
    }

    /// Values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The range `method` keeps: the extremes, or for `percentile` each tail cut where at most
    /// `100 − percentile` percent of all values lie beyond it (read to the upper edge of its
    /// bin, never past the extreme). `None` before any value.
    pub fn range(&self, method: CalibrationMethod, percentile: f64) -> Option<Range> {
        if self.count == 0 {
            return None;
        }
        match method {
            CalibrationMethod::MinMax => Some(Range {
                lo: self.min,
                hi: self.max,
            }),
            CalibrationMethod::Percentile => {
                // Each tail may clip this many values at most.
                let clipped = (self.count as f64 * (1.0 - percentile / 100.0)).floor() as u64;
                let hi = self.tail(&self.positive, clipped).min(self.max.max(0.0));
                let lo = -self.tail(&self.negative, clipped).min((-self.min).max(0.0));
                Some(Range { lo, hi })
            }
        }
    }

    /// The smallest bin edge above which at most `clipped` of the values in `bins` lie.
    fn tail(&self, bins: &[u64], clipped: u64) -> f32 {
        let mut above = 0u64;
        for (i, &n) in bins.iter().enumerate().rev() {
            if above + n > clipped {
                return (i + 1) as f32 * self.width;
            }
            above += n;
        }
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_keeps_the_extremes_and_percentile_clips_rare_outliers() {
        let mut c = Collector::default();
        // 100,000 values in [-1, 1), then two outliers.
        let values: Vec<f32> = (0..100_000).map(|i| (i as f32 / 50_000.0) - 1.0).collect();
        c.add(&values);
        c.add(&[40.0, -9.0, f32::NAN]);
        assert_eq!(c.count(), 100_002);
        let mm = c.range(CalibrationMethod::MinMax, 99.99).expect("values");
        assert_eq!((mm.lo, mm.hi), (-9.0, 40.0));
        // 99.99 % per tail clips up to 10 values: both outliers go, the bulk stays.
        let p = c
            .range(CalibrationMethod::Percentile, 99.99)
            .expect("values");
        assert!(p.hi >= 0.999 && p.hi < 1.05, "{p:?}");
        assert!(p.lo <= -0.999 && p.lo > -1.05, "{p:?}");
        // 100 % clips nothing: the extremes, to a bin's width.
        let all = c
            .range(CalibrationMethod::Percentile, 100.0)
            .expect("values");
        assert!(all.hi >= 40.0 && all.hi < 40.1 && all.lo == -9.0, "{all:?}");
    }

    #[test]
    fn bins_widen_as_larger_values_arrive_without_losing_counts() {
        let mut c = Collector::default();
        c.add(&[0.0, 0.0]);
        c.add(&[1.0; 10]);
        c.add(&[1000.0]);
        let total: u64 = c.positive.iter().sum::<u64>() + c.negative.iter().sum::<u64>();
        assert_eq!(total, 13);
        let p = c
            .range(CalibrationMethod::Percentile, 100.0)
            .expect("values");
        assert_eq!((p.lo, p.hi), (0.0, 1000.0));
        assert!(Collector::default()
            .range(CalibrationMethod::MinMax, 99.0)
            .is_none());
    }
}
