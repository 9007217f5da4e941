//! The arithmetic of `derive` steps: numbers, columns, `+ - * /`, unary minus, parentheses.
//!
//! Precedence as usual (`*` and `/` before `+` and `-`, all left-associative); evaluated in f64
//! column by column, so a missing (NaN) input gives a missing result and `x / 0` gives an
//! infinity that `transform` reports unless a later step clips it.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A number.
    Number(f64),
    /// A column's values.
    Column(String),
    /// `-x`.
    Negate(Box<Expr>),
    /// `a op b`.
    Binary(char, Box<Expr>, Box<Expr>),
}

/// Why an expression does not parse: what was wrong and, where it applies, at which character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionError {
    what: String,
    /// The 1-based character position, and the expression.
    at: Option<(usize, String)>,
}

impl std::fmt::Display for ExpressionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some((at, text)) => write!(f, "{} at character {at} of \"{text}\"", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for ExpressionError {}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.text[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.text[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.text[self.pos..].chars().next()
    }

    fn error(&self, what: &str) -> ExpressionError {
        ExpressionError { what: what.to_owned(), at: Some((self.pos + 1, self.text.to_owned())) }
    }

    fn sum(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.pos += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ExpressionError> {
        match self.peek() {
            Some('-') => {
                self.pos += 1;
                Ok(Expr::Negate(Box::new(self.unary()?)))
            }
            Some('+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Expr, ExpressionError> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let inner = self.sum()?;
                if self.peek() != Some(')') {
                    return Err(self.error("expected `)`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some('`') => {
                let start = self.pos + 1;
                let end = self.text[start..].find('`').ok_or_else(|| self.error("unclosed `"))?;
                self.pos = start + end + 1;
                match &self.text[start..start + end] {
                    "" => Err(self.error("empty column name")),
                    name => Ok(Expr::Column(name.to_owned())),
                }
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let rest = &self.text[self.pos..];
                let mut end = 0;
                let bytes = rest.as_bytes();
                while end < bytes.len() {
                    let b = bytes[end];
                    let exponent_sign =
                        (b == b'+' || b == b'-') && end > 0 && matches!(bytes[end - 1], b'e' | b'E');
                    if b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || exponent_sign {
                        end += 1;
                    } else {
                        break;
                    }
                }
                let number = rest[..end]
                    .parse::<f64>()
                    .map_err(|_| self.error(&format!("bad number `{}`", &rest[..end])))?;
                self.pos += end;
                Ok(Expr::Number(number))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let rest = &self.text[self.pos..];
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
                self.pos += end;
                Ok(Expr::Column(rest[..end].to_owned()))
            }
            Some(c) => Err(self.error(&format!("unexpected `{c}`"))),
            None if self.text.trim().is_empty() => {
                Err(ExpressionError { what: "the expression is empty".into(), at: None })
            }
            None => Err(self.error("unexpected end")),
        }
    }
}

impl Expr {
    /// Parses `text`; an error says what was wrong and at which character.
    pub(crate) fn parse(text: &str) -> Result<Expr, ExpressionError> {
        let mut parser = Parser { text, pos: 0 };
        let expr = parser.sum()?;
        match parser.peek() {
            None => Ok(expr),
            Some(c) => Err(parser.error(&format!("unexpected `{c}`"))),
        }
    }

    /// The columns it reads, each once, in order of appearance.
    pub(crate) fn columns(&self) -> Vec<&str> {
        fn walk<'e>(e: &'e Expr, out: &mut Vec<&'e str>) {
            match e {
                Expr::Number(_) => {}
                Expr::Column(name) => {
                    if !out.contains(&name.as_str()) {
                        out.push(name);
                    }
                }
                Expr::Negate(x) => walk(x, out),
                Expr::Binary(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Evaluates over `rows` rows; `column` gives a column's values by name (checked before).
    pub(crate) fn eval(&self, rows: usize, column: &dyn Fn(&str) -> Vec<f64>) -> Vec<f64> {
        match self {
            Expr::Number(v) => vec![*v; rows],
            Expr::Column(name) => column(name),
            Expr::Negate(x) => x.eval(rows, column).into_iter().map(|v| -v).collect(),
            Expr::Binary(op, a, b) => {
                let (a, b) = (a.eval(rows, column), b.eval(rows, column));
                let f = match op {
                    '+' => |x: f64, y: f64| x + y,
                    '-' => |x: f64, y: f64| x - y,
                    '*' => |x: f64, y: f64| x * y,
                    _ => |x: f64, y: f64| x / y,
                };
                a.into_iter().zip(b).map(|(x, y)| f(x, y)).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> f64 {
        let expr = Expr::parse(text).unwrap();
        expr.eval(1, &|name| vec![if name == "a" { 2.0 } else { 10.0 }])[0]
    }

    #[test]
    fn precedence_associativity_and_columns() {
        assert_eq!(eval("1 + 2 * 3"), 7.0);
        assert_eq!(eval("(1 + 2) * 3"), 9.0);
        assert_eq!(eval("8 - 2 - 1"), 5.0);
        assert_eq!(eval("8 / 2 / 2"), 2.0);
        assert_eq!(eval("-a * -b"), 20.0);
        assert_eq!(eval("a / (b + 1e1)"), 0.1);
        assert_eq!(eval("`a` - 2.5e-1"), 1.75);
        assert_eq!(Expr::parse("x + `odd name` * x").unwrap().columns(), vec!["x", "odd name"]);
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(Expr::parse("").unwrap_err().to_string(), "the expression is empty");
        assert_eq!(Expr::parse("a +").unwrap_err().to_string(), "unexpected end at character 4 of \"a +\"");
        assert_eq!(
            Expr::parse("(a + b").unwrap_err().to_string(),
            "expected `)` at character 7 of \"(a + b\""
        );
        assert_eq!(
            Expr::parse("a % b").unwrap_err().to_string(),
            "unexpected `%` at character 3 of \"a % b\""
        );
        assert_eq!(
            Expr::parse("1.2.3").unwrap_err().to_string(),
            "bad number `1.2.3` at character 1 of \"1.2.3\""
        );
        assert_eq!(Expr::parse("a b").unwrap_err().to_string(), "unexpected `b` at character 3 of \"a b\"");
        assert_eq!(Expr::parse("`a").unwrap_err().to_string(), "unclosed ` at character 1 of \"`a\"");
    }
}
