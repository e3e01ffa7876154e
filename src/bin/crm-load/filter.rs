//! `crm-load filter`: how long parsing a filter and evaluating it in
//! memory on one customer take — what a rule group costs per customer
//! write. Prints the median over rounds of the time per parse and per
//! evaluation.

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use clap::Args;
use crm_classify::{
    domain::filter::{
        self,
        eval::{Meaning, matches},
    },
    entity::customer,
    store::customers::{CustomerRecord, filter::FilterSubject},
};

/// Options of `crm-load filter`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Rounds to take the median of.
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// Parses and evaluations per round.
    #[arg(long, default_value_t = 20_000)]
    per_round: usize,
}

/// Twenty comparisons over every kind of field, Vietnamese text included.
const FILTER: &str = r#"relationship = "HOT" province = "Đà Nẵng" revenue > 50000000
    last_contact_time < ago("30d") (owner_id = u-7 OR owner_id = u-8) name = nguy*
    company:"thuong mai" NOT email:* phone != "0912 345 678" attributes.tier = vang
    in_group("VIP") source != WEB profile_completion >= 40 create_time > "2025-01-01T00:00:00Z"
    update_time < ago("1d") -group_ids:"g-x" relationship_id != r-lost source_id:*
    attributes.region:"mien trung" name:"van an""#;

pub fn run(args: FilterArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let record = CustomerRecord::new(
        customer::Model {
            id: "c-1".into(),
            tenant_id: "bench".into(),
            name: "Nguyễn Văn An".into(),
            sort_key: String::new(),
            search_text: String::new(),
            phone: "+84912000111".into(),
            email: String::new(),
            owner_id: "u-7".into(),
            source_id: Some("s-zalo".into()),
            relationship_id: "r-hot".into(),
            province: "Đà Nẵng".into(),
            company: "Công ty Thương mại Sông Hàn".into(),
            name_folded: "nguyen van an".into(),
            company_folded: "cong ty thuong mai song han".into(),
            province_folded: "da nang".into(),
            attributes_folded: r#"{"region":"mien trung","tier":"vang"}"#.into(),
            revenue: 60_000_000,
            attributes: r#"{"region":"Miền Trung","tier":"Vàng"}"#.into(),
            last_contact_time: Some(1_700_000_000_000_000),
            activity_time: 1_700_000_000_000_000,
            profile_completion: 80,
            revision: 3,
            create_time: 1_760_000_000_000_000,
            update_time: 1_760_000_000_000_000,
            delete_time: None,
        },
        vec!["g-dn".into()],
    )?;
    let meaning = Meaning {
        now: 1_765_000_000_000_000,
        sources: HashMap::from([("WEB".into(), "s-web".into())]),
        relationships: HashMap::from([("HOT".into(), "r-hot".into())]),
        subtrees: HashMap::from([("VIP".into(), HashSet::from(["g-vip".into(), "g-dn".into()]))]),
    };
    let parsed = filter::parse(FILTER)?;
    let subject = FilterSubject::new(&record);
    println!(
        "filter of 20 comparisons; selects the customer: {}",
        matches(&parsed, &subject, &meaning)
    );
    let mut parse_ns = Vec::with_capacity(args.rounds);
    let mut eval_ns = Vec::with_capacity(args.rounds);
    let mut selected = 0usize;
    for _ in 0..args.rounds {
        let started = Instant::now();
        for _ in 0..args.per_round {
            selected += usize::from(filter::parse(FILTER)? != filter::Filter::All);
        }
        parse_ns.push(started.elapsed().as_nanos() as f64 / args.per_round as f64);
        let started = Instant::now();
        for _ in 0..args.per_round {
            // A record's attributes are parsed once per evaluation, as a
            // write would.
            let subject = FilterSubject::new(&record);
            selected += usize::from(matches(&parsed, &subject, &meaning));
        }
        eval_ns.push(started.elapsed().as_nanos() as f64 / args.per_round as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "parse: median {:.2} µs; evaluate: median {:.2} µs ({} rounds of {}; {selected} checks)",
        median(&mut parse_ns) / 1000.0,
        median(&mut eval_ns) / 1000.0,
        args.rounds,
        args.per_round
    );
    Ok(())
}
