//! The typed filter: what every evaluator (SQL, memory) works from, and
//! the checks that turn the untyped tree into it — known fields and
//! functions, operators each field takes, values of the field's type.

use super::syntax::{Comparator, Node, Operand};

/// A customer filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Filter {
    /// Every customer (the empty filter).
    #[default]
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare(Comparison),
    /// `FIELD:*`: the field has a value.
    Present(Field),
    /// `in_group("ID or CODE")`: a member of the group or of any of its
    /// active subgroups.
    InGroup(String),
}

/// `FIELD OP VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub field: Field,
    pub op: Op,
    pub value: Value,
}

/// A field of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Name,
    Company,
    Province,
    Phone,
    Email,
    OwnerId,
    SourceId,
    RelationshipId,
    /// The source, by code.
    Source,
    /// The relationship, by code.
    Relationship,
    /// A direct group membership.
    GroupIds,
    Revenue,
    ProfileCompletion,
    CreateTime,
    UpdateTime,
    LastContactTime,
    /// `attributes.KEY`.
    Attribute(String),
}

/// What values a field holds, and so which operators and values it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Compared case- and accent-insensitively; `*` suffix, `:` word.
    Text,
    /// Compared exactly (ids, codes, normalised phone, lower-cased email).
    Exact,
    /// Only `:` a member id.
    Members,
    Integer,
    Time,
}

/// Field names, in the order error messages list them.
const FIELDS: &[(&str, Field)] = &[
    ("name", Field::Name),
    ("company", Field::Company),
    ("province", Field::Province),
    ("phone", Field::Phone),
    ("email", Field::Email),
    ("owner_id", Field::OwnerId),
    ("source_id", Field::SourceId),
    ("relationship_id", Field::RelationshipId),
    ("source", Field::Source),
    ("relationship", Field::Relationship),
    ("group_ids", Field::GroupIds),
    ("revenue", Field::Revenue),
    ("profile_completion", Field::ProfileCompletion),
    ("create_time", Field::CreateTime),
    ("update_time", Field::UpdateTime),
    ("last_contact_time", Field::LastContactTime),
];

impl Field {
    /// The field a path names.
    fn named(path: &str) -> Option<Self> {
        if let Some(key) = path.strip_prefix("attributes.") {
            return (!key.is_empty()).then(|| Self::Attribute(key.to_owned()));
        }
        FIELDS
            .iter()
            .find(|(n, _)| *n == path)
            .map(|(_, f)| f.clone())
    }

    /// What values it holds.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Name | Self::Company | Self::Province | Self::Attribute(_) => Kind::Text,
            Self::Phone
            | Self::Email
            | Self::OwnerId
            | Self::SourceId
            | Self::RelationshipId
            | Self::Source
            | Self::Relationship => Kind::Exact,
            Self::GroupIds => Kind::Members,
            Self::Revenue | Self::ProfileCompletion => Kind::Integer,
            Self::CreateTime | Self::UpdateTime | Self::LastContactTime => Kind::Time,
        }
    }
}

/// An operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Has,
}

/// A comparison's value, of its field's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text compared whole (folded for text fields).
    Text(String),
    /// Text fields: `VALUE*`, a prefix.
    Prefix(String),
    Integer(i64),
    Time(Time),
}

/// A moment: fixed, or relative to when the filter is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    /// Microseconds since the epoch.
    At(i64),
    /// `ago("30d")`: the evaluation time minus this many microseconds.
    Ago(i64),
}

/// A mistake in a filter: the byte offset and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    pub at: usize,
    pub message: String,
}

fn mistake<T>(at: usize, message: impl Into<String>) -> Result<T, Mistake> {
    Err(Mistake {
        at,
        message: message.into(),
    })
}

/// Gives the untyped tree its meaning.
pub fn typed(node: &Node<'_>) -> Result<Filter, Mistake> {
    Ok(match node {
        Node::And(parts) => Filter::And(parts.iter().map(typed).collect::<Result<_, _>>()?),
        Node::Or(parts) => Filter::Or(parts.iter().map(typed).collect::<Result<_, _>>()?),
        Node::Not(inner) => Filter::Not(Box::new(typed(inner)?)),
        Node::Restriction { left, compared } => restriction(left, compared.as_ref())?,
    })
}

fn restriction(
    left: &Operand<'_>,
    compared: Option<&(Comparator, usize, Operand<'_>)>,
) -> Result<Filter, Mistake> {
    let path = match left {
        Operand::Call { name, args, at } => {
            return match (*name, compared) {
                ("in_group", None) => match args.as_slice() {
                    [(group, _)] if !group.is_empty() => Ok(Filter::InGroup(group.clone())),
                    _ => mistake(*at, "in_group takes one group id or code"),
                },
                ("in_group", Some((_, at, _))) => {
                    mistake(*at, "in_group(…) stands alone; it is not compared")
                }
                ("ago", _) => mistake(*at, "ago(…) is a value: compare a time field with it"),
                _ => mistake(
                    *at,
                    format!("unknown function `{name}`; functions are in_group, ago"),
                ),
            };
        }
        Operand::Quoted(text, at) => {
            return mistake(
                *at,
                format!(
                    "expected a field name, found the string \"{}\"",
                    short(text)
                ),
            );
        }
        Operand::Word(path, _) => *path,
    };
    if let Some(key) = path.strip_prefix("attributes.")
        && !crate::domain::customer::is_attribute_key(key)
    {
        return mistake(
            left.at() + "attributes.".len(),
            format!(
                "expected an attribute key (1–64 of a–z, 0–9 and _), found `{}`",
                short(key)
            ),
        );
    }
    let field = Field::named(path).ok_or_else(|| Mistake {
        at: left.at(),
        message: format!(
            "unknown field `{}`; fields are {}, attributes.KEY",
            short(path),
            FIELDS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    let Some((comparator, op_at, right)) = compared else {
        return mistake(
            left.at() + path.len(),
            format!(
                "expected a comparison after `{}` (=, !=, <, <=, >, >=, :)",
                short(path)
            ),
        );
    };
    if *comparator == Comparator::Has && matches!(right, Operand::Word("*", _)) {
        return Ok(Filter::Present(field));
    }
    let op = operator(&field, *comparator, path, *op_at)?;
    let value = value_of(&field, op, right)?;
    Ok(Filter::Compare(Comparison { field, op, value }))
}

fn operator(field: &Field, comparator: Comparator, path: &str, at: usize) -> Result<Op, Mistake> {
    let op = match comparator {
        Comparator::Eq => Op::Eq,
        Comparator::Ne => Op::Ne,
        Comparator::Lt => Op::Lt,
        Comparator::Le => Op::Le,
        Comparator::Gt => Op::Gt,
        Comparator::Ge => Op::Ge,
        Comparator::Has => Op::Has,
    };
    let (allowed, list): (&[Op], &str) = match field.kind() {
        Kind::Text => (&[Op::Eq, Op::Ne, Op::Has], "=, !=, :"),
        Kind::Exact => (&[Op::Eq, Op::Ne], "=, !="),
        Kind::Members => (&[Op::Has], ":"),
        Kind::Integer | Kind::Time => (
            &[Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge],
            "=, !=, <, <=, >, >=",
        ),
    };
    if allowed.contains(&op) {
        Ok(op)
    } else {
        mistake(
            at,
            format!("`{}` takes {list} (and :* for presence)", short(path)),
        )
    }
}

fn value_of(field: &Field, op: Op, right: &Operand<'_>) -> Result<Value, Mistake> {
    let at = right.at();
    match (field.kind(), right) {
        (
            Kind::Time,
            Operand::Call {
                name: "ago",
                args,
                at,
            },
        ) => match args.as_slice() {
            [(text, arg_at)] => {
                let duration = humantime::parse_duration(text).map_err(|_| Mistake {
                    at: *arg_at,
                    message: format!(
                        "expected a duration such as \"30d\" or \"12h\", found \"{}\"",
                        short(text)
                    ),
                })?;
                let micros = i64::try_from(duration.as_micros()).map_err(|_| Mistake {
                    at: *arg_at,
                    message: "the duration is too long".into(),
                })?;
                Ok(Value::Time(Time::Ago(micros)))
            }
            _ => mistake(*at, "ago takes one duration, such as ago(\"30d\")"),
        },
        (_, Operand::Call { name, at, .. }) => mistake(
            *at,
            format!(
                "`{name}(…)` is not a value here; values are strings, numbers or ago(…) for times"
            ),
        ),
        (kind, Operand::Word(text, _)) => literal(kind, op, text, at),
        (kind, Operand::Quoted(text, _)) => literal(kind, op, text, at),
    }
}

/// A value written as a word or a string, for a field of `kind`.
fn literal(kind: Kind, op: Op, text: &str, at: usize) -> Result<Value, Mistake> {
    match kind {
        Kind::Time => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Value::Time(Time::At(t.timestamp_micros())))
            .map_err(|_| Mistake {
                at,
                message: format!(
                    "expected a timestamp (RFC 3339, e.g. \"2026-01-31T00:00:00Z\") or ago(\"30d\"), found \"{}\"",
                    short(text)
                ),
            }),
        Kind::Integer => text.parse::<i64>().map(Value::Integer).map_err(|_| Mistake {
            at,
            message: format!("expected an integer, found \"{}\"", short(text)),
        }),
        Kind::Text => match text.strip_suffix('*') {
            Some(prefix) if op != Op::Has => Ok(Value::Prefix(prefix.to_owned())),
            _ => Ok(Value::Text(text.to_owned())),
        },
        Kind::Exact | Kind::Members => Ok(Value::Text(text.to_owned())),
    }
}

/// At most the first 64 characters of `text`, for messages.
fn short(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
