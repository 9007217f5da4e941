//! `derive`: a column computed from others.

use std::collections::HashMap;

use polars::prelude::DataFrame;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::table::{floats, replace};
use super::{At, Fitted, Transform};
use crate::error::PrepError;
use crate::expr::{Expr, ExpressionError};

/// A new column (or a replaced one) computed from others: numbers, column names (in
/// backticks when they hold other characters), `+ - * /`, unary minus and parentheses, in
/// f64. A missing input gives a missing result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derive {
    /// The column it writes.
    pub name: String,
    /// The arithmetic, for example `"income / (household + 1)"`.
    #[serde(serialize_with = "write_expr", deserialize_with = "read_expr")]
    pub expr: Expression,
}

/// The arithmetic of a [`Derive`] step, parsed once when the spec is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    text: String,
    parsed: Expr,
}

impl Expression {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for Expression {
    type Err = ExpressionError;

    /// Parses `text`; an error says what was wrong and at which character.
    fn from_str(text: &str) -> Result<Expression, ExpressionError> {
        Ok(Expression { text: text.to_owned(), parsed: Expr::parse(text)? })
    }
}

fn read_expr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Expression, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|e| serde::de::Error::custom(format!("expr: {e}")))
}

fn write_expr<S: Serializer>(expr: &Expression, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&expr.text)
}

impl Transform for Derive {
    type State = ();

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        let expr = &self.expr.parsed;
        let mut inputs = HashMap::new();
        for column in expr.columns() {
            let values: Vec<f64> = floats(df, column, at)?.into_no_null_iter().collect();
            inputs.insert(column, values);
        }
        let values = expr.eval(df.height(), &|c| inputs[c].clone());
        replace(df, &self.name, values)
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}
