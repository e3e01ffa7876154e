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
    assert_eq!(
        error_of("attributes.Tier = gold"),
        "expected an attribute key (1–64 of a–z, 0–9 and _), found `Tier` at 11"
    );
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

mod evaluation {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::super::{
        eval::{Meaning, Subject, matches},
        parse,
    };
    use crate::domain::filter::Field;

    const DAY: i64 = 86_400 * 1_000_000;

    struct Customer {
        texts: HashMap<Field, String>,
        attributes: BTreeMap<String, String>,
        revenue: i64,
        created: i64,
        contacted: Option<i64>,
        groups: Vec<String>,
    }

    impl Subject for Customer {
        fn text(&self, field: &Field) -> Option<&str> {
            match field {
                Field::Attribute(key) => self.attributes.get(key).map(String::as_str),
                _ => self.texts.get(field).map(String::as_str),
            }
        }
        fn integer(&self, field: &Field) -> i64 {
            match field {
                Field::Revenue => self.revenue,
                _ => 40,
            }
        }
        fn time(&self, field: &Field) -> Option<i64> {
            match field {
                Field::LastContactTime => self.contacted,
                _ => Some(self.created),
            }
        }
        fn member_of(&self, id: &str) -> bool {
            self.groups.iter().any(|g| g == id)
        }
        fn in_any_group(&self) -> bool {
            !self.groups.is_empty()
        }
    }

    fn an() -> Customer {
        Customer {
            texts: HashMap::from([
                (Field::Name, "Nguyễn Văn An".to_owned()),
                (Field::Province, "Đà Nẵng".to_owned()),
                (Field::Company, String::new()),
                (Field::Phone, "+84912345678".to_owned()),
                (Field::Email, "an@example.vn".to_owned()),
                (Field::OwnerId, "u-7".to_owned()),
                (Field::RelationshipId, "r-hot".to_owned()),
            ]),
            attributes: BTreeMap::from([("tier".to_owned(), "Vàng".to_owned())]),
            revenue: 60_000_000,
            created: 100 * DAY,
            contacted: Some(120 * DAY),
            groups: vec!["g-dn".to_owned()],
        }
    }

    fn meaning() -> Meaning {
        Meaning {
            now: 160 * DAY,
            sources: HashMap::from([("WEB".to_owned(), "s-web".to_owned())]),
            relationships: HashMap::from([("HOT".to_owned(), "r-hot".to_owned())]),
            subtrees: HashMap::from([(
                "VIP".to_owned(),
                HashSet::from(["g-vip".to_owned(), "g-dn".to_owned()]),
            )]),
        }
    }

    fn selects(filter: &str) -> bool {
        matches(&parse(filter).expect(filter), &an(), &meaning())
    }

    #[test]
    fn the_contracts_examples_select_as_meant() {
        for (filter, expected) in [
            (
                r#"relationship = "HOT" province = "da nang" revenue > 50000000 last_contact_time < ago("30d")"#,
                true,
            ),
            (
                "relationship = HOT AND last_contact_time > ago(\"30d\")",
                false,
            ),
            ("in_group(VIP) AND NOT email:*", false),
            ("in_group(VIP) -company:*", true),
            ("in_group(OTHER) OR name:van", true),
            ("name = nguy*", true),
            ("name = van*", false),
            ("name:\"văn an\"", true),
            ("name = \"NGUYEN VAN AN\"", true),
            ("phone = \"0912 345 678\"", false),
            ("phone = \"+84 912 345 678\"", true),
            ("email = AN@EXAMPLE.VN", true),
            ("attributes.tier = vang", true),
            ("attributes.missing = x", false),
            ("attributes.missing != x", true),
            ("source = WEB", false),
            ("source != WEB", true),
            ("NOT source:*", true),
            ("group_ids:g-dn", true),
            ("group_ids:g-vip", false),
            ("owner_id = u-7 owner_id != u-8", true),
            (
                "create_time >= \"1970-04-11T00:00:00Z\" create_time < \"1970-04-11T00:00:01Z\"",
                true,
            ),
        ] {
            assert_eq!(selects(filter), expected, "{filter}");
        }
    }

    #[test]
    fn a_customer_never_contacted_fails_every_time_comparison_but_not_equal() {
        let never = Customer {
            contacted: None,
            ..an()
        };
        let m = meaning();
        for (filter, expected) in [
            ("last_contact_time < ago(\"1d\")", false),
            ("last_contact_time > ago(\"1000d\")", false),
            ("last_contact_time != \"2026-01-01T00:00:00Z\"", true),
            ("NOT last_contact_time:*", true),
        ] {
            assert_eq!(
                matches(&parse(filter).unwrap(), &never, &m),
                expected,
                "{filter}"
            );
        }
    }
}
