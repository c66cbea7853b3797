//! Latency statistics: nearest-rank percentiles (index = ceil(n·p/100) − 1 on the sorted
//! samples, as in upstream's `remote_latency` example), min, max, mean, and medians across runs.

use serde_json::{Value, json};

/// Summary of one set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// Nearest-rank percentile of `sorted` (ascending, non-empty): `sorted[ceil(n·p/100) − 1]`.
pub fn percentile(sorted: &[f64], p: u32) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let n = sorted.len() as u64;
    let rank = (n * u64::from(p)).div_ceil(100).max(1);
    sorted[(rank - 1).min(n - 1) as usize]
}

/// The median of `values` (mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

impl Summary {
    /// Summarises samples in milliseconds; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            n: sorted.len(),
            p50: percentile(&sorted, 50),
            p95: percentile(&sorted, 95),
            p99: percentile(&sorted, 99),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }

    /// Field-wise median over several runs' summaries (`n` is the total sample count).
    pub fn median_of(runs: &[Summary]) -> Option<Self> {
        if runs.is_empty() {
            return None;
        }
        let field = |f: fn(&Summary) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Some(Self {
            n: runs.iter().map(|s| s.n).sum(),
            p50: field(|s| s.p50),
            p95: field(|s| s.p95),
            p99: field(|s| s.p99),
            min: field(|s| s.min),
            max: field(|s| s.max),
            mean: field(|s| s.mean),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "n": self.n,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50), 100.0);
        assert_eq!(percentile(&samples, 95), 190.0);
        assert_eq!(percentile(&samples, 99), 198.0);
        assert_eq!(percentile(&[7.0], 99), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
