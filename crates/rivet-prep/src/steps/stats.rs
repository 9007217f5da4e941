//! Sums and moments that do not depend on the order the values come in, so a statistic is the
//! same however the rows were split into chunks (CSV batches, Parquet row groups).

/// The correctly rounded sum of `values`: Shewchuk's exact partials, as Python's `math.fsum`.
/// A non-finite value or an overflow gives the plain sum (an infinity or NaN).
pub(crate) fn exact_sum(values: impl IntoIterator<Item = f64> + Clone) -> f64 {
    // Non-overlapping partials whose exact sum is the sum so far, smallest first.
    let mut partials: Vec<f64> = Vec::new();
    for value in values.clone() {
        if !value.is_finite() {
            return values.into_iter().sum();
        }
        let mut x = value;
        let mut kept = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let high = x + y;
            let low = y - (high - x);
            if low != 0.0 {
                partials[kept] = low;
                kept += 1;
            }
            x = high;
        }
        if !x.is_finite() {
            return values.into_iter().sum();
        }
        partials.truncate(kept);
        partials.push(x);
    }
    round_partials(&partials)
}

/// The sum of exact partials (smallest first), rounded once, half to even.
fn round_partials(partials: &[f64]) -> f64 {
    let mut n = partials.len();
    let mut high = 0.0;
    let mut low = 0.0;
    while n > 0 {
        n -= 1;
        let x = high;
        let y = partials[n];
        high = x + y;
        low = y - (high - x);
        if low != 0.0 {
            break;
        }
    }
    // A result exactly halfway between two doubles rounds by the sign of what lies below.
    if n > 0 && ((low < 0.0 && partials[n - 1] < 0.0) || (low > 0.0 && partials[n - 1] > 0.0)) {
        let y = low * 2.0;
        let x = high + y;
        if y == x - high {
            high = x;
        }
    }
    high
}

/// Mean and population variance as scikit-learn's `StandardScaler` computes them (the mean,
/// then the squared deviations with the rounding correction `sum(d)^2 / n` taken off), with
/// every sum exact: independent of order, and as accurate as f64 allows on a large offset.
pub(crate) fn mean_and_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = exact_sum(values.iter().copied()) / n;
    let deviations = values.iter().map(|x| x - mean);
    let correction = exact_sum(deviations.clone());
    let squares = exact_sum(deviations.map(|d| d * d));
    (mean, ((squares - correction * correction / n) / n).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_and_independent_of_order() {
        assert_eq!(exact_sum([1e16, 1.0, -1e16]), 1.0);
        assert_eq!(exact_sum([0.1; 10]), 1.0);
        let values: Vec<f64> = (0..2000).map(|i| 1e12 + f64::from(i % 97) * 0.37 - 17.0).collect();
        let mut reversed = values.clone();
        reversed.reverse();
        assert_eq!(exact_sum(values.iter().copied()), exact_sum(reversed.iter().copied()));
        assert!(exact_sum([1.0, f64::INFINITY]).is_infinite());
        assert!(exact_sum([f64::MAX, f64::MAX]).is_infinite());
        assert_eq!(exact_sum(std::iter::empty::<f64>()), 0.0);
    }

    #[test]
    fn variance_on_an_offset_is_the_variance_without_it() {
        let (mean, var) = mean_and_variance(&[1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0, 1e9 + 4.0]);
        assert_eq!(mean, 1e9 + 2.5);
        assert_eq!(var, 1.25);
    }
}
