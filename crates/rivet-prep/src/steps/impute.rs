//! `impute`: fill missing values (scikit-learn's `SimpleImputer`).

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::stats::exact_sum;
use super::table::{map, present};
use super::{At, Fitted, Invalid, Transform};
use crate::error::PrepError;

/// How `impute` fills missing values (null or NaN), as scikit-learn's `SimpleImputer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImputeStrategy {
    /// The mean of the values present.
    Mean,
    /// The median of the values present (the mean of the two middle ones for an even count).
    Median,
    /// The most frequent value present (the smallest among ties).
    MostFrequent,
    /// The step's `value`.
    Constant,
}

/// Fill missing values (null or NaN) with a fitted statistic or a constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impute {
    /// The columns.
    pub columns: Vec<String>,
    /// How.
    pub strategy: ImputeStrategy,
    /// The fill value of `constant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl Transform for Impute {
    /// The fill value of each column (`SimpleImputer.statistics_`).
    type State = Vec<f64>;

    fn check(&self) -> Result<(), Invalid> {
        if (self.strategy == ImputeStrategy::Constant) != self.value.is_some() {
            return Err(Invalid("`value` goes with strategy \"constant\" and only with it".into()));
        }
        Ok(())
    }

    fn fit(&self, df: &DataFrame, at: &At) -> Result<Vec<f64>, PrepError> {
        let statistic: fn(&Float64Chunked) -> Option<f64> = match (self.strategy, self.value) {
            (ImputeStrategy::Constant, Some(value)) => return Ok(vec![value; self.columns.len()]),
            // `check` refuses a constant without a value.
            (ImputeStrategy::Constant, None) => return Ok(vec![f64::NAN; self.columns.len()]),
            (ImputeStrategy::Mean, _) => mean,
            (ImputeStrategy::Median, _) => |values: &Float64Chunked| values.median(),
            (ImputeStrategy::MostFrequent, _) => most_frequent,
        };
        Ok(present(df, &self.columns, at)?.iter().map(|values| statistic(values).unwrap_or(f64::NAN)).collect())
    }

    fn apply(&self, statistics: &Vec<f64>, df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        map(df, &self.columns, at, &|k, v| if v.is_nan() { statistics[k] } else { v })
    }

    fn save(&self, statistics: &Vec<f64>) -> Fitted {
        Fitted::Impute { statistics: statistics.clone() }
    }

    fn restore(&self, fitted: Fitted) -> Option<Vec<f64>> {
        let Fitted::Impute { statistics } = fitted else { return None };
        (statistics.len() == self.columns.len()).then_some(statistics)
    }
}

/// The mean, from an exact sum: the same however the rows are chunked.
fn mean(values: &Float64Chunked) -> Option<f64> {
    let values: Vec<f64> = values.into_no_null_iter().collect();
    (!values.is_empty()).then(|| exact_sum(values.iter().copied()) / values.len() as f64)
}

/// The most frequent value, the smallest among ties.
fn most_frequent(values: &Float64Chunked) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_no_null_iter().collect();
    sorted.sort_by(f64::total_cmp);
    let mut best: Option<(f64, usize)> = None;
    for run in sorted.chunk_by(|a, b| a == b) {
        // Ascending order: a later run replaces only with a strictly larger count.
        if best.is_none_or(|(_, n)| run.len() > n) {
            best = Some((run[0], run.len()));
        }
    }
    best.map(|(v, _)| v)
}
