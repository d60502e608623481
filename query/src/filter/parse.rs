//! The filter language: a tokenizer and a recursive-descent parser.
//!
//! ```text
//! expr       := and ("OR" and)*
//! and        := unary ("AND" unary)*
//! unary      := "NOT" unary | "(" expr ")" | comparison
//! comparison := FIELD ("=" | "!=") value | FIELD (">=" | "<=" | ">" | "<") number
//!             | FIELD ["NOT"] "IN" "[" [value ("," value)*] "]"
//! value      := "quoted" | 'quoted' | bare
//! ```
//! Keywords are case-insensitive. A bare word runs to whitespace or one of `()[],=!<>`; quote
//! values holding those, spaces, or a keyword (`title = "made in china"`); `\"`, `\'` and
//! `\\` escape inside quotes.

use super::{Condition, Expr};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
    Op(&'static str),
    /// A word and whether it was quoted (a quoted word is never a keyword, and always text).
    Word(String, bool),
}

fn tokenize(src: &str) -> std::result::Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenList,
                    ']' => Token::CloseList,
                    _ => Token::Comma,
                });
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let eq = chars.peek() == Some(&'=');
                let op = match (c, eq) {
                    ('=', _) => "=",
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => return Err("`!` must be followed by `=`".into()),
                };
                if eq && c != '=' {
                    chars.next();
                }
                out.push(Token::Op(op));
            }
            '"' | '\'' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unclosed {c} quote")),
                        Some('\\') => match chars.next() {
                            Some(e) => word.push(e),
                            None => return Err(format!("unclosed {c} quote")),
                        },
                        Some(q) if q == c => break,
                        Some(other) => word.push(other),
                    }
                }
                out.push(Token::Word(word, true));
            }
            _ => {
                let mut word = String::new();
                while let Some(&w) = chars.peek() {
                    if w.is_whitespace() || "()[],=!<>\"'".contains(w) {
                        break;
                    }
                    word.push(w);
                    chars.next();
                }
                out.push(Token::Word(word, false));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w, false)) if w.eq_ignore_ascii_case(kw))
    }

    fn keyword_at(&self, offset: usize, kw: &str) -> bool {
        matches!(self.tokens.get(self.at + offset), Some(Token::Word(w, false)) if w.eq_ignore_ascii_case(kw))
    }

    fn expr(&mut self) -> std::result::Result<Expr, String> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
    }

    fn and(&mut self) -> std::result::Result<Expr, String> {
        let mut parts = vec![self.unary()?];
        while self.keyword("and") {
            self.at += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }

    fn unary(&mut self) -> std::result::Result<Expr, String> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let e = self.expr()?;
            return match self.next() {
                Some(Token::Close) => Ok(e),
                _ => Err("a `(` is not closed".into()),
            };
        }
        self.comparison()
    }

    fn comparison(&mut self) -> std::result::Result<Expr, String> {
        let field = match self.next() {
            Some(Token::Word(w, _)) if !w.is_empty() => w,
            Some(t) => return Err(format!("expected a field name, found {}", show(&t))),
            None => return Err("expected a field name, found the end".into()),
        };
        let negated_in = self.keyword("not") && self.keyword_at(1, "in");
        if negated_in || self.keyword("in") {
            self.at += if negated_in { 2 } else { 1 };
            let list = self.list()?;
            let cond = Expr::Cond { field, cond: Condition::In(list) };
            return Ok(if negated_in { Expr::Not(Box::new(cond)) } else { cond });
        }
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            Some(t) => return Err(format!("expected an operator after {field:?}, found {}", show(&t))),
            None => return Err(format!("expected an operator after {field:?}")),
        };
        let (text, quoted) = match self.next() {
            Some(Token::Word(w, q)) => (w, q),
            Some(t) => return Err(format!("expected a value after {op}, found {}", show(&t))),
            None => return Err(format!("expected a value after {op}")),
        };
        let cond = match op {
            "=" | "!=" => Condition::Eq(value(&text, quoted)),
            _ => {
                let n: f64 = text.trim().parse().map_err(|_| format!("{op} needs a number, not {text:?}"))?;
                if !n.is_finite() {
                    return Err(format!("{op} needs a finite number"));
                }
                let (mut gte, mut lte, mut gt, mut lt) = (None, None, None, None);
                match op {
                    ">=" => gte = Some(n),
                    "<=" => lte = Some(n),
                    ">" => gt = Some(n),
                    _ => lt = Some(n),
                }
                Condition::Range { gte, lte, gt, lt }
            }
        };
        let e = Expr::Cond { field, cond };
        Ok(if op == "!=" { Expr::Not(Box::new(e)) } else { e })
    }

    fn list(&mut self) -> std::result::Result<Vec<serde_json::Value>, String> {
        if self.next() != Some(Token::OpenList) {
            return Err("write lists as [a, b]".into());
        }
        let mut out = Vec::new();
        if self.peek() == Some(&Token::CloseList) {
            self.at += 1;
            return Ok(out);
        }
        loop {
            match self.next() {
                Some(Token::Word(w, q)) => out.push(value(&w, q)),
                _ => return Err("write lists as [a, b]".into()),
            }
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::CloseList) => return Ok(out),
                _ => return Err("write lists as [a, b]".into()),
            }
        }
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::OpenList => "`[`".into(),
        Token::CloseList => "`]`".into(),
        Token::Comma => "`,`".into(),
        Token::Op(op) => format!("`{op}`"),
        Token::Word(w, _) => format!("{w:?}"),
    }
}

/// A quoted word is text; a bare one is a number, `true`, `false` or `null` when it reads as
/// one, else text.
fn value(text: &str, quoted: bool) -> serde_json::Value {
    if quoted {
        return serde_json::Value::String(text.to_string());
    }
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .filter(|v| !v.is_object() && !v.is_array())
        .unwrap_or_else(|| serde_json::Value::String(text.to_string()))
}

/// Parses one expression.
pub(super) fn parse(src: &str) -> Result<Expr> {
    let bad = |reason: String| Error::BadFilter { filter: src.to_string(), reason };
    let tokens = tokenize(src).map_err(bad)?;
    if tokens.is_empty() {
        return Err(bad("an empty filter".into()));
    }
    let mut p = Parser { tokens, at: 0 };
    let e = p.expr().map_err(bad)?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(bad(format!(
            "unexpected {} (join conditions with AND / OR; quote values holding spaces or operators)",
            show(t)
        ))),
    }
}
