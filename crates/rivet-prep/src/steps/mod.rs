//! The preprocessing steps, one file each, and the list that names them.
//!
//! A step is a spec type (what its author writes, with serde's field names) that implements
//! [`Transform`]: fitting it on a table gives its state, and the state applied to a table
//! transforms it. [`FittedStep`] holds a step together with its own state, so a state that
//! belongs to another step cannot be represented. Adding a step is a new file here and one
//! line in the `steps!` list below (see `docs/preprocessing.md`).

use std::fmt;
use std::sync::Arc;

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use crate::error::PrepError;

pub(crate) mod categories;
pub(crate) mod stats;
pub(crate) mod table;

/// Which rows a table holds, for messages: the row of the whole table (0-based, not counting
/// a header) its first row is, and, read from CSV, the line each row starts on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Position {
    pub(crate) first_row: usize,
    pub(crate) lines: Option<Arc<Vec<usize>>>,
}

/// Where a step runs: its place in the spec and the rows it sees, for messages.
#[derive(Debug, Clone)]
pub(crate) struct At {
    /// `steps[2] (impute)`.
    step: String,
    position: Position,
}

impl At {
    pub(crate) fn new(index: usize, op: &str, position: &Position) -> At {
        At::labelled(format!("steps[{index}] ({op})"), position)
    }

    pub(crate) fn labelled(label: String, position: &Position) -> At {
        At { step: label, position: position.clone() }
    }

    /// Row `i` of the table as a message names it: `row 1234 (0-based, CSV line 1236)`.
    pub(crate) fn row(&self, i: usize) -> String {
        let row = self.position.first_row + i;
        match self.position.lines.as_ref().and_then(|lines| lines.get(i)) {
            Some(line) => format!("row {row} (0-based, CSV line {line})"),
            None => format!("row {row} (0-based)"),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.step)
    }
}

/// Why a step's spec is refused; the caller names the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One kind of step: checked when read, fitted on a table, applied with what it learned.
pub(crate) trait Transform: Clone + fmt::Debug + PartialEq {
    /// What fitting learns (`()` for a step that learns nothing).
    type State: Clone + fmt::Debug + PartialEq;

    /// What the spec's types cannot say (an empty list, an inverted range); the message is
    /// prefixed with the step when reported.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }

    /// Learns the state from `df`, the table as the steps before this one left it.
    fn fit(&self, df: &DataFrame, at: &At) -> Result<Self::State, PrepError>;

    /// Transforms `df` in place with `state`.
    fn apply(&self, state: &Self::State, df: &mut DataFrame, at: &At) -> Result<(), PrepError>;

    /// The state as the fitted-pipeline file stores it.
    fn save(&self, state: &Self::State) -> Fitted;

    /// The state back from the file; `None` when `fitted` is not this step's (another kind,
    /// another column count).
    fn restore(&self, fitted: Fitted) -> Option<Self::State>;
}

/// A step with the state it learned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fit<T: Transform> {
    spec: T,
    state: T::State,
}

/// What fitting learned for one step, as the fitted-pipeline file stores it, with
/// scikit-learn's names for the statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    /// The step learns nothing (select, rename, drop, cast, log1p, clip, bucketize, datetime,
    /// derive).
    Stateless,
    /// `SimpleImputer.statistics_`, one per column.
    Impute {
        /// The fill value of each column.
        statistics: Vec<f64>,
    },
    /// `StandardScaler.mean_`, `var_`, `scale_`.
    StandardScale {
        /// Means.
        mean: Vec<f64>,
        /// Population variances.
        var: Vec<f64>,
        /// What each column is divided by (1 for near-constant columns).
        scale: Vec<f64>,
    },
    /// The sorted categories of each column (`OneHotEncoder.categories_`).
    Categories {
        /// Per column, its categories in order.
        categories: Vec<Vec<String>>,
    },
    /// `MinMaxScaler.data_min_`, `data_max_`, `scale_`, `min_`.
    MinMaxScale {
        /// Column minimums.
        data_min: Vec<f64>,
        /// Column maximums.
        data_max: Vec<f64>,
        /// Multipliers.
        scale: Vec<f64>,
        /// Offsets added after.
        min: Vec<f64>,
    },
}

impl Fitted {
    /// `Some(())` for [`Fitted::Stateless`]: the `restore` of a step that learns nothing.
    pub(crate) fn stateless(self) -> Option<()> {
        matches!(self, Fitted::Stateless).then_some(())
    }
}

/// Declares the steps: the public [`Step`] enum that a spec's `op` selects, and the fitted
/// form of each. Every `match` over steps is written here, once, without a catch-all.
macro_rules! steps {
    ($($(#[$doc:meta])* $op:literal => $variant:ident($module:ident::$ty:ident),)*) => {
        $(mod $module; pub use $module::$ty;)*

        /// One step of a spec, selected by its `op`. Columns are named; a step fails with the
        /// step's index and the column's name.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op")]
        pub enum Step {
            $($(#[$doc])* #[serde(rename = $op)] $variant($ty),)*
        }

        /// A step with its state.
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) enum FittedStep {
            $($variant(Fit<$ty>),)*
        }

        impl Step {
            /// The step's name as written in a spec (`op = "..."`).
            pub fn op(&self) -> &'static str {
                match self {
                    $(Step::$variant(_) => $op,)*
                }
            }

            pub(crate) fn check(&self) -> Result<(), Invalid> {
                match self {
                    $(Step::$variant(step) => step.check(),)*
                }
            }

            pub(crate) fn fit(&self, df: &DataFrame, at: &At) -> Result<FittedStep, PrepError> {
                Ok(match self {
                    $(Step::$variant(spec) => {
                        FittedStep::$variant(Fit { state: spec.fit(df, at)?, spec: spec.clone() })
                    })*
                })
            }

            pub(crate) fn restore(&self, fitted: Fitted) -> Option<FittedStep> {
                Some(match self {
                    $(Step::$variant(spec) => {
                        FittedStep::$variant(Fit { state: spec.restore(fitted)?, spec: spec.clone() })
                    })*
                })
            }
        }

        impl FittedStep {
            pub(crate) fn op(&self) -> &'static str {
                match self {
                    $(FittedStep::$variant(_) => $op,)*
                }
            }

            pub(crate) fn apply(&self, df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
                match self {
                    $(FittedStep::$variant(fit) => fit.spec.apply(&fit.state, df, at),)*
                }
            }

            pub(crate) fn spec(&self) -> Step {
                match self {
                    $(FittedStep::$variant(fit) => Step::$variant(fit.spec.clone()),)*
                }
            }

            pub(crate) fn save(&self) -> Fitted {
                match self {
                    $(FittedStep::$variant(fit) => fit.spec.save(&fit.state),)*
                }
            }
        }
    };
}

steps! {
    // In the order unknown-op messages list them.
    /// Keep only these columns, in this order.
    "select" => Select(select::Select),
    /// Rename columns, `old = "new"`.
    "rename" => Rename(rename::Rename),
    /// Remove these columns.
    "drop" => Drop(drop::DropColumns),
    /// Cast to 64-bit floats.
    "cast" => Cast(cast::Cast),
    /// Fill missing values with a fitted statistic or a constant (`SimpleImputer`).
    "impute" => Impute(impute::Impute),
    /// `(x - mean) / std` (`StandardScaler`).
    "standard_scale" => StandardScale(standard_scale::StandardScale),
    /// The fitted range onto a target range (`MinMaxScaler`).
    "min_max_scale" => MinMaxScale(min_max_scale::MinMaxScale),
    /// `ln(1 + x)`.
    "log1p" => Log1p(log1p::Log1p),
    /// One feature per category (`OneHotEncoder`).
    "one_hot" => OneHot(one_hot::OneHot),
    /// The category's index (`OrdinalEncoder`).
    "ordinal" => Ordinal(ordinal::Ordinal),
    /// The interval each value falls in (numpy's `digitize`).
    "bucketize" => Bucketize(bucketize::Bucketize),
    /// Parts of a timestamp as features.
    "datetime" => Datetime(datetime::Datetime),
    /// A column computed from others.
    "derive" => Derive(derive::Derive),
    /// Limit to `[min, max]`.
    "clip" => Clip(clip::Clip),
}

pub use categories::Unseen;
pub use datetime::DatetimePart;
pub use derive::Expression;
pub use impute::ImputeStrategy;
