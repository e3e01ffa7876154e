use super::*;
use crate::error::AppError;

fn cmp(field: Field, op: Op, value: Value) -> Filter {
    Filter::Compare(Comparison { field, op, value })
}

fn text(field: Field, value: &str) -> Filter {
    cmp(field, Op::Eq, Value::Text(value.into()))
}

/// The message of the `filter` violation `text` makes.
fn error_of(text: &str) -> String {
    match parse(text) {
        Err(AppError::InvalidArgument(violations)) => {
            assert_eq!(violations.len(), 1, "{violations:?}");
            assert_eq!(violations[0].field, "filter");
            violations[0].description.clone()
        }
        other => panic!("expected INVALID_ARGUMENT for {text:?}, got {other:?}"),
    }
}

#[test]
fn the_empty_filter_selects_everyone() {
    assert_eq!(parse("").unwrap(), Filter::All);
    assert_eq!(parse("   ").unwrap(), Filter::All);
}

#[test]
fn or_binds_tighter_than_and_and_whitespace_is_and() {
    let a = || text(Field::Province, "HN");
    let b = || text(Field::Province, "DN");
    let c = || text(Field::Relationship, "HOT");
    assert_eq!(
        parse("province = HN AND province = DN OR relationship = HOT").unwrap(),
        Filter::And(vec![a(), Filter::Or(vec![b(), c()])])
    );
    assert_eq!(
        parse("province = HN OR province = DN relationship = HOT").unwrap(),
        Filter::And(vec![Filter::Or(vec![a(), b()]), c()])
    );
    assert_eq!(
        parse("(province = HN OR province = DN) AND relationship=HOT").unwrap(),
        Filter::And(vec![Filter::Or(vec![a(), b()]), c()])
    );
}

#[test]
fn negation_is_not_or_a_leading_minus() {
    let hot = text(Field::Relationship, "HOT");
    assert_eq!(
        parse("NOT relationship = HOT").unwrap(),
        Filter::Not(Box::new(hot.clone()))
    );
    assert_eq!(
        parse("-relationship = HOT").unwrap(),
        Filter::Not(Box::new(hot))
    );
    assert_eq!(
        parse("NOT last_contact_time:*").unwrap(),
        Filter::Not(Box::new(Filter::Present(Field::LastContactTime)))
    );
    // A minus on the right is a negative number, not a negation.
    assert_eq!(
        parse("revenue > -5").unwrap(),
        cmp(Field::Revenue, Op::Gt, Value::Integer(-5))
    );
}

#[test]
fn every_field_and_operator_reads_its_value() {
    assert_eq!(
        parse(r#"name = "Nguyễn Văn An""#).unwrap(),
        text(Field::Name, "Nguyễn Văn An")
    );
    assert_eq!(
        parse("name = Nguy*").unwrap(),
        cmp(Field::Name, Op::Eq, Value::Prefix("Nguy".into()))
    );
    assert_eq!(
        parse("company:'Đà Nẵng'").unwrap(),
        cmp(Field::Company, Op::Has, Value::Text("Đà Nẵng".into()))
    );
    assert_eq!(
        parse("attributes.tier != gold").unwrap(),
        cmp(
            Field::Attribute("tier".into()),
            Op::Ne,
            Value::Text("gold".into())
        )
    );
    assert_eq!(
        parse(r#"group_ids:"0190a0b0-0000-7000-8000-000000000001""#).unwrap(),
        cmp(
            Field::GroupIds,
            Op::Has,
            Value::Text("0190a0b0-0000-7000-8000-000000000001".into())
        )
    );
    for (op, written) in [
        (Op::Eq, "="),
        (Op::Ne, "!="),
        (Op::Lt, "<"),
        (Op::Le, "<="),
        (Op::Gt, ">"),
        (Op::Ge, ">="),
    ] {
        assert_eq!(
            parse(&format!("profile_completion {written} 80")).unwrap(),
            cmp(Field::ProfileCompletion, op, Value::Integer(80))
        );
    }
    assert_eq!(
        parse(r#"create_time >= "2026-01-31T00:00:00Z""#).unwrap(),
        cmp(
            Field::CreateTime,
            Op::Ge,
            Value::Time(Time::At(1_769_817_600_000_000))
        )
    );
    assert_eq!(
        parse(r#"last_contact_time < ago("30d")"#).unwrap(),
        cmp(
            Field::LastContactTime,
            Op::Lt,
            Value::Time(Time::Ago(30 * 86_400 * 1_000_000))
        )
    );
    assert_eq!(
        parse(r#"in_group("VIP")"#).unwrap(),
        Filter::InGroup("VIP".into())
    );
    assert_eq!(parse("email:*").unwrap(), Filter::Present(Field::Email));
}

#[test]
fn values_are_data_whatever_they_hold() {
    let sneaky = r#"x' OR '1'='1"#;
    assert_eq!(
        parse(&format!("name = \"{sneaky}\"")).unwrap(),
        text(Field::Name, sneaky)
    );
    assert_eq!(
        parse(r#"name = "say \"hi\"""#).unwrap(),
        text(Field::Name, "say \"hi\"")
    );
}

#[test]
fn mistakes_name_their_character_offset_and_what_was_expected() {
    let unknown = error_of("revenu > 5");
    assert!(
        unknown.starts_with("unknown field `revenu`; fields are name,"),
        "{unknown}"
    );
    assert!(unknown.ends_with(" at 0"), "{unknown}");
    // Offsets count characters, not bytes.
    let after_vietnamese = error_of(r#"name = "Đà Nẵng" AND create_time > yesterday"#);
    assert!(
        after_vietnamese.starts_with("expected a timestamp"),
        "{after_vietnamese}"
    );
    assert!(after_vietnamese.ends_with(" at 35"), "{after_vietnamese}");
    assert!(error_of("revenue > lots").starts_with("expected an integer"));
    assert!(error_of("revenue : 5").starts_with("`revenue` takes =, !=, <"));
    assert!(error_of("group_ids = x").starts_with("`group_ids` takes :"));
    assert!(error_of("name").starts_with("expected a comparison after `name`"));
    assert!(error_of("frobnicate(\"x\")").starts_with("unknown function `frobnicate`"));
    assert!(error_of(r#"create_time > ago("soon")"#).starts_with("expected a duration"));
    for (text, message) in [
        ("(name = a", "expected `)` at 9"),
        ("name = a AND", "expected a comparison, `(` or `NOT` at 12"),
        ("name = a OR", "expected a comparison, `(` or `NOT` at 11"),
        ("= 5", "expected a comparison, `(` or `NOT` at 0"),
        ("name = ", "expected a value at 7"),
        (
            "name = \"open",
            "expected a closing quote for the string starting at 7",
        ),
        (
            "name = a )",
            "expected the end of the filter, `AND`, `OR` or a comparison at 9",
        ),
    ] {
        assert_eq!(error_of(text), message, "{text:?}");
    }
}

#[test]
fn limits_are_refused_before_parsing() {
    let long = format!("name = \"{}\"", "a".repeat(MAX_LENGTH));
    assert!(error_of(&long).contains("at most 2000"));
    let deep = format!("{}name = a{}", "(".repeat(9), ")".repeat(9));
    assert!(error_of(&deep).starts_with("nesting is deeper than 8 levels at 8"));
    let fine = format!("{}name = a{}", "(".repeat(8), ")".repeat(8));
    assert!(parse(&fine).is_ok());
    let many = vec!["revenue > 1"; MAX_COMPARISONS + 1].join(" AND ");
    assert!(error_of(&many).contains("at most 50"));
    assert!(error_of("name = \"a\0b\"").starts_with("a NUL character"));
    // Parentheses inside strings do not count as nesting.
    let quoted = format!("name = \"{}\"", "(".repeat(20));
    assert!(parse(&quoted).is_ok());
}
