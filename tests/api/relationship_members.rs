//! `relationship_members`, the copy of each customer's relationship that
//! lists by relationship and the inactivity sweep read, stays in step with
//! the customers through every kind of write: creates, moves by hand, by
//! the sweep, by a contact and by a relationship's deletion, contacts,
//! deletions and restorations. Checked in the database itself and through
//! the lists it serves.

use crm_classify::pb::{Customer, ListCustomersRequest};
use sea_orm::{ConnectionTrait, Statement};

use crate::fixtures::{
    Customers, apply_inactivity_rules, change, create_customer, delete_customer,
    delete_relationship_into, list_pages, named, new_manual_relationship, record_contact, rel,
    relationships, restore_customer, restore_on_contact, update_request,
};
use crate::helpers::TestApp;
use crate::on_both_databases;

/// A customer as `sql` reads it: id, relationship, active, creation time,
/// activity time, automatic relationship (the flags as 0 or 1).
type Row = (String, String, i64, i64, i64, i64);

async fn rows(app: &TestApp, sql: &str) -> Vec<Row> {
    let db = app.database().await;
    let sql = sql.replace("{tenant}", &app.tenant);
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("read")
        .iter()
        .map(|row| {
            (
                row.try_get_by_index(0).expect("id"),
                row.try_get_by_index(1).expect("relationship"),
                row.try_get_by_index(2).expect("active"),
                row.try_get_by_index(3).expect("created"),
                row.try_get_by_index(4).expect("activity"),
                row.try_get_by_index(5).expect("automatic"),
            )
        })
        .collect()
}

/// The tenant's customers, and their rows in `relationship_members`, which
/// must be the same.
async fn customers_and_copies(app: &TestApp) -> (Vec<Row>, Vec<Row>) {
    let customers = rows(
        app,
        "SELECT c.id, c.relationship_id,
                CAST(CASE WHEN c.delete_time IS NULL THEN 1 ELSE 0 END AS BIGINT),
                c.create_time, c.activity_time,
                CAST(CASE WHEN r.kind = 'AUTOMATIC_INACTIVITY' THEN 1 ELSE 0 END AS BIGINT)
         FROM customers c JOIN relationships r ON r.id = c.relationship_id
         WHERE c.tenant_id = '{tenant}' ORDER BY c.id",
    )
    .await;
    let copies = rows(
        app,
        "SELECT customer_id, relationship_id,
                CAST(CASE WHEN customer_active THEN 1 ELSE 0 END AS BIGINT),
                customer_create_time, activity_time,
                CAST(CASE WHEN automatic_relationship THEN 1 ELSE 0 END AS BIGINT)
         FROM relationship_members WHERE tenant_id = '{tenant}' ORDER BY customer_id",
    )
    .await;
    (customers, copies)
}

/// The ids ListCustomers gives for a relationship in `order_by`, page by
/// page, and the total it reports.
async fn listed(
    customers: &mut Customers,
    relationship_id: &str,
    deleted_only: bool,
    order_by: &str,
) -> (Vec<String>, i64) {
    let pages = list_pages(
        customers,
        ListCustomersRequest {
            relationship_id: relationship_id.to_owned(),
            deleted_only,
            show_deleted: deleted_only,
            order_by: order_by.to_owned(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    let total = pages.first().map_or(0, |p| p.total_size);
    let ids = pages
        .into_iter()
        .flat_map(|p| p.customers)
        .map(|c| c.id)
        .collect();
    (ids, total)
}

async fn every_write_keeps_the_copies_in_step(app: &TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let (new, hot, dont_forget) = (
        rel(&rels, "NEW"),
        rel(&rels, "HOT"),
        rel(&rels, "DONT_FORGET"),
    );
    let mut customers = app.customers();
    let mut created: Vec<Customer> = Vec::new();
    for i in 0..8 {
        created.push(create_customer(&mut customers, named(&format!("Customer {i}"))).await);
        app.clock.advance(chrono::Duration::seconds(1));
    }
    let ids: Vec<String> = created.iter().map(|c| c.id.clone()).collect();

    // Moves by hand: ChangeRelationship and UpdateCustomer.
    change(&mut customers, &ids[0], &hot).await;
    let mut moved = created[1].clone();
    moved.relationship_id = hot.clone();
    customers
        .update_customer(update_request(moved, &["relationship_id"]))
        .await
        .expect("update customer");
    // Deleted, and deleted then restored.
    delete_customer(&mut customers, &ids[2]).await;
    delete_customer(&mut customers, &ids[3]).await;
    restore_customer(&mut customers, &ids[3])
        .await
        .expect("restore customer");

    // 40 days on, one contacted; the sweep moves the other active ones.
    app.clock.advance(chrono::Duration::days(40));
    record_contact(&mut customers, &ids[4], None).await;
    let swept = apply_inactivity_rules(app).await;
    assert_eq!(swept.move_count, 6, "{swept:?}");
    let (listed_dont_forget, total) = listed(&mut customers, &dont_forget, false, "").await;
    assert_eq!(total, 6);
    assert_eq!(listed_dont_forget.len(), 6);

    // A contact restores one; another relationship's deletion moves its
    // holders, a deleted one among them.
    restore_on_contact(app, &dont_forget).await;
    record_contact(&mut customers, &ids[0], None).await;
    let passing = new_manual_relationship(app, "Passing").await;
    change(&mut customers, &ids[5], &passing).await;
    change(&mut customers, &ids[6], &passing).await;
    delete_customer(&mut customers, &ids[6]).await;
    delete_relationship_into(app, &passing, &new).await;

    let (stored, copies) = customers_and_copies(app).await;
    assert_eq!(stored.len(), 8);
    assert_eq!(copies, stored);

    // The lists by relationship, active and deleted holders, newest first
    // (from `relationship_members`) and by name (from `customers`, started
    // from the few holders); names follow creation here.
    for relationship in [&new, &hot, &dont_forget] {
        for deleted in [false, true] {
            let mut expected: Vec<&Row> = stored
                .iter()
                .filter(|r| &r.1 == relationship && (r.2 == 0) == deleted)
                .collect();
            expected.sort_by(|a, b| (b.3, &b.0).cmp(&(a.3, &a.0)));
            let newest: Vec<String> = expected.iter().map(|r| r.0.clone()).collect();
            let by_name: Vec<String> = newest.iter().rev().cloned().collect();
            for (order_by, expected) in [("", newest), ("name", by_name)] {
                let (ids, total) = listed(&mut customers, relationship, deleted, order_by).await;
                let case = format!("{relationship}, deleted: {deleted}, order: {order_by}");
                assert_eq!(ids, expected, "{case}");
                assert_eq!(total, expected.len() as i64, "{case}");
            }
        }
    }
    // Where each ended: the one contacted back in HOT, the sweep's three
    // still in Don't Forget, the deleted relationship's two in NEW.
    let holding = |relationship: &str| -> Vec<String> {
        let mut held: Vec<String> = stored
            .iter()
            .filter(|r| r.1 == relationship)
            .map(|r| r.0.clone())
            .collect();
        held.sort();
        held
    };
    let sorted = |mut of: Vec<String>| {
        of.sort();
        of
    };
    assert_eq!(holding(&hot), [ids[0].clone()]);
    assert_eq!(
        holding(&dont_forget),
        sorted(vec![ids[1].clone(), ids[3].clone(), ids[7].clone()])
    );
    assert_eq!(
        holding(&new),
        sorted(vec![
            ids[2].clone(),
            ids[4].clone(),
            ids[5].clone(),
            ids[6].clone()
        ])
    );
}

on_both_databases! {
    async fn relationship_copies_follow_every_write(app: TestApp) {
        every_write_keeps_the_copies_in_step(&app).await;
    }
}
