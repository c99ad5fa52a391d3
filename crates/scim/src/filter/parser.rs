//! Hand-written lexer and precedence-climbing parser for RFC 7644 §3.4.2.2
//! filters.
//!
//! Hostile input flows through here, so: the work is linear in the input
//! length (every byte is scanned once, every token is consumed once),
//! recursion only happens for explicit nesting (`(`, `not (`, `[`) and is
//! capped at [`MAX_DEPTH`], and chains of `and`/`or` are built iteratively
//! into *balanced* trees so that a long chain never yields a deep AST (which
//! would overflow the stack when evaluated, rendered or dropped).

use super::ast::{AttrPath, CompValue, CompareOp, Filter};
use crate::error::ScimError;

/// Longest filter accepted, in bytes. A 1 MiB filter still parses in linear
/// time; the gateway is expected to cap request sizes well below this.
pub const MAX_FILTER_LEN: usize = 1024 * 1024;

/// Deepest explicit nesting of `(`, `not (` and value paths `[` accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Word(&'a str),
    Str(String),
    Num(serde_json::Number),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    End,
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{}'", truncate(w)),
            Tok::Str(_) => "a string".to_owned(),
            Tok::Num(n) => format!("the number {n}"),
            Tok::LParen => "'('".to_owned(),
            Tok::RParen => "')'".to_owned(),
            Tok::LBracket => "'['".to_owned(),
            Tok::RBracket => "']'".to_owned(),
            Tok::Dot => "'.'".to_owned(),
            Tok::End => "the end of the input".to_owned(),
        }
    }
}

/// Keeps error details short when the offending word is huge.
fn truncate(s: &str) -> &str {
    const MAX: usize = 40;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'$'
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'$')
}

fn is_number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
}

/// Which grammar the parser is reading; only changes error wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Filter,
    PatchPath,
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<(usize, Tok<'a>)>,
    mode: Mode,
    /// Tokens produced; lets tests assert the work is linear.
    pub(crate) tokens_lexed: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str, mode: Mode) -> Self {
        Parser {
            src,
            pos: 0,
            peeked: None,
            mode,
            tokens_lexed: 0,
        }
    }

    fn error(&self, at: usize, detail: impl std::fmt::Display) -> ScimError {
        match self.mode {
            Mode::Filter => {
                ScimError::invalid_filter(format!("invalid filter at byte {at}: {detail}"))
            }
            Mode::PatchPath => {
                ScimError::invalid_path(format!("invalid path at byte {at}: {detail}"))
            }
        }
    }

    fn expected(&self, at: usize, what: &str, found: &Tok<'_>) -> ScimError {
        self.error(at, format!("expected {what}, found {}", found.describe()))
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.src.as_bytes();
        while bytes.get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn lex(&mut self) -> Result<(usize, Tok<'a>), ScimError> {
        self.skip_whitespace();
        self.tokens_lexed += 1;
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let Some(&b) = bytes.get(start) else {
            return Ok((start, Tok::End));
        };
        let single = match b {
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b'.' => Some(Tok::Dot),
            _ => None,
        };
        if let Some(tok) = single {
            self.pos += 1;
            return Ok((start, tok));
        }
        if b == b'"' {
            return self.lex_string(start).map(|t| (start, t));
        }
        if b == b'-' || b.is_ascii_digit() {
            return self.lex_number(start).map(|t| (start, t));
        }
        if is_word_start(b) {
            let end = self.scan_while(start, is_word_byte);
            self.pos = end;
            return Ok((start, Tok::Word(&self.src[start..end])));
        }
        let ch = self.src[start..].chars().next().unwrap_or('?');
        Err(self.error(start, format!("unexpected character {ch:?}")))
    }

    fn scan_while(&self, from: usize, pred: fn(u8) -> bool) -> usize {
        let bytes = self.src.as_bytes();
        let mut end = from;
        while bytes.get(end).is_some_and(|&b| pred(b)) {
            end += 1;
        }
        end
    }

    fn lex_string(&mut self, start: usize) -> Result<Tok<'a>, ScimError> {
        let bytes = self.src.as_bytes();
        let mut i = start + 1;
        loop {
            match bytes.get(i) {
                None => return Err(self.error(start, "unterminated string")),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let raw = self.src.get(start..=i).unwrap_or_default();
        self.pos = i + 1;
        serde_json::from_str::<String>(raw)
            .map(Tok::Str)
            .map_err(|e| self.error(start, format!("invalid string ({e})")))
    }

    fn lex_number(&mut self, start: usize) -> Result<Tok<'a>, ScimError> {
        let end = self.scan_while(start + 1, is_number_byte);
        self.pos = end;
        let raw = &self.src[start..end];
        parse_json_number(raw)
            .map(Tok::Num)
            .ok_or_else(|| self.error(start, format!("invalid number '{}'", truncate(raw))))
    }

    fn peek(&mut self) -> Result<&(usize, Tok<'a>), ScimError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(self.error(self.pos, "internal lexer state")),
        }
    }

    fn next(&mut self) -> Result<(usize, Tok<'a>), ScimError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn peek_is_keyword(&mut self, keyword: &str) -> Result<bool, ScimError> {
        Ok(matches!(&self.peek()?.1, Tok::Word(w) if w.eq_ignore_ascii_case(keyword)))
    }

    fn expect(&mut self, want: Tok<'static>, what: &str) -> Result<(), ScimError> {
        let (at, tok) = self.next()?;
        if tok == want {
            Ok(())
        } else {
            Err(self.expected(at, what, &tok))
        }
    }

    fn check_depth(&self, at: usize, depth: usize) -> Result<(), ScimError> {
        if depth > MAX_DEPTH {
            return Err(self.error(at, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Parses a complete filter: the whole input must be consumed.
    pub(crate) fn parse_complete_filter(&mut self) -> Result<Filter, ScimError> {
        let f = self.parse_or(0, false)?;
        let (at, tok) = self.next()?;
        if tok != Tok::End {
            return Err(self.expected(at, "'and', 'or' or the end of the input", &tok));
        }
        Ok(f)
    }

    /// `or`-chain of `and`-chains: `and` binds tighter than `or`.
    fn parse_or(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, ScimError> {
        self.parse_chain("or", Filter::Or, Self::parse_and, depth, in_value_path)
    }

    fn parse_and(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, ScimError> {
        self.parse_chain("and", Filter::And, Self::parse_unary, depth, in_value_path)
    }

    /// Operands joined by `keyword`, combined as a balanced tree so that a
    /// long chain cannot nest deeply.
    fn parse_chain(
        &mut self,
        keyword: &str,
        combine: fn(Box<Filter>, Box<Filter>) -> Filter,
        operand: fn(&mut Self, usize, bool) -> Result<Filter, ScimError>,
        depth: usize,
        in_value_path: bool,
    ) -> Result<Filter, ScimError> {
        let first = operand(self, depth, in_value_path)?;
        let mut rest = Vec::new();
        while self.peek_is_keyword(keyword)? {
            self.next()?;
            rest.push(operand(self, depth, in_value_path)?);
        }
        Ok(balanced(first, rest, combine))
    }

    fn parse_unary(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, ScimError> {
        let (at, tok) = self.next()?;
        match tok {
            Tok::LParen => {
                self.check_depth(at, depth + 1)?;
                let inner = self.parse_or(depth + 1, in_value_path)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("not") && self.peek()?.1 == Tok::LParen => {
                self.next()?;
                self.check_depth(at, depth + 1)?;
                let inner = self.parse_or(depth + 1, in_value_path)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Tok::Word(w) => self.parse_attr_exp(at, w, depth, in_value_path),
            other => Err(self.expected(at, "an attribute path, '(' or 'not ('", &other)),
        }
    }

    fn parse_attr_exp(
        &mut self,
        at: usize,
        word: &'a str,
        depth: usize,
        in_value_path: bool,
    ) -> Result<Filter, ScimError> {
        let path = attr_path_from_word(word).map_err(|d| self.error(at, d))?;
        let (op_at, op_tok) = self.next()?;
        let hint = if word.eq_ignore_ascii_case("not") {
            " ('not' must be followed by '(')"
        } else {
            ""
        };
        if op_tok == Tok::LBracket {
            return self.parse_value_path(op_at, path, depth, in_value_path);
        }
        self.parse_operation(path, op_at, op_tok, hint)
    }

    /// The operator and value after an attribute path: `pr` or `op value`.
    fn parse_operation(
        &mut self,
        path: AttrPath,
        op_at: usize,
        op_tok: Tok<'a>,
        hint: &str,
    ) -> Result<Filter, ScimError> {
        let op_word = match op_tok {
            Tok::Word(w) => w,
            other => {
                let found = other.describe();
                return Err(self.error(
                    op_at,
                    format!("expected an operator (eq ne co sw ew gt ge lt le pr) or '[', found {found}{hint}"),
                ));
            }
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = compare_op(op_word) else {
            return Err(self.error(
                op_at,
                format!(
                    "expected an operator (eq ne co sw ew gt ge lt le pr), found '{}'{hint}",
                    truncate(op_word)
                ),
            ));
        };
        let value = self.parse_comp_value(op)?;
        Ok(Filter::Compare { path, op, value })
    }

    fn parse_value_path(
        &mut self,
        at: usize,
        attr: AttrPath,
        depth: usize,
        in_value_path: bool,
    ) -> Result<Filter, ScimError> {
        if in_value_path {
            return Err(self.error(at, "value paths cannot be nested"));
        }
        self.check_depth(at, depth + 1)?;
        let inner = self.parse_or(depth + 1, true)?;
        self.expect(Tok::RBracket, "']'")?;
        let filter = match self.parse_value_path_sub_attr()? {
            // `emails[type eq "work"].value eq "x"` (Entra ID's matching
            // query): some element matches the value filter and its
            // sub-attribute matches the comparison.
            Some(sub) => Filter::And(Box::new(inner), Box::new(sub)),
            None => inner,
        };
        Ok(Filter::ValuePath {
            attr,
            filter: Box::new(filter),
        })
    }

    /// An optional `.subAttr op value` after a value filter's `]`.
    fn parse_value_path_sub_attr(&mut self) -> Result<Option<Filter>, ScimError> {
        if self.peek()?.1 != Tok::Dot {
            return Ok(None);
        }
        self.next()?;
        let name = self.sub_attr_name()?;
        let path = AttrPath {
            schema: None,
            name: name.to_owned(),
            sub_attr: None,
        };
        let (op_at, op_tok) = self.next()?;
        self.parse_operation(path, op_at, op_tok, "").map(Some)
    }

    fn parse_comp_value(&mut self, op: CompareOp) -> Result<CompValue, ScimError> {
        let (at, tok) = self.next()?;
        let value = match tok {
            Tok::Str(s) => CompValue::String(s),
            Tok::Num(n) => CompValue::Number(n),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            other => {
                return Err(self.expected(
                    at,
                    "a value (string, number, true, false or null)",
                    &other,
                ));
            }
        };
        check_operand(op, &value).map_err(|d| self.error(at, d))?;
        Ok(value)
    }

    /// Parses a PATCH path: `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.
    pub(crate) fn parse_patch_path(
        &mut self,
    ) -> Result<(AttrPath, Option<Filter>, Option<String>), ScimError> {
        let (at, tok) = self.next()?;
        let Tok::Word(word) = tok else {
            return Err(self.expected(at, "an attribute path", &tok));
        };
        let attr = attr_path_from_word(word).map_err(|d| self.error(at, d))?;
        let (at, tok) = self.next()?;
        match tok {
            Tok::End => Ok((attr, None, None)),
            Tok::LBracket => {
                if attr.sub_attr.is_some() {
                    return Err(self.error(
                        at,
                        "a value filter must follow a multi-valued attribute, not a sub-attribute",
                    ));
                }
                self.check_depth(at, 1)?;
                let filter = self.parse_or(1, true)?;
                self.expect(Tok::RBracket, "']'")?;
                let sub_attr = self.parse_trailing_sub_attr()?;
                Ok((attr, Some(filter), sub_attr))
            }
            other => Err(self.expected(at, "'[' or the end of the path", &other)),
        }
    }

    /// The sub-attribute name after a `.`.
    fn sub_attr_name(&mut self) -> Result<&'a str, ScimError> {
        let (at, tok) = self.next()?;
        let Tok::Word(name) = tok else {
            return Err(self.expected(at, "a sub-attribute name", &tok));
        };
        if !is_attr_name(name) {
            return Err(self.error(
                at,
                format!("'{}' is not a valid sub-attribute name", truncate(name)),
            ));
        }
        Ok(name)
    }

    fn parse_trailing_sub_attr(&mut self) -> Result<Option<String>, ScimError> {
        let (at, tok) = self.next()?;
        match tok {
            Tok::End => Ok(None),
            Tok::Dot => {
                let name = self.sub_attr_name()?;
                let (end_at, end) = self.next()?;
                if end != Tok::End {
                    return Err(self.expected(end_at, "the end of the path", &end));
                }
                Ok(Some(name.to_owned()))
            }
            other => Err(self.expected(at, "'.' or the end of the path", &other)),
        }
    }

    /// Parses a bare attribute path (sortBy, attributes).
    pub(crate) fn parse_complete_attr_path(&mut self) -> Result<AttrPath, ScimError> {
        let (at, tok) = self.next()?;
        let Tok::Word(word) = tok else {
            return Err(self.expected(at, "an attribute path", &tok));
        };
        let path = attr_path_from_word(word).map_err(|d| self.error(at, d))?;
        let (end_at, end) = self.next()?;
        if end != Tok::End {
            return Err(self.expected(end_at, "the end of the attribute path", &end));
        }
        Ok(path)
    }
}

/// A JSON number. serde_json checks the grammar and handles integers;
/// fractions go through `str::parse::<f64>`, which is correctly rounded
/// (serde_json's fast path is not, so rendered floats would not round-trip).
fn parse_json_number(raw: &str) -> Option<serde_json::Number> {
    let n = serde_json::from_str::<serde_json::Number>(raw).ok()?;
    if n.is_i64() || n.is_u64() {
        return Some(n);
    }
    serde_json::Number::from_f64(raw.parse::<f64>().ok()?)
}

/// `co`, `sw`, `ew` only make sense on strings; ordering never on
/// booleans or null (RFC 7644 §3.4.2.2).
fn check_operand(op: CompareOp, value: &CompValue) -> Result<(), String> {
    let ok = match op {
        CompareOp::Eq | CompareOp::Ne => true,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => matches!(value, CompValue::String(_)),
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
            matches!(value, CompValue::String(_) | CompValue::Number(_))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("operator '{}' cannot compare with {}", op, value))
    }
}

fn compare_op(word: &str) -> Option<CompareOp> {
    const OPS: [(&str, CompareOp); 9] = [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("co", CompareOp::Co),
        ("sw", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("gt", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ];
    OPS.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, op)| *op)
}

/// `ATTRNAME = ALPHA *(nameChar)`; `$ref` is allowed because RFC 7643
/// defines it as a sub-attribute name.
pub(crate) fn is_attr_name(s: &str) -> bool {
    if s.eq_ignore_ascii_case("$ref") {
        return true;
    }
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Splits `[URN ":"] name ["." sub]`; the URN ends at the last ':'.
pub(crate) fn attr_path_from_word(word: &str) -> Result<AttrPath, String> {
    let (schema, rest) = match word.rsplit_once(':') {
        Some((urn, rest)) => (Some(urn), rest),
        None => (None, word),
    };
    // A URI always has a scheme and a ':'; without this, `id:n` would name
    // attribute `n` inside the top-level `id` (found by cargo fuzz).
    if let Some(urn) = schema
        && (!urn.contains(':') || urn.ends_with(':') || urn.starts_with(':'))
    {
        return Err(format!("'{}' is not a valid schema URN", truncate(urn)));
    }
    let (name, sub_attr) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if !is_attr_name(name) {
        return Err(format!(
            "'{}' is not a valid attribute name",
            truncate(name)
        ));
    }
    if let Some(sub) = sub_attr
        && !is_attr_name(sub)
    {
        return Err(format!(
            "'{}' is not a valid sub-attribute name",
            truncate(sub)
        ));
    }
    Ok(AttrPath {
        schema: schema.map(str::to_owned),
        name: name.to_owned(),
        sub_attr: sub_attr.map(str::to_owned),
    })
}

/// Combines operands pairwise, level by level, so a chain of `n` operands
/// becomes a tree of depth `⌈log2 n⌉` (no recursion, linear work).
pub(crate) fn balanced(
    first: Filter,
    rest: Vec<Filter>,
    combine: fn(Box<Filter>, Box<Filter>) -> Filter,
) -> Filter {
    let (mut head, mut tail) = (first, rest);
    while !tail.is_empty() {
        let mut next_tail = Vec::with_capacity(tail.len() / 2);
        let mut it = tail.into_iter();
        if let Some(right) = it.next() {
            head = combine(Box::new(head), Box::new(right));
        }
        while let Some(left) = it.next() {
            match it.next() {
                Some(right) => next_tail.push(combine(Box::new(left), Box::new(right))),
                None => next_tail.push(left),
            }
        }
        tail = next_tail;
    }
    head
}
