//! The two filter evaluators agree: for many random filters over a random
//! population, the customers `ListCustomers` selects in SQL are exactly
//! those the in-memory evaluator (what rule groups will run on each
//! write) selects on the same customers as the API shows them — on both
//! databases, with a fixed seed.
//!
//! The population mixes what filters must get right: Vietnamese text with
//! and without accents and in other cases, punctuation, empty and missing
//! values, deleted customers, never-contacted ones, a group tree with a
//! deleted group, sources and relationships by code and by id.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration as Span, SecondsFormat};
use crm_classify::{
    clock::Clock,
    domain::filter::{
        Field,
        eval::{Meaning, Subject, matches},
        parse,
    },
    pb::{
        AddCustomersToGroupRequest, CountCustomersByRelationshipRequest, Customer,
        DeleteGroupRequest, Group, ListCustomersRequest, Source,
    },
};
use proptest::{
    prelude::RngExt,
    test_runner::{RngAlgorithm, TestRng},
};

use crate::fixtures::{
    create_customer, create_group, create_source, delete_customer, record_contact, relationships,
};
use crate::helpers::TestApp;
use crate::on_both_databases;

/// Random filters checked per database.
const FILTERS: usize = 500;
/// Customers in the population.
const POPULATION: usize = 90;
const SEED: [u8; 32] = *b"crm-classify filters SQL=memory!";

const NAMES: &[&str] = &[
    "Nguyễn Văn An",
    "nguyen van an",
    "NGUYỄN VĂN ANH",
    "Trần Thị Bình",
    "Lê Văn-Cường",
    "Phạm   Minh Đức",
    "Đỗ Hùng",
    "O'Brien; DROP TABLE customers",
    "Văn An",
    "An",
    "Hoàng Yến 100%",
];
const COMPANIES: &[&str] = &[
    "",
    "Công ty TNHH Đà Nẵng",
    "cong ty tnhh da nang",
    "Thương mại Sông Hàn",
    "ACME_vn",
    "---",
];
const PROVINCES: &[&str] = &["", "Đà Nẵng", "Da Nang", "Hà Nội", "TP. Hồ Chí Minh", "Huế"];
const TIERS: &[Option<&str>] = &[
    None,
    Some(""),
    Some("Vàng"),
    Some("vang"),
    Some("Bạc"),
    Some("**"),
];
const REGIONS: &[Option<&str>] = &[
    None,
    Some("Miền Trung"),
    Some("mien bac"),
    Some("Miền Trung Tây"),
];
const OWNERS: &[&str] = &["", "u-1", "u-2", "u-3"];
const REVENUES: &[i64] = &[0, 1_000, 50_000_000, 50_000_001, 999_999_999];
const COMPLETIONS: &[i64] = &[0, 14, 28, 42, 57, 71, 85, 100];
/// Words filters look for, some present, some not.
const WORDS: &[&str] = &[
    "an",
    "van an",
    "Văn",
    "nguyen",
    "NGUYỄN",
    "anh",
    "da nang",
    "Đà",
    "minh duc",
    "hung",
    "drop",
    "100",
    "tnhh",
    "song han",
    "mien trung",
    "trung",
    "vang",
    "x",
    "",
    "%",
    "_",
    "'",
    "ha noi",
    "hồ chí minh",
    "acme vn",
];

/// The tenant's catalogs as the filters name them.
pub struct Catalogs {
    /// Source code → id.
    pub sources: HashMap<String, String>,
    /// Relationship code → id.
    pub relationships: HashMap<String, String>,
    /// `in_group` argument (code or id) → the active subtree's ids.
    pub subtrees: HashMap<String, HashSet<String>>,
    /// Every group id, deleted ones included.
    pub group_ids: Vec<String>,
}

/// A random population; returns the catalogs it uses.
pub async fn populate(app: &TestApp, rng: &mut TestRng, population: usize) -> Catalogs {
    let mut customers = app.customers();
    let mut sources = HashMap::new();
    for (code, name) in [("WEB", "Website"), ("FAIR", "Hội chợ")] {
        let source = create_source(
            app,
            Source {
                code: code.into(),
                name: name.into(),
                ..Default::default()
            },
        )
        .await;
        sources.insert(code.to_owned(), source.id);
    }
    let relationships: HashMap<String, String> = relationships(&mut app.relationships())
        .await
        .into_iter()
        .map(|r| (r.code, r.id))
        .collect();
    let group = |code: &str, name: &str, parent: &str| Group {
        code: code.into(),
        name: name.into(),
        parent_id: parent.into(),
        ..Default::default()
    };
    let mut groups = app.groups();
    let vip = create_group(&mut groups, group("VIP", "Khách VIP", "")).await;
    let vip_dn = create_group(&mut groups, group("VIP_DN", "VIP Đà Nẵng", &vip.id)).await;
    let vip_dn_new = create_group(&mut groups, group("VIP_DN_NEW", "Mới", &vip_dn.id)).await;
    let other = create_group(&mut groups, group("OTHER", "Khác", "")).await;
    let gone = create_group(&mut groups, group("GONE", "Đã xoá", &vip.id)).await;
    let all_groups = [&vip, &vip_dn, &vip_dn_new, &other, &gone];

    let pick = |rng: &mut TestRng, n: usize| rng.random_range(0..n);
    let mut ids = Vec::with_capacity(population);
    for i in 0..population {
        app.clock.advance(Span::minutes(rng.random_range(1..3_000)));
        let mut attributes = std::collections::BTreeMap::new();
        if let Some(tier) = TIERS[pick(rng, TIERS.len())] {
            attributes.insert("tier".to_owned(), tier.to_owned());
        }
        if let Some(region) = REGIONS[pick(rng, REGIONS.len())] {
            attributes.insert("region".to_owned(), region.to_owned());
        }
        let source_id = match pick(rng, 3) {
            0 => String::new(),
            1 => sources["WEB"].clone(),
            _ => sources["FAIR"].clone(),
        };
        // Every seeded relationship a customer can be put in by hand.
        let codes = crate::fixtures::MANUAL_CODES;
        let relationship = relationships[codes[pick(rng, codes.len())]].clone();
        let customer = Customer {
            name: NAMES[pick(rng, NAMES.len())].into(),
            phone: if rng.random_bool(0.6) {
                format!("0912 {i:06}")
            } else {
                String::new()
            },
            email: if rng.random_bool(0.6) {
                format!("Khach.{i}@Example.VN")
            } else {
                String::new()
            },
            owner_id: OWNERS[pick(rng, OWNERS.len())].into(),
            source_id,
            relationship_id: relationship,
            province: PROVINCES[pick(rng, PROVINCES.len())].into(),
            company: COMPANIES[pick(rng, COMPANIES.len())].into(),
            revenue: REVENUES[pick(rng, REVENUES.len())],
            attributes,
            ..Default::default()
        };
        ids.push(create_customer(&mut customers, customer).await.id);
    }
    for group in all_groups {
        let members: Vec<String> = ids
            .iter()
            .filter(|_| rng.random_bool(0.3))
            .cloned()
            .collect();
        if !members.is_empty() {
            customers
                .add_customers_to_group(AddCustomersToGroupRequest {
                    group_id: group.id.clone(),
                    customer_ids: members,
                })
                .await
                .expect("add members");
        }
    }
    for id in &ids {
        match pick(rng, 10) {
            0..=3 => {
                let back = Span::hours(rng.random_range(1..2_000));
                record_contact(&mut customers, id, Some(app.clock.now() - back)).await;
            }
            4 => {
                delete_customer(&mut customers, id).await;
            }
            _ => {}
        }
    }
    groups
        .delete_group(DeleteGroupRequest {
            id: gone.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete group");

    let active = [&vip, &vip_dn, &vip_dn_new, &other];
    let mut subtrees = HashMap::new();
    let subtree = |root: &Group| -> HashSet<String> {
        let mut ids = HashSet::from([root.id.clone()]);
        loop {
            let before = ids.len();
            for g in active {
                if ids.contains(&g.parent_id) {
                    ids.insert(g.id.clone());
                }
            }
            if ids.len() == before {
                return ids;
            }
        }
    };
    for g in active {
        subtrees.insert(g.code.clone(), subtree(g));
        subtrees.insert(g.id.clone(), subtree(g));
    }
    subtrees.insert(gone.code.clone(), HashSet::new());
    subtrees.insert(gone.id.clone(), HashSet::new());
    Catalogs {
        sources,
        relationships,
        subtrees,
        group_ids: all_groups.iter().map(|g| g.id.clone()).collect(),
    }
}

/// A customer as the API shows it, as the in-memory evaluator reads it.
pub struct Shown<'a>(pub &'a Customer);

fn micros(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
}

impl Subject for Shown<'_> {
    fn text(&self, field: &Field) -> Option<&str> {
        let c = self.0;
        Some(match field {
            Field::Name => &c.name,
            Field::Company => &c.company,
            Field::Province => &c.province,
            Field::Phone => &c.phone,
            Field::Email => &c.email,
            Field::OwnerId => &c.owner_id,
            Field::RelationshipId => &c.relationship_id,
            Field::SourceId if !c.source_id.is_empty() => &c.source_id,
            Field::Attribute(key) => return c.attributes.get(key).map(String::as_str),
            _ => return None,
        })
    }

    fn integer(&self, field: &Field) -> i64 {
        match field {
            Field::ProfileCompletion => i64::from(self.0.profile_completion),
            _ => self.0.revenue,
        }
    }

    fn time(&self, field: &Field) -> Option<i64> {
        match field {
            Field::CreateTime => micros(&self.0.create_time),
            Field::UpdateTime => micros(&self.0.update_time),
            _ => micros(&self.0.last_contact_time),
        }
    }

    fn member_of(&self, id: &str) -> bool {
        self.0.group_ids.iter().any(|g| g == id)
    }

    fn in_any_group(&self) -> bool {
        !self.0.group_ids.is_empty()
    }
}

/// Every customer, deleted ones included, whose filter is `filter`.
pub async fn listed(app: &TestApp, filter: &str) -> Vec<Customer> {
    let response = app
        .customers()
        .list_customers(ListCustomersRequest {
            filter: filter.to_owned(),
            show_deleted: true,
            order_by: "name".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("filter {filter:?}: {e:?}"))
        .into_inner();
    assert!(response.next_page_token.is_empty(), "{filter:?}");
    assert_eq!(
        response.total_size,
        response.customers.len() as i64,
        "total of {filter:?}"
    );
    response.customers
}

/// Writes random filters over the population's values.
struct Writer<'a> {
    rng: TestRng,
    catalogs: &'a Catalogs,
    everyone: &'a [Customer],
}

impl Writer<'_> {
    fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    fn one<'s>(&mut self, items: &[&'s str]) -> &'s str {
        items[self.index(items.len())]
    }

    /// A stored customer's value, to make hits likely.
    fn someone(&mut self) -> &Customer {
        &self.everyone[self.rng.random_range(0..self.everyone.len())]
    }

    fn quoted(text: &str) -> String {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn text_value(&mut self, pool: &[&str]) -> String {
        let text = match self.index(3) {
            0 => self.one(WORDS).to_owned(),
            _ => self.one(pool).to_owned(),
        };
        match self.index(4) {
            0 => text.to_uppercase(),
            _ => text,
        }
    }

    fn text_comparison(&mut self, field: &str, pool: &[&str]) -> String {
        let value = self.text_value(pool);
        match self.index(5) {
            0 => format!("{field} = {}", Self::quoted(&value)),
            1 => format!("{field} != {}", Self::quoted(&value)),
            2 => {
                let cut: String = value.chars().take(self.rng.random_range(0..6)).collect();
                format!("{field} = {}", Self::quoted(&format!("{cut}*")))
            }
            _ => format!("{field}:{}", Self::quoted(&value)),
        }
    }

    fn ordered(&mut self) -> &'static str {
        self.one(&["=", "!=", "<", "<=", ">", ">="])
    }

    fn time_value(&mut self, t: Option<i64>) -> String {
        match (self.index(3), t) {
            (0, _) | (_, None) => format!("ago(\"{}h\")", self.rng.random_range(1..3_000)),
            (_, Some(micros)) => {
                let nudge = [-1, 0, 1][self.index(3)];
                let at = DateTime::from_timestamp_micros(micros + nudge).expect("time");
                Self::quoted(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
            }
        }
    }

    fn comparison(&mut self) -> String {
        let fields: [&str; 19] = [
            "name",
            "company",
            "province",
            "phone",
            "email",
            "owner_id",
            "source_id",
            "relationship_id",
            "source",
            "relationship",
            "group_ids",
            "revenue",
            "profile_completion",
            "create_time",
            "update_time",
            "last_contact_time",
            "attributes.tier",
            "attributes.region",
            "in_group",
        ];
        let field = self.one(&fields);
        if self.index(12) == 0 && field != "in_group" {
            return format!("{field}:*");
        }
        match field {
            "name" => self.text_comparison(field, NAMES),
            "company" => self.text_comparison(field, COMPANIES),
            "province" => self.text_comparison(field, PROVINCES),
            "attributes.tier" => {
                let tiers: Vec<&str> = TIERS.iter().flatten().copied().collect();
                self.text_comparison(field, &tiers)
            }
            "attributes.region" => {
                let regions: Vec<&str> = REGIONS.iter().flatten().copied().collect();
                self.text_comparison(field, &regions)
            }
            "phone" => {
                let phone = match self.index(3) {
                    0 => "0912 000 0xx".to_owned(),
                    _ => {
                        let phone = self.someone().phone.clone();
                        // Stored normalised; written as people write it.
                        if phone.len() > 4 {
                            format!("{} {}", &phone[..4], &phone[4..])
                        } else {
                            phone
                        }
                    }
                };
                format!("phone {} {}", self.one(&["=", "!="]), Self::quoted(&phone))
            }
            "email" => {
                let email = self.someone().email.to_uppercase();
                format!("email {} {}", self.one(&["=", "!="]), Self::quoted(&email))
            }
            "owner_id" => {
                let owner = self.one(&["", "u-1", "u-2", "u-3", "u-9"]);
                format!(
                    "owner_id {} {}",
                    self.one(&["=", "!="]),
                    Self::quoted(owner)
                )
            }
            "source_id" => {
                let id = self.someone().source_id.clone();
                format!("source_id {} {}", self.one(&["=", "!="]), Self::quoted(&id))
            }
            "relationship_id" => {
                let id = self.someone().relationship_id.clone();
                format!(
                    "relationship_id {} {}",
                    self.one(&["=", "!="]),
                    Self::quoted(&id)
                )
            }
            "source" => {
                let code = self.one(&["WEB", "FAIR", "NOPE"]);
                format!("source {} {code}", self.one(&["=", "!="]))
            }
            "relationship" => {
                let mut codes: Vec<&str> = self
                    .catalogs
                    .relationships
                    .keys()
                    .map(String::as_str)
                    .collect();
                codes.sort();
                codes.push("NOPE");
                let code = codes[self.index(codes.len())].to_owned();
                format!("relationship {} {code}", self.one(&["=", "!="]))
            }
            "group_ids" => {
                let ids = &self.catalogs.group_ids;
                let id = ids[self.rng.random_range(0..ids.len())].clone();
                format!("group_ids:{}", Self::quoted(&id))
            }
            "in_group" => {
                let mut arguments: Vec<&String> = self.catalogs.subtrees.keys().collect();
                arguments.sort();
                let argument = arguments[self.rng.random_range(0..arguments.len())].clone();
                match self.index(4) {
                    0 => "in_group(\"NOPE\")".to_owned(),
                    _ => format!("in_group({})", Self::quoted(&argument)),
                }
            }
            "revenue" => {
                let v = REVENUES[self.index(REVENUES.len())] + [-1, 0, 0, 1][self.index(4)];
                format!("revenue {} {v}", self.ordered())
            }
            "profile_completion" => {
                let v = COMPLETIONS[self.index(COMPLETIONS.len())];
                format!("profile_completion {} {v}", self.ordered())
            }
            time_field => {
                let someone = self.someone().clone();
                let t = match time_field {
                    "create_time" => micros(&someone.create_time),
                    "update_time" => micros(&someone.update_time),
                    _ => micros(&someone.last_contact_time),
                };
                let value = self.time_value(t);
                format!("{time_field} {} {value}", self.ordered())
            }
        }
    }

    /// A filter of nested AND/OR/NOT up to `depth` levels.
    fn filter(&mut self, depth: usize) -> String {
        if depth == 0 || self.index(3) == 0 {
            return self.comparison();
        }
        let parts: Vec<String> = (0..self.rng.random_range(2..4))
            .map(|_| self.filter(depth - 1))
            .collect();
        let grouped: Vec<String> = parts.iter().map(|p| format!("({p})")).collect();
        match self.index(5) {
            0 => grouped.join(" AND "),
            1 => grouped.join(" "),
            2 => grouped.join(" OR "),
            3 => format!("NOT ({})", grouped.join(" OR ")),
            _ => format!("-({}) {}", parts[0], grouped[1..].join(" ")),
        }
    }
}

on_both_databases! {
    async fn sql_and_memory_select_the_same_customers(app: TestApp) {
        let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &SEED);
        let catalogs = populate(&app, &mut rng, POPULATION).await;
        let everyone = listed(&app, "").await;
        assert_eq!(everyone.len(), POPULATION);
        let meaning = Meaning {
            now: app.clock.now().timestamp_micros(),
            sources: catalogs.sources.clone(),
            relationships: catalogs.relationships.clone(),
            subtrees: catalogs.subtrees.clone(),
        };
        let mut writer = Writer { rng, catalogs: &catalogs, everyone: &everyone };
        let (mut hits, mut empties) = (0, 0);
        for n in 0..FILTERS {
            let text = writer.filter(3);
            let filter = parse(&text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e:?}"));
            let expected: BTreeSet<&str> = everyone
                .iter()
                .filter(|c| matches(&filter, &Shown(c), &meaning))
                .map(|c| c.id.as_str())
                .collect();
            let selected = listed(&app, &text).await;
            let got: BTreeSet<&str> = selected.iter().map(|c| c.id.as_str()).collect();
            let only_sql: Vec<&&str> = got.difference(&expected).collect();
            let only_memory: Vec<&&str> = expected.difference(&got).collect();
            assert!(
                only_sql.is_empty() && only_memory.is_empty(),
                "filter {n} {text:?}: only SQL selected {only_sql:?}, only memory {only_memory:?}"
            );
            if expected.is_empty() { empties += 1 } else if expected.len() < everyone.len() { hits += 1 }
            if n % 10 == 0 {
                // The summary bar of the same filter counts the active ones.
                let counted = app.customers().count_customers_by_relationship(CountCustomersByRelationshipRequest {
                    filter: text.clone(),
                    ..Default::default()
                }).await.expect("count").into_inner();
                let mut by_relationship: HashMap<&str, i64> = HashMap::new();
                for c in everyone.iter().filter(|c| c.delete_time.is_none() && expected.contains(c.id.as_str())) {
                    *by_relationship.entry(c.relationship_id.as_str()).or_default() += 1;
                }
                for count in &counted.counts {
                    let id = count.relationship_id.as_str();
                    assert_eq!(count.count, by_relationship.get(id).copied().unwrap_or(0), "count of {text:?}");
                }
                assert_eq!(counted.total, by_relationship.values().sum::<i64>(), "total of {text:?}");
            }
        }
        // The filters were not all trivially empty or full.
        assert!(hits > FILTERS / 4, "only {hits} filters selected some but not all customers");
        assert!(empties < FILTERS / 2, "{empties} filters selected nobody");
    }
}
