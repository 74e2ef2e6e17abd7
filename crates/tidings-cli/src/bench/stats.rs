//! Medians, quartiles and percentiles of what the rounds measured.

/// The value at quantile `q` (0 to 1) of `values`, by the nearest rank; 0 when empty.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    at(&sorted, q)
}

/// The value at quantile `q` of already sorted `values`.
pub(crate) fn at(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The median of `values`.
pub(crate) fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_taken_by_nearest_rank() {
        let values = [3.0, 1.0, 2.0, 5.0, 4.0];
        assert_eq!(median(&values), 3.0);
        assert_eq!(quantile(&values, 0.25), 2.0);
        assert_eq!(quantile(&values, 1.0), 5.0);
        assert_eq!(median(&[]), 0.0);
    }
}
