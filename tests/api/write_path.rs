//! Every kind of customer write, driven through the API on one tenant,
//! leaves the derived state equal to a recount from the base tables and
//! never leaves a stale record in the record cache.
//!
//! After each write the test reads the tables directly and checks the
//! summary-bar counters (`relationship_counts`, `group_relationship_counts`),
//! the copies (`relationship_members`, `group_members`) and the change log
//! (`relationship_changes`, `change_counters`) against the customers, groups
//! and relationships themselves; and it reads every customer through
//! GetCustomer, which the read after the previous write left in the cache,
//! and compares it with the customer's rows. A write that forgets a counter,
//! a copy, a log entry or a cache invalidation fails here, named.

use std::collections::{BTreeMap, BTreeSet};

use crm_classify::{
    entity::{
        change_counter, customer, customer_group, group_member, group_relationship_count,
        relationship, relationship_change, relationship_count, relationship_member,
    },
    pb::{
        AddCustomersToGroupRequest, BatchChangeRelationshipRequest, Customer, DeleteGroupRequest,
        Group, RemoveCustomersFromGroupRequest, RestoreGroupRequest,
    },
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use crate::fixtures::{
    Customers, apply_inactivity_rules, change, create_customer, delete_customer,
    delete_relationship_into, get_customer, named, new_group, new_manual_relationship,
    record_contact, rel, relationships, restore_customer, restore_on_contact, update_request,
};
use crate::helpers::{TestApp, concurrently};
use crate::on_both_databases;

/// `relationships.kind` of the automatic (inactivity) relationships.
const AUTOMATIC: &str = "AUTOMATIC_INACTIVITY";

/// The tenant's rows, read directly: the base tables and what is derived
/// from them.
struct Tables {
    customers: BTreeMap<String, customer::Model>,
    relationships: BTreeMap<String, relationship::Model>,
    groups: BTreeMap<String, customer_group::Model>,
    group_members: Vec<group_member::Model>,
    relationship_members: BTreeMap<String, relationship_member::Model>,
    relationship_counts: Vec<relationship_count::Model>,
    group_counts: Vec<group_relationship_count::Model>,
    /// In sequence order.
    log: Vec<relationship_change::Model>,
    counter: Option<change_counter::Model>,
}

macro_rules! rows_of {
    ($db:expr, $tenant:expr, $entity:ident) => {
        $entity::Entity::find()
            .filter($entity::Column::TenantId.eq($tenant))
            .all($db)
            .await
            .unwrap_or_else(|e| panic!("read {}: {e}", stringify!($entity)))
    };
}

impl Tables {
    async fn read(db: &DatabaseConnection, tenant: &str) -> Self {
        Self {
            customers: rows_of!(db, tenant, customer)
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
            relationships: rows_of!(db, tenant, relationship)
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
            groups: rows_of!(db, tenant, customer_group)
                .into_iter()
                .map(|g| (g.id.clone(), g))
                .collect(),
            group_members: rows_of!(db, tenant, group_member),
            relationship_members: rows_of!(db, tenant, relationship_member)
                .into_iter()
                .map(|m| (m.customer_id.clone(), m))
                .collect(),
            relationship_counts: rows_of!(db, tenant, relationship_count),
            group_counts: rows_of!(db, tenant, group_relationship_count),
            log: relationship_change::Entity::find()
                .filter(relationship_change::Column::TenantId.eq(tenant))
                .order_by_asc(relationship_change::Column::Sequence)
                .all(db)
                .await
                .expect("read relationship_changes"),
            counter: change_counter::Entity::find_by_id(tenant.to_owned())
                .one(db)
                .await
                .expect("read change_counters"),
        }
    }

    /// `id` with the name of what it identifies, for failure messages.
    fn label(&self, id: &str) -> String {
        if let Some(c) = self.customers.get(id) {
            format!("customer {:?} ({id})", c.name)
        } else if let Some(r) = self.relationships.get(id) {
            r.code.clone()
        } else if let Some(g) = self.groups.get(id) {
            format!("group {:?}", g.name)
        } else if id.is_empty() {
            "(none)".to_owned()
        } else {
            format!("unknown id {id}")
        }
    }

    fn active(&self, customer_id: &str) -> Option<&customer::Model> {
        self.customers
            .get(customer_id)
            .filter(|c| c.delete_time.is_none())
    }

    /// Every way the derived state differs from a recount of the base
    /// tables.
    fn recount_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.check_relationship_counts(&mut problems);
        self.check_group_counts(&mut problems);
        self.check_relationship_members(&mut problems);
        self.check_group_members(&mut problems);
        self.check_log(&mut problems);
        problems
    }

    /// `relationship_counts` holds the active customers of each
    /// relationship (a row of 0 is the same as no row).
    fn check_relationship_counts(&self, problems: &mut Vec<String>) {
        let mut recount: BTreeMap<String, i64> = BTreeMap::new();
        for c in self.customers.values().filter(|c| c.delete_time.is_none()) {
            *recount.entry(c.relationship_id.clone()).or_default() += 1;
        }
        let stored: BTreeMap<String, i64> = self
            .relationship_counts
            .iter()
            .filter(|r| r.customers != 0)
            .map(|r| (r.relationship_id.clone(), r.customers))
            .collect();
        for (relationship, (stored, recount)) in differences(&stored, &recount) {
            problems.push(format!(
                "relationship_counts of {} is {stored}; the active customers holding it are {recount}",
                self.label(&relationship)
            ));
        }
    }

    /// `group_relationship_counts` holds, per group (deleted groups too:
    /// their counts are kept for a restore) and relationship, the active
    /// members holding it.
    fn check_group_counts(&self, problems: &mut Vec<String>) {
        let mut recount: BTreeMap<(String, String), i64> = BTreeMap::new();
        for m in &self.group_members {
            if let Some(c) = self.active(&m.customer_id) {
                *recount
                    .entry((m.group_id.clone(), c.relationship_id.clone()))
                    .or_default() += 1;
            }
        }
        let stored: BTreeMap<(String, String), i64> = self
            .group_counts
            .iter()
            .filter(|r| r.customers != 0)
            .map(|r| ((r.group_id.clone(), r.relationship_id.clone()), r.customers))
            .collect();
        for ((group, relationship), (stored, recount)) in differences(&stored, &recount) {
            problems.push(format!(
                "group_relationship_counts of {} and {} is {stored}; the active members holding it are {recount}",
                self.label(&group),
                self.label(&relationship)
            ));
        }
    }

    /// `relationship_members` has exactly one row per customer, a copy of
    /// the customer's relationship, state and times.
    fn check_relationship_members(&self, problems: &mut Vec<String>) {
        for c in self.customers.values() {
            let Some(m) = self.relationship_members.get(&c.id) else {
                problems.push(format!(
                    "relationship_members has no row for {}",
                    self.label(&c.id)
                ));
                continue;
            };
            let automatic = self
                .relationships
                .get(&c.relationship_id)
                .is_some_and(|r| r.kind == AUTOMATIC);
            let expected = relationship_member::Model {
                customer_id: c.id.clone(),
                tenant_id: c.tenant_id.clone(),
                relationship_id: c.relationship_id.clone(),
                automatic_relationship: automatic,
                customer_active: c.delete_time.is_none(),
                customer_create_time: c.create_time,
                activity_time: c.activity_time,
                owner_id: c.owner_id.clone(),
            };
            if *m != expected {
                problems.push(format!(
                    "relationship_members of {} is {m:?}; the customer gives {expected:?}",
                    self.label(&c.id)
                ));
            }
        }
        for id in self.relationship_members.keys() {
            if !self.customers.contains_key(id) {
                problems.push(format!(
                    "relationship_members has a row for {id}, no customer"
                ));
            }
        }
    }

    /// Each `group_members` row copies its customer's relationship, state
    /// and creation time.
    fn check_group_members(&self, problems: &mut Vec<String>) {
        for m in &self.group_members {
            let Some(c) = self.customers.get(&m.customer_id) else {
                problems.push(format!(
                    "group_members of {} names {}, no customer",
                    self.label(&m.group_id),
                    m.customer_id
                ));
                continue;
            };
            let copy = (
                &m.relationship_id,
                m.customer_active,
                m.customer_create_time,
            );
            let expected = (&c.relationship_id, c.delete_time.is_none(), c.create_time);
            if copy != expected {
                problems.push(format!(
                    "group_members of {} in {}: (relationship, active, created) = ({}, {}, {}); the customer gives ({}, {}, {})",
                    self.label(&c.id),
                    self.label(&m.group_id),
                    self.label(copy.0),
                    copy.1,
                    copy.2,
                    self.label(expected.0),
                    expected.1,
                    expected.2
                ));
            }
        }
    }

    /// The log is numbered 1..=N without gaps, N is the tenant's counter,
    /// and each customer's entries form one chain from its creation to the
    /// relationship it holds.
    fn check_log(&self, problems: &mut Vec<String>) {
        let sequences: Vec<i64> = self.log.iter().map(|e| e.sequence).collect();
        let expected: Vec<i64> = (1..=self.log.len() as i64).collect();
        if sequences != expected {
            problems.push(format!(
                "the log's sequences are {sequences:?}, not 1..={} without gaps",
                self.log.len()
            ));
        }
        match &self.counter {
            None if !self.log.is_empty() => {
                problems.push("change_counters has no row for the tenant".to_owned())
            }
            None => {}
            Some(counter) => {
                if counter.last_sequence != self.log.len() as i64 {
                    problems.push(format!(
                        "change_counters.last_sequence is {}; the log holds {} entries",
                        counter.last_sequence,
                        self.log.len()
                    ));
                }
                if counter.trimmed_through != 0 {
                    problems.push(format!(
                        "the log was trimmed through {} during the test",
                        counter.trimmed_through
                    ));
                }
            }
        }
        let mut chains: BTreeMap<&str, Vec<&relationship_change::Model>> = BTreeMap::new();
        for entry in &self.log {
            chains.entry(&entry.customer_id).or_default().push(entry);
        }
        for c in self.customers.values() {
            let chain = chains.remove(c.id.as_str()).unwrap_or_default();
            let mut held = String::new();
            for entry in &chain {
                if entry.old_relationship_id != held || entry.new_relationship_id == held {
                    problems.push(format!(
                        "log entry {} of {} moves {} → {}, but the customer held {} (its entries: {})",
                        entry.sequence,
                        self.label(&c.id),
                        self.label(&entry.old_relationship_id),
                        self.label(&entry.new_relationship_id),
                        self.label(&held),
                        self.chain_text(&chain)
                    ));
                }
                held = entry.new_relationship_id.clone();
            }
            if held != c.relationship_id {
                problems.push(format!(
                    "the log of {} ends in {}, but the customer holds {} (its entries: {})",
                    self.label(&c.id),
                    self.label(&held),
                    self.label(&c.relationship_id),
                    self.chain_text(&chain)
                ));
            }
        }
        for (customer_id, chain) in chains {
            problems.push(format!(
                "the log has {} entries of {customer_id}, no customer",
                chain.len()
            ));
        }
    }

    fn chain_text(&self, chain: &[&relationship_change::Model]) -> String {
        let steps: Vec<String> = chain
            .iter()
            .map(|e| {
                format!(
                    "#{} {} → {} ({})",
                    e.sequence,
                    self.label(&e.old_relationship_id),
                    self.label(&e.new_relationship_id),
                    e.cause
                )
            })
            .collect();
        format!("[{}]", steps.join(", "))
    }

    /// Customer `id` as its rows give it, in the terms GetCustomer answers.
    fn record(&self, id: &str) -> Record {
        let c = &self.customers[id];
        let mut group_ids: Vec<String> = self
            .group_members
            .iter()
            .filter(|m| m.customer_id == id)
            .filter(|m| {
                self.groups
                    .get(&m.group_id)
                    .is_some_and(|g| g.delete_time.is_none())
            })
            .map(|m| m.group_id.clone())
            .collect();
        group_ids.sort();
        Record {
            name: c.name.clone(),
            phone: c.phone.clone(),
            email: c.email.clone(),
            owner_id: c.owner_id.clone(),
            source_id: c.source_id.clone().unwrap_or_default(),
            relationship_id: c.relationship_id.clone(),
            group_ids,
            province: c.province.clone(),
            company: c.company.clone(),
            revenue: c.revenue,
            attributes: serde_json::from_str(&c.attributes).unwrap_or_else(|e| {
                panic!("attributes of {} are not a JSON map: {e}", self.label(id))
            }),
            last_contact_time: c.last_contact_time,
            profile_completion: c.profile_completion,
            create_time: c.create_time,
            update_time: c.update_time,
            delete_time: c.delete_time,
            etag: format!("r{}", c.revision),
        }
    }
}

/// The keys where `stored` and `recount` differ, with both values (0 where
/// a map has none).
fn differences<K: Ord + Clone>(
    stored: &BTreeMap<K, i64>,
    recount: &BTreeMap<K, i64>,
) -> Vec<(K, (i64, i64))> {
    let keys: BTreeSet<&K> = stored.keys().chain(recount.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let value = |m: &BTreeMap<K, i64>| m.get(k).copied().unwrap_or(0);
            (k.clone(), (value(stored), value(recount)))
        })
        .filter(|(_, (s, r))| s != r)
        .collect()
}

/// What GetCustomer shows of a customer; times in microseconds.
#[derive(Debug, PartialEq)]
struct Record {
    name: String,
    phone: String,
    email: String,
    owner_id: String,
    source_id: String,
    relationship_id: String,
    /// Sorted.
    group_ids: Vec<String>,
    province: String,
    company: String,
    revenue: i64,
    attributes: BTreeMap<String, String>,
    last_contact_time: Option<i64>,
    profile_completion: i32,
    create_time: i64,
    update_time: i64,
    delete_time: Option<i64>,
    etag: String,
}

fn micros(t: Option<prost_types::Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
}

impl From<Customer> for Record {
    fn from(c: Customer) -> Self {
        let mut group_ids = c.group_ids;
        group_ids.sort();
        Self {
            name: c.name,
            phone: c.phone,
            email: c.email,
            owner_id: c.owner_id,
            source_id: c.source_id,
            relationship_id: c.relationship_id,
            group_ids,
            province: c.province,
            company: c.company,
            revenue: c.revenue,
            attributes: c.attributes.into_iter().collect(),
            last_contact_time: micros(c.last_contact_time),
            profile_completion: c.profile_completion,
            create_time: micros(c.create_time).unwrap_or_default(),
            update_time: micros(c.update_time).unwrap_or_default(),
            delete_time: micros(c.delete_time),
            etag: c.etag,
        }
    }
}

/// One tenant's run through every kind of write.
struct Run<'a> {
    app: &'a TestApp,
    db: DatabaseConnection,
    customers: Customers,
}

impl Run<'_> {
    /// Checks the tenant after the write `what`: the derived tables against
    /// a recount, and every customer as GetCustomer shows it (from the
    /// cache the previous check filled) against its rows. Leaves every
    /// customer's record in the cache for the next write.
    async fn check(&mut self, what: &str) {
        let tables = Tables::read(&self.db, &self.app.tenant).await;
        let mut problems = tables.recount_problems();
        for id in tables.customers.keys() {
            let served = Record::from(get_customer(&mut self.customers, id).await);
            let stored = tables.record(id);
            if served != stored {
                problems.push(format!(
                    "GetCustomer of {} differs from its rows\n  served: {served:?}\n  stored: {stored:?}",
                    tables.label(id)
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "after {what}:\n- {}",
            problems.join("\n- ")
        );
    }
}

fn in_groups(customer: Customer, groups: &[&Group]) -> Customer {
    Customer {
        group_ids: groups.iter().map(|g| g.id.clone()).collect(),
        ..customer
    }
}

async fn every_write_keeps_derived_state_and_cache_in_step(app: &TestApp) {
    let db = app.database().await;
    let mut run = Run {
        app,
        db,
        customers: app.customers(),
    };
    let mut customers = app.customers();
    let rels = relationships(&mut app.relationships()).await;
    let [new, approached, hot, potential, dont_forget] =
        ["NEW", "APPROACHED", "HOT", "POTENTIAL", "DONT_FORGET"].map(|code| rel(&rels, code));
    let north = new_group(app, "Miền Bắc").await;
    let vip = new_group(app, "Khách VIP").await;
    let fair = new_group(app, "Hội chợ").await;
    let expo = new_group(app, "Triển lãm").await;
    run.check("creating the groups").await;

    let ana = create_customer(&mut customers, in_groups(named("Ana"), &[&north, &vip])).await;
    run.check("CreateCustomer in two groups").await;

    // At once, so that the creates are written in batches; one of them
    // with a relationship of its own.
    let batch: Vec<Customer> = concurrently(6, |i| {
        let mut client = app.customers();
        let groups: Vec<&Group> = match i % 3 {
            0 => vec![&north],
            1 => vec![&vip, &fair],
            _ => vec![],
        };
        let mut customer = in_groups(named(&format!("Batch {i}")), &groups);
        if i == 5 {
            customer.relationship_id = potential.clone();
        }
        async move { create_customer(&mut client, customer).await }
    })
    .await;
    let b: Vec<String> = batch.iter().map(|c| c.id.clone()).collect();
    run.check("six concurrent CreateCustomer calls").await;

    let bao = Customer {
        relationship_id: hot.clone(),
        ..named("Bảo")
    };
    let bao = create_customer(&mut customers, in_groups(bao, &[&fair, &expo])).await;
    run.check("CreateCustomer with a relationship and groups")
        .await;

    let profile = Customer {
        id: ana.id.clone(),
        phone: "0901 111 222".into(),
        ..named("Ana Nguyễn")
    };
    customers
        .update_customer(update_request(profile, &["name", "phone"]))
        .await
        .expect("update the profile");
    run.check("UpdateCustomer of name and phone").await;

    let handed_over = Customer {
        id: ana.id.clone(),
        owner_id: "u-9".into(),
        ..Default::default()
    };
    customers
        .update_customer(update_request(handed_over, &["owner_id"]))
        .await
        .expect("update the owner");
    run.check("UpdateCustomer of the owner").await;

    let moved = Customer {
        id: b[0].clone(),
        relationship_id: approached.clone(),
        ..Default::default()
    };
    customers
        .update_customer(update_request(moved, &["relationship_id"]))
        .await
        .expect("update the relationship");
    run.check("UpdateCustomer of the relationship").await;

    change(&mut customers, &b[1], &hot).await;
    run.check("ChangeRelationship").await;

    let moved = customers
        .batch_change_relationship(BatchChangeRelationshipRequest {
            customer_ids: vec![b[2].clone(), b[3].clone(), bao.id.clone()],
            relationship_id: potential.clone(),
            reason: "campaign".into(),
        })
        .await
        .expect("batch change relationship")
        .into_inner();
    assert_eq!(moved.changes.len(), 3, "{moved:?}");
    run.check("BatchChangeRelationship").await;

    // Bảo is in Triển lãm already.
    customers
        .add_customers_to_group(AddCustomersToGroupRequest {
            group_id: expo.id.clone(),
            customer_ids: vec![ana.id.clone(), b[2].clone(), bao.id.clone()],
        })
        .await
        .expect("add to group");
    run.check("AddCustomersToGroup").await;

    customers
        .remove_customers_from_group(RemoveCustomersFromGroupRequest {
            group_id: vip.id.clone(),
            customer_ids: vec![ana.id.clone(), b[1].clone()],
        })
        .await
        .expect("remove from group");
    run.check("RemoveCustomersFromGroup").await;

    delete_customer(&mut customers, &b[4]).await;
    run.check("DeleteCustomer").await;
    delete_customer(&mut customers, &b[3]).await;
    restore_customer(&mut customers, &b[3])
        .await
        .expect("restore customer");
    run.check("DeleteCustomer then RestoreCustomer").await;

    let mut groups = app.groups();
    let delete_group = |group: &Group| DeleteGroupRequest {
        id: group.id.clone(),
        etag: String::new(),
        cascade: false,
    };
    groups
        .delete_group(delete_group(&expo))
        .await
        .expect("delete group");
    run.check("DeleteGroup").await;
    groups
        .restore_group(RestoreGroupRequest {
            id: expo.id.clone(),
            etag: String::new(),
        })
        .await
        .expect("restore group");
    run.check("RestoreGroup").await;
    // Hội chợ stays deleted: its members' later moves still count in it.
    groups
        .delete_group(delete_group(&fair))
        .await
        .expect("delete group");
    run.check("DeleteGroup of a group that stays deleted").await;

    // 40 days on: Ana is called, the sweep moves the other active ones.
    app.clock.advance(chrono::Duration::days(40));
    record_contact(&mut customers, &ana.id, None).await;
    run.check("RecordContact").await;
    let swept = apply_inactivity_rules(app).await;
    assert!(
        swept.moves.iter().any(|m| m.customer_id == b[1]),
        "the sweep moves Batch 1: {swept:?}"
    );
    run.check("ApplyInactivityRules").await;

    // A contact brings Batch 1 back from the automatic relationship.
    restore_on_contact(app, &dont_forget).await;
    let back = record_contact(&mut customers, &b[1], None).await;
    assert_eq!(back, hot, "the contact restores Batch 1 to HOT");
    run.check("RecordContact restoring from the automatic relationship")
        .await;

    // A relationship's deletion moves its holders, a deleted one among them.
    let passing = new_manual_relationship(app, "Passing").await;
    change(&mut customers, &b[0], &passing).await;
    change(&mut customers, &b[5], &passing).await;
    delete_customer(&mut customers, &b[5]).await;
    run.check("moves to a new relationship").await;
    let deleted = delete_relationship_into(app, &passing, &new).await;
    assert_eq!(deleted.reassigned_customer_count, 2, "{deleted:?}");
    run.check("DeleteRelationship with reassignment").await;
}

on_both_databases! {
    async fn every_customer_write_leaves_counters_copies_log_and_cache_equal_to_the_tables(app: TestApp) {
        every_write_keeps_derived_state_and_cache_in_step(&app).await;
    }
}
