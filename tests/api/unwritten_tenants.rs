//! Tenants never written: every read answers as a fresh tenant would (its
//! seven seeded relationships, nothing else) and writes nothing; the first
//! write then stores exactly what those reads showed.

use std::time::Duration;

use crm_classify::pb::{
    ApplyInactivityRulesRequest, CountCustomersByRelationshipRequest, GetCustomerRequest,
    GetGroupRequest, GetRelationshipRequest, GetSourceReportRequest, GetSourceRequest,
    ListContactsRequest, ListCustomersRequest, ListGroupsRequest, ListRelationshipHistoryRequest,
    ListRelationshipsRequest, ListSourcesRequest, Relationship, WatchRelationshipChangesRequest,
    watch_relationship_changes_response::Event,
};
use tonic::Code;

use crate::fixtures::{SEEDED, create_customer, named, opening_heartbeat, unknown_id};
use crate::helpers::{expect_code, new_tenant};
use crate::hostile_tokens::rows_of_tenants;
use crate::on_both_databases;

/// What identifies a relationship across the first write: its id, code,
/// position and default flag.
fn identities(relationships: &[Relationship]) -> Vec<(String, String, i32, bool)> {
    relationships
        .iter()
        .map(|r| (r.id.clone(), r.code.clone(), r.position, r.is_default))
        .collect()
}

/// Asserts that `relationships` are the seeds, in order, each held by no one.
fn assert_seeds(relationships: &[Relationship]) {
    let codes: Vec<&str> = relationships.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, SEEDED);
    let positions: Vec<i32> = relationships.iter().map(|r| r.position).collect();
    assert_eq!(positions, (1..=7).collect::<Vec<_>>());
    let defaults: Vec<&str> = relationships
        .iter()
        .filter(|r| r.is_default)
        .map(|r| r.code.as_str())
        .collect();
    assert_eq!(defaults, ["NEW"]);
    assert!(relationships.iter().all(|r| r.customer_count == 0));
}

on_both_databases! {
    async fn every_read_of_a_tenant_never_written_writes_nothing(app: TestApp, heartbeat = Duration::from_millis(100)) {
        let prefix = new_tenant();
        let before = rows_of_tenants(&app, &prefix).await;
        assert!(before.iter().all(|(_, n)| *n == 0), "{before:?}");
        let mut fresh = 0;
        let mut tenant = || {
            fresh += 1;
            format!("{prefix}-{fresh}")
        };

        let listed = app.relationships_of(&tenant()).list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner();
        assert_seeds(&listed.relationships);
        assert_eq!(listed.total_size, 7);
        assert!(listed.next_page_token.is_empty());
        let only_deleted = app.relationships_of(&tenant()).list_relationships(ListRelationshipsRequest { deleted_only: true, ..Default::default() }).await.unwrap().into_inner();
        assert!(only_deleted.relationships.is_empty() && only_deleted.total_size == 0);

        let t = tenant();
        let mut relationships = app.relationships_of(&t);
        let seeds = relationships.list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        let hot = seeds.iter().find(|r| r.code == "HOT").unwrap();
        let got = relationships.get_relationship(GetRelationshipRequest { id: hot.id.clone() }).await.unwrap().into_inner().relationship.unwrap();
        assert_eq!((&got.id, &got.code, &got.name, &got.etag), (&hot.id, &hot.code, &hot.name, &hot.etag));
        expect_code(relationships.get_relationship(GetRelationshipRequest { id: unknown_id() }).await, Code::NotFound);
        let other = app.relationships_of(&tenant()).list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        assert!(other.iter().all(|r| seeds.iter().all(|s| s.id != r.id)), "each tenant's seeds have ids of their own");

        let dry = app.relationships_of(&tenant()).apply_inactivity_rules(ApplyInactivityRulesRequest { dry_run: true, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(dry.move_count, 0);
        let mut watch = app.relationships_of(&tenant()).watch_relationship_changes(WatchRelationshipChangesRequest::default()).await.unwrap().into_inner();
        assert_eq!(opening_heartbeat(&mut watch, 0).await, 0, "a tenant never written has no change");
        let idle = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("a heartbeat in time").unwrap().unwrap();
        assert!(matches!(idle.event, Some(Event::Heartbeat(_))), "{idle:?}");
        drop(watch);

        let groups = app.groups_of(&tenant()).list_groups(ListGroupsRequest::default()).await.unwrap().into_inner();
        assert!(groups.groups.is_empty() && groups.total_size == 0);
        expect_code(app.groups_of(&tenant()).get_group(GetGroupRequest { id: unknown_id() }).await, Code::NotFound);
        let sources = app.sources_of(&tenant()).list_sources(ListSourcesRequest::default()).await.unwrap().into_inner();
        assert!(sources.sources.is_empty() && sources.total_size == 0);
        expect_code(app.sources_of(&tenant()).get_source(GetSourceRequest { id: unknown_id() }).await, Code::NotFound);
        let report = app.sources_of(&tenant()).get_source_report(GetSourceReportRequest::default()).await.unwrap().into_inner();
        assert_eq!(report.rows.len(), 1, "only the no-source row");
        for row in report.rows.iter().chain(report.total.as_ref()) {
            let codes: Vec<&str> = row.relationship_counts.iter().map(|c| c.code.as_str()).collect();
            assert_eq!(codes, SEEDED);
            assert!(row.relationship_counts.iter().all(|c| c.count == 0));
            assert_eq!((row.customers, row.closed_customers), (0, 0));
        }

        let bar = app.customers_of(&tenant()).count_customers_by_relationship(CountCustomersByRelationshipRequest::default()).await.unwrap().into_inner();
        assert_eq!((bar.total, bar.watch_from_sequence), (0, 0));
        let codes: Vec<&str> = bar.counts.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, SEEDED);
        assert!(bar.counts.iter().all(|c| c.count == 0));
        expect_code(app.customers_of(&tenant()).count_customers_by_relationship(CountCustomersByRelationshipRequest { group_id: unknown_id(), ..Default::default() }).await, Code::NotFound);
        let customers = app.customers_of(&tenant()).list_customers(ListCustomersRequest::default()).await.unwrap().into_inner();
        assert!(customers.customers.is_empty() && customers.total_size == 0 && customers.watch_from_sequence == 0);
        let mut customers = app.customers_of(&t);
        for order_by in ["", "name", "last_contact_time"] {
            for show_deleted in [false, true] {
                let request = ListCustomersRequest { relationship_id: hot.id.clone(), order_by: order_by.into(), show_deleted, ..Default::default() };
                let holders = customers.list_customers(request.clone()).await.unwrap().into_inner();
                assert!(holders.customers.is_empty() && holders.total_size == 0 && holders.watch_from_sequence == 0, "{order_by} {show_deleted}");
                let unknown = ListCustomersRequest { relationship_id: unknown_id(), ..request };
                expect_code(customers.list_customers(unknown).await, Code::NotFound);
            }
        }
        // Another tenant's seed is not one of this tenant's relationships.
        expect_code(customers.list_customers(ListCustomersRequest { relationship_id: other[0].id.clone(), ..Default::default() }).await, Code::NotFound);
        expect_code(app.customers_of(&tenant()).get_customer(GetCustomerRequest { id: unknown_id() }).await, Code::NotFound);
        expect_code(app.customers_of(&tenant()).list_contacts(ListContactsRequest { customer_id: unknown_id(), ..Default::default() }).await, Code::NotFound);
        expect_code(app.customers_of(&tenant()).list_relationship_history(ListRelationshipHistoryRequest { customer_id: unknown_id(), ..Default::default() }).await, Code::NotFound);

        let after = rows_of_tenants(&app, &prefix).await;
        assert_eq!(after, before, "reads of {fresh} tenants never written wrote nothing");
    }
}

on_both_databases! {
    async fn a_tenants_first_write_stores_the_relationships_its_reads_showed(app: TestApp) {
        let tenant = new_tenant();
        let mut relationships = app.relationships_of(&tenant);
        let before = relationships.list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        assert_seeds(&before);
        let first_page = relationships.list_relationships(ListRelationshipsRequest { page_size: 3, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(identities(&first_page.relationships), identities(&before[..3]));
        assert!(!first_page.next_page_token.is_empty());
        let lost = before.iter().find(|r| r.code == "LOST").unwrap();
        let got_before = relationships.get_relationship(GetRelationshipRequest { id: lost.id.clone() }).await.unwrap().into_inner().relationship.unwrap();
        assert!(rows_of_tenants(&app, &tenant).await.iter().all(|(_, n)| *n == 0), "still never written");

        let customer = create_customer(&mut app.customers_of(&tenant), named("Lan")).await;
        let default = before.iter().find(|r| r.is_default).unwrap();
        assert_eq!(customer.relationship_id, default.id, "the default shown before is the one given");

        let after = relationships.list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        assert_eq!(identities(&after), identities(&before));
        let got_after = relationships.get_relationship(GetRelationshipRequest { id: lost.id.clone() }).await.unwrap().into_inner().relationship.unwrap();
        assert_eq!((&got_after.code, &got_after.name, &got_after.etag, got_after.is_default), (&got_before.code, &got_before.name, &got_before.etag, got_before.is_default));
        let rest = relationships.list_relationships(ListRelationshipsRequest { page_size: 3, page_token: first_page.next_page_token, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(identities(&rest.relationships), identities(&before[3..6]), "a token from before the first write continues after it");
        assert_eq!(rest.total_size, 7);
        let held = after.iter().find(|r| r.id == default.id).unwrap();
        assert_eq!(held.customer_count, 1);
    }
}
