//! The filter text as written: AIP-160's grammar (the subset the contract
//! names), parsed with nom into an untyped tree that remembers where each
//! part starts, so the checks that give it meaning can say where a
//! mistake is.
//!
//! ```text
//! expression := sequence { "AND" sequence }
//! sequence   := factor { factor }              (whitespace-separated: AND)
//! factor     := term { "OR" term }             (OR binds tighter than AND)
//! term       := [ "NOT" | "-" ] simple
//! simple     := "(" expression ")" | restriction
//! restriction:= operand [ comparator operand ]
//! operand    := call | quoted | word
//! ```

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while, take_while1},
    character::complete::{char, multispace0, multispace1, none_of},
    combinator::{cut, eof, map, not, opt, peek, recognize, value},
    error::{ContextError, ErrorKind, ParseError},
    multi::{many0, separated_list0},
    sequence::{delimited, pair, preceded, terminated},
};

/// A comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Has,
}

/// One side of a restriction, with the byte offset it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand<'a> {
    /// A bare word: a field path on the left, a value on the right.
    Word(&'a str, usize),
    /// A quoted string, unescaped.
    Quoted(String, usize),
    /// `name(arg, …)`; the arguments are quoted strings or words.
    Call {
        name: &'a str,
        args: Vec<(String, usize)>,
        at: usize,
    },
}

impl Operand<'_> {
    /// Where it starts.
    pub fn at(&self) -> usize {
        match self {
            Self::Word(_, at) | Self::Quoted(_, at) | Self::Call { at, .. } => *at,
        }
    }
}

/// The untyped tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    And(Vec<Node<'a>>),
    Or(Vec<Node<'a>>),
    Not(Box<Node<'a>>),
    Restriction {
        left: Operand<'a>,
        compared: Option<(Comparator, usize, Operand<'a>)>,
    },
}

/// Where parsing stopped and what it expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset in the filter.
    pub at: usize,
    /// What would have been understood there.
    pub expected: &'static str,
}

/// nom's error while parsing: the rest of the input and what was expected.
#[derive(Debug)]
struct Failure<'a> {
    rest: &'a str,
    expected: &'static str,
    /// Made by nom, not by a rule that knows what it wanted.
    generic: bool,
}

impl<'a> ParseError<&'a str> for Failure<'a> {
    fn from_error_kind(rest: &'a str, _: ErrorKind) -> Self {
        Self {
            rest,
            expected: "a comparison, `(` or `NOT`",
            generic: true,
        }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        // The alternative that got further says more.
        if other.rest.len() < self.rest.len() {
            other
        } else {
            self
        }
    }
}

impl<'a> ContextError<&'a str> for Failure<'a> {
    fn add_context(rest: &'a str, expected: &'static str, other: Self) -> Self {
        // An error further on, or one that knows what it wanted, says
        // more than the context around it.
        if other.rest.len() < rest.len() || !other.generic {
            other
        } else {
            Self {
                rest,
                expected,
                generic: false,
            }
        }
    }
}

type Parsed<'a, T> = IResult<&'a str, T, Failure<'a>>;

/// Parses `text` (already checked for length and nesting) into a tree;
/// `None` for an empty filter.
pub fn parse(text: &str) -> Result<Option<Node<'_>>, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let whole = Whole(text);
    let mut parser = delimited(
        multispace0,
        |i| whole.expression(i),
        (
            multispace0,
            nom::error::context("the end of the filter, `AND`, `OR` or a comparison", eof),
        ),
    );
    match parser.parse(text) {
        Ok((_, node)) => Ok(Some(node)),
        Err(nom::Err::Error(f) | nom::Err::Failure(f)) => Err(SyntaxError {
            at: text.len() - f.rest.len(),
            expected: f.expected,
        }),
        Err(nom::Err::Incomplete(_)) => Err(SyntaxError {
            at: text.len(),
            expected: "more of the filter",
        }),
    }
}

/// The whole filter, to turn the rest of the input into offsets.
#[derive(Clone, Copy)]
struct Whole<'a>(&'a str);

impl<'a> Whole<'a> {
    fn at(self, rest: &'a str) -> usize {
        self.0.len() - rest.len()
    }

    fn expression(self, input: &'a str) -> Parsed<'a, Node<'a>> {
        let (input, first) = self.sequence(input)?;
        let (input, rest) = many0(preceded(
            (multispace1, keyword("AND")),
            cut(preceded(
                multispace1,
                nom::error::context("a comparison after `AND`", |i| self.sequence(i)),
            )),
        ))
        .parse(input)?;
        Ok((input, joined(first, rest, Node::And)))
    }

    fn sequence(self, input: &'a str) -> Parsed<'a, Node<'a>> {
        let (input, first) = self.factor(input)?;
        let (input, rest) = many0(preceded(
            (multispace1, not(keyword("AND")), not(keyword("OR"))),
            |i| self.factor(i),
        ))
        .parse(input)?;
        Ok((input, joined(first, rest, Node::And)))
    }

    fn factor(self, input: &'a str) -> Parsed<'a, Node<'a>> {
        let (input, first) = self.term(input)?;
        let (input, rest) = many0(preceded(
            (multispace1, keyword("OR")),
            cut(preceded(
                multispace1,
                nom::error::context("a comparison after `OR`", |i| self.term(i)),
            )),
        ))
        .parse(input)?;
        Ok((input, joined(first, rest, Node::Or)))
    }

    fn term(self, input: &'a str) -> Parsed<'a, Node<'a>> {
        let negation = alt((
            value((), terminated(keyword("NOT"), multispace1)),
            value((), terminated(char('-'), peek(none_of(" \t\r\n")))),
        ));
        let (input, negated) = opt(negation).parse(input)?;
        let (input, simple) = match negated {
            Some(()) => cut(|i| self.simple(i)).parse(input)?,
            None => self.simple(input)?,
        };
        Ok((
            input,
            match negated {
                Some(()) => Node::Not(Box::new(simple)),
                None => simple,
            },
        ))
    }

    fn simple(self, input: &'a str) -> Parsed<'a, Node<'a>> {
        alt((
            delimited(
                terminated(char('('), multispace0),
                cut(|i| self.expression(i)),
                cut(preceded(multispace0, nom::error::context("`)`", char(')')))),
            ),
            |i| self.restriction(i),
        ))
        .parse(input)
    }

    fn restriction(self, input: &'a str) -> Parsed<'a, Node<'a>> {
        let (input, left) = self.operand(input, word_on_the_left)?;
        let (input, compared) = opt(|i| {
            let (i, _) = multispace0(i)?;
            let at = self.at(i);
            let (i, comparator) = comparator(i)?;
            let (i, _) = multispace0(i)?;
            let (i, right) = cut(nom::error::context("a value", |i| {
                self.operand(i, word_on_the_right)
            }))
            .parse(i)?;
            Ok((i, (comparator, at, right)))
        })
        .parse(input)?;
        Ok((input, Node::Restriction { left, compared }))
    }

    fn operand(
        self,
        input: &'a str,
        word: fn(&'a str) -> Parsed<'a, &'a str>,
    ) -> Parsed<'a, Operand<'a>> {
        let at = self.at(input);
        alt((
            map(
                pair(
                    identifier,
                    delimited(
                        terminated(char('('), multispace0),
                        cut(separated_list0(
                            (multispace0, char(','), multispace0),
                            |i| {
                                let at = self.at(i);
                                map(
                                    alt((quoted, map(word_on_the_right, str::to_owned))),
                                    move |arg| (arg, at),
                                )
                                .parse(i)
                            },
                        )),
                        cut(preceded(
                            multispace0,
                            nom::error::context("`)` closing the arguments", char(')')),
                        )),
                    ),
                ),
                move |(name, args)| Operand::Call { name, args, at },
            ),
            map(quoted, move |text| Operand::Quoted(text, at)),
            map(word, move |text| Operand::Word(text, at)),
        ))
        .parse(input)
    }
}

fn joined<'a>(
    first: Node<'a>,
    rest: Vec<Node<'a>>,
    join: fn(Vec<Node<'a>>) -> Node<'a>,
) -> Node<'a> {
    if rest.is_empty() {
        first
    } else {
        join(std::iter::once(first).chain(rest).collect())
    }
}

/// `word` as a keyword: followed by whitespace or `(`.
fn keyword<'a>(word: &'static str) -> impl Parser<&'a str, Output = &'a str, Error = Failure<'a>> {
    terminated(tag(word), peek(alt((multispace1, tag("("), eof))))
}

fn identifier(input: &str) -> Parsed<'_, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(input)
}

/// A field path: letters, digits, `_` and `.` (`attributes.tier`).
fn word_on_the_left(input: &str) -> Parsed<'_, &str> {
    let (rest, word) = take_while1(|c: char| c.is_alphanumeric() || c == '_' || c == '.')(input)?;
    if ["AND", "OR", "NOT"].contains(&word) {
        return Err(nom::Err::Error(Failure::from_error_kind(
            input,
            ErrorKind::Tag,
        )));
    }
    Ok((rest, word))
}

/// A bare value: everything up to whitespace or a parenthesis
/// (`2026-01-01T00:00:00Z`, `50000`, `nguy*`, `*`).
fn word_on_the_right(input: &str) -> Parsed<'_, &str> {
    take_while1(|c: char| !c.is_whitespace() && !"()\"',".contains(c))(input)
}

/// A string in double or single quotes; `\` escapes the next character.
fn quoted(input: &str) -> Parsed<'_, String> {
    let (rest, quote) = alt((char('"'), char('\''))).parse(input)?;
    let mut text = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => text.push(escaped),
                None => break,
            },
            c if c == quote => return Ok((&rest[i + c.len_utf8()..], text)),
            c => text.push(c),
        }
    }
    Err(nom::Err::Failure(Failure {
        rest: input,
        expected: "a closing quote for the string starting",
        generic: false,
    }))
}

fn comparator(input: &str) -> Parsed<'_, Comparator> {
    alt((
        value(Comparator::Le, tag("<=")),
        value(Comparator::Ge, tag(">=")),
        value(Comparator::Ne, tag("!=")),
        value(Comparator::Lt, tag("<")),
        value(Comparator::Gt, tag(">")),
        value(Comparator::Eq, tag("=")),
        value(Comparator::Has, tag(":")),
    ))
    .parse(input)
}
