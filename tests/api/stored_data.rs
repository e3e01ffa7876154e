//! Stored data that is not what it must be (a corrupt JSON column) is an
//! error for the call that reads it — INTERNAL, logged — never a silent
//! default: damaged attributes are not shown as none, and a damaged
//! exemption list does not make the inactivity rule move exempt customers.

use crm_classify::pb::{ListCustomersRequest, ListRelationshipsRequest};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::Code;

use crate::fixtures::{
    apply_inactivity_rules, create_customer, get_customer, named, rel, relationships,
};
use crate::helpers::expect_code;
use crate::on_both_databases;

/// Runs `sql` on the test database.
async fn execute(db: &DatabaseConnection, sql: String) {
    db.execute_unprepared(&sql)
        .await
        .expect("tamper with the database");
}

on_both_databases! {
    async fn corrupt_stored_attributes_are_internal_not_empty(app: TestApp) {
        let mut customers = app.customers();
        let mut customer = named("Phạm Thị Dung");
        customer.attributes.insert("tier".into(), "gold".into());
        let created = create_customer(&mut customers, customer).await;
        let db = app.database().await;
        execute(&db, format!("UPDATE customers SET attributes = '{{\"tier\": ' WHERE id = '{}'", created.id)).await;

        let status = expect_code(
            customers.get_customer(crm_classify::pb::GetCustomerRequest { id: created.id.clone() }).await,
            Code::Internal,
        );
        assert!(!status.message().contains("tier"), "no stored text leaks: {status:?}");
        expect_code(
            customers.list_customers(ListCustomersRequest { page_size: 10, ..Default::default() }).await,
            Code::Internal,
        );

        // Repaired, the same calls answer again: the error came from the data.
        execute(&db, format!("UPDATE customers SET attributes = '{{\"tier\": \"gold\"}}' WHERE id = '{}'", created.id)).await;
        let read = get_customer(&mut customers, &created.id).await;
        assert_eq!(read.attributes.get("tier").map(String::as_str), Some("gold"));
    }

    async fn a_corrupt_exemption_list_stops_the_rule_instead_of_exempting_nobody(app: TestApp) {
        let listed = relationships(&mut app.relationships()).await;
        let new = rel(&listed, "NEW");
        let dont_forget = rel(&listed, "DONT_FORGET");
        let created = create_customer(&mut app.customers(), named("Võ Văn Em")).await;
        app.clock.advance(chrono::Duration::days(40));
        let db = app.database().await;
        execute(&db, format!("UPDATE relationships SET exempt_relationship_ids = '[\"{new}\"' WHERE id = '{dont_forget}'")).await;

        expect_code(
            app.relationships().apply_inactivity_rules(crm_classify::pb::ApplyInactivityRulesRequest {
                page_size: 10,
                ..Default::default()
            }).await,
            Code::Internal,
        );
        expect_code(
            app.relationships().list_relationships(ListRelationshipsRequest::default()).await,
            Code::Internal,
        );
        let unmoved = get_customer(&mut app.customers(), &created.id).await;
        assert_eq!(unmoved.relationship_id, new, "nobody moved on a corrupt list");

        // Repaired (no exemptions), the rule applies: the customer was due.
        execute(&db, format!("UPDATE relationships SET exempt_relationship_ids = '[]' WHERE id = '{dont_forget}'")).await;
        let applied = apply_inactivity_rules(&app).await;
        assert_eq!(applied.move_count, 1, "{applied:?}");
        let moved = get_customer(&mut app.customers(), &created.id).await;
        assert_eq!(moved.relationship_id, dont_forget);
    }
}
