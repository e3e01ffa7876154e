//! RelationshipService: the seeded set, the default, the order, the
//! automatic kind's settings and the delete rules.

use crm_classify::{
    domain::relationship::SeedLocale,
    pb::{
        CountCustomersByRelationshipRequest, CreateRelationshipRequest, Customer,
        DeleteCustomerRequest, DeleteRelationshipRequest, GetRelationshipRequest,
        ListRelationshipsRequest, Relationship, RelationshipChangeCause, RelationshipKind,
        RestoreRelationshipRequest, UpdateRelationshipRequest,
    },
};
use tonic::Code;

use crate::fixtures::{
    Relationships, SEEDED, by_code, count, create_customer, get_customer, history, mask, named,
    relationships,
};
use crate::helpers::{
    Backend, Options, TestApp, at_most, concurrently, expect_code, new_tenant, violated_fields,
};
use crate::on_both_databases;

fn codes(list: &[Relationship]) -> Vec<&str> {
    list.iter().map(|r| r.code.as_str()).collect()
}

async fn create(
    client: &mut Relationships,
    relationship: Relationship,
) -> Result<Relationship, tonic::Status> {
    client
        .create_relationship(CreateRelationshipRequest {
            relationship: Some(relationship),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner().relationship.expect("relationship"))
}

async fn update(
    client: &mut Relationships,
    relationship: Relationship,
    paths: &[&str],
) -> Result<Relationship, tonic::Status> {
    client
        .update_relationship(UpdateRelationshipRequest {
            relationship: Some(relationship),
            update_mask: mask(paths),
        })
        .await
        .map(|r| r.into_inner().relationship.expect("relationship"))
}

async fn delete(
    client: &mut Relationships,
    id: &str,
    reassign_to_id: &str,
) -> Result<Relationship, tonic::Status> {
    client
        .delete_relationship(DeleteRelationshipRequest {
            id: id.to_owned(),
            etag: String::new(),
            reassign_to_id: reassign_to_id.to_owned(),
        })
        .await
        .map(|r| r.into_inner().relationship.expect("relationship"))
}

fn manual(name: &str) -> Relationship {
    Relationship {
        name: name.to_owned(),
        ..Default::default()
    }
}

on_both_databases! {
    async fn a_new_tenant_starts_with_the_seeded_relationships_in_order(app: TestApp) {
        let seeded = relationships(&mut app.relationships()).await;
        assert_eq!(codes(&seeded), SEEDED);
        assert_eq!(seeded.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["New", "Approached", "Hot", "Potential", "Lost", "Closed", "Don't Forget"]);
        assert_eq!(seeded.iter().map(|r| r.position).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(seeded.iter().filter(|r| r.is_default).map(|r| r.code.as_str()).collect::<Vec<_>>(), ["NEW"]);
        let dont_forget = by_code(&seeded, "DONT_FORGET");
        assert_eq!(dont_forget.kind(), RelationshipKind::AutomaticInactivity);
        assert_eq!(dont_forget.inactivity_days, 30);
        assert!(seeded[..6].iter().all(|r| r.kind() == RelationshipKind::Manual && r.inactivity_days == 0));
        assert!(seeded.iter().all(|r| r.color.starts_with('#')));
    }

    async fn concurrent_first_requests_seed_a_tenant_exactly_once(app: TestApp) {
        let tenant = new_tenant();
        let results = concurrently(20, |_| {
            let mut client = app.relationships_of(&tenant);
            async move { client.list_relationships(ListRelationshipsRequest::default()).await }
        }).await;
        for result in results {
            let page = result.expect("every first request succeeds").into_inner();
            assert_eq!(page.total_size, 7);
        }
        assert_eq!(codes(&relationships(&mut app.relationships_of(&tenant)).await), SEEDED);
    }

    async fn making_another_relationship_default_unsets_the_old_one(app: TestApp) {
        let mut client = app.relationships();
        let seeded = relationships(&mut client).await;
        let hot = by_code(&seeded, "HOT");
        let made = update(&mut client, Relationship { id: hot.id.clone(), is_default: true, ..Default::default() }, &["is_default"]).await.unwrap();
        assert!(made.is_default);
        let after = relationships(&mut client).await;
        assert_eq!(after.iter().filter(|r| r.is_default).map(|r| r.code.as_str()).collect::<Vec<_>>(), ["HOT"]);
        assert_ne!(by_code(&after, "NEW").etag, by_code(&seeded, "NEW").etag, "the old default changed, so did its etag");

        let status = delete(&mut client, &hot.id, "").await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("default"));
        let status = update(&mut client, Relationship { id: hot.id.clone(), is_default: false, ..Default::default() }, &["is_default"]).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let automatic = by_code(&seeded, "DONT_FORGET");
        let status = update(&mut client, Relationship { id: automatic.id.clone(), is_default: true, ..Default::default() }, &["is_default"]).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.is_default"]);

        let created = create(&mut client, Relationship { is_default: true, ..manual("Khách quen") }).await.unwrap();
        assert!(created.is_default);
        let after = relationships(&mut client).await;
        assert_eq!(after.iter().filter(|r| r.is_default).count(), 1);
        assert_eq!(created.code, "KHACH_QUEN");
    }

    async fn positions_stay_contiguous_through_create_move_delete_and_restore(app: TestApp) {
        let mut client = app.relationships();
        let appended = create(&mut client, manual("Trung thành")).await.unwrap();
        assert_eq!(appended.position, 8);
        let inserted = create(&mut client, Relationship { position: 2, ..manual("Đã gọi") }).await.unwrap();
        assert_eq!(inserted.position, 2);
        let order = relationships(&mut client).await;
        assert_eq!(codes(&order), ["NEW", "DA_GOI", "APPROACHED", "HOT", "POTENTIAL", "LOST", "CLOSED", "DONT_FORGET", "TRUNG_THANH"]);
        assert_eq!(order.iter().map(|r| r.position).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());

        let hot = by_code(&order, "HOT").clone();
        update(&mut client, Relationship { id: hot.id.clone(), position: 1, ..Default::default() }, &["position"]).await.unwrap();
        let order = relationships(&mut client).await;
        assert_eq!(codes(&order)[..3], ["HOT", "NEW", "DA_GOI"]);
        update(&mut client, Relationship { id: hot.id.clone(), position: 99, ..Default::default() }, &["position"]).await.unwrap();
        assert_eq!(codes(&relationships(&mut client).await).last(), Some(&"HOT"));

        delete(&mut client, &inserted.id, "").await.unwrap();
        let order = relationships(&mut client).await;
        assert_eq!(order.iter().map(|r| r.position).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
        let restored = client.restore_relationship(RestoreRelationshipRequest { id: inserted.id.clone(), etag: String::new() }).await.unwrap().into_inner().relationship.unwrap();
        assert_eq!(restored.position, 9, "a restored relationship goes to the end");
        let status = update(&mut client, Relationship { id: hot.id, position: -1, ..Default::default() }, &["position"]).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.position"]);
    }

    async fn automatic_settings_must_agree_with_the_kind(app: TestApp) {
        let mut client = app.relationships();
        let seeded = relationships(&mut client).await;
        let status = create(&mut client, Relationship { inactivity_days: 10, restore_on_contact: true, ..manual("Sai") }).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.inactivity_days", "relationship.restore_on_contact"]);
        let status = create(&mut client, Relationship { kind: RelationshipKind::AutomaticInactivity.into(), ..manual("Ngủ đông") }).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.inactivity_days"]);
        let status = create(&mut client, Relationship { kind: 9, ..manual("Lạ") }).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.kind"]);

        let closed = by_code(&seeded, "CLOSED");
        let dont_forget = by_code(&seeded, "DONT_FORGET");
        let dormant = create(&mut client, Relationship {
            kind: RelationshipKind::AutomaticInactivity.into(),
            inactivity_days: 90,
            restore_on_contact: true,
            exempt_relationship_ids: vec![closed.id.clone(), closed.id.clone()],
            ..manual("Ngủ đông")
        }).await.unwrap();
        assert_eq!(dormant.exempt_relationship_ids, vec![closed.id.clone()], "repeats are dropped");
        assert!(dormant.restore_on_contact);

        let status = update(&mut client, Relationship { id: dormant.id.clone(), exempt_relationship_ids: vec![dont_forget.id.clone()], ..Default::default() }, &["exempt_relationship_ids"]).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.exempt_relationship_ids[0]"]);
        let unknown = uuid::Uuid::now_v7().to_string();
        let status = update(&mut client, Relationship { id: dormant.id.clone(), exempt_relationship_ids: vec![unknown], ..Default::default() }, &["exempt_relationship_ids"]).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let status = update(&mut client, Relationship { id: dormant.id.clone(), kind: RelationshipKind::Manual.into(), ..Default::default() }, &["kind"]).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["update_mask"]);
        let status = update(&mut client, Relationship { id: closed.id.clone(), inactivity_days: 5, ..Default::default() }, &["inactivity_days"]).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.inactivity_days"]);
        let changed = update(&mut client, Relationship { id: dormant.id.clone(), inactivity_days: 60, exempt_relationship_ids: vec![], ..Default::default() }, &["inactivity_days", "exempt_relationship_ids"]).await.unwrap();
        assert_eq!((changed.inactivity_days, changed.exempt_relationship_ids.len()), (60, 0));
        let got = client.get_relationship(GetRelationshipRequest { id: dormant.id.clone() }).await.unwrap().into_inner().relationship.unwrap();
        assert_eq!(got, changed);
    }

    async fn deleting_a_relationship_checks_its_reassignment_target(app: TestApp) {
        let mut client = app.relationships();
        let seeded = relationships(&mut client).await;
        let lost = by_code(&seeded, "LOST");
        let status = delete(&mut client, &lost.id, &by_code(&seeded, "DONT_FORGET").id).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["reassign_to_id"]);
        let status = delete(&mut client, &lost.id, &lost.id).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["reassign_to_id"]);
        let status = delete(&mut client, &lost.id, &uuid::Uuid::now_v7().to_string()).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let closed = by_code(&seeded, "CLOSED");
        delete(&mut client, &closed.id, "").await.unwrap();
        let status = delete(&mut client, &lost.id, &closed.id).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "a deleted relationship cannot be assigned");
        let deleted = client.delete_relationship(DeleteRelationshipRequest { id: lost.id.clone(), etag: lost.etag.clone(), reassign_to_id: by_code(&seeded, "NEW").id.clone() }).await.unwrap().into_inner();
        assert_eq!(deleted.reassigned_customer_count, 0);
        assert!(deleted.relationship.unwrap().delete_time.is_some());
        expect_code(client.delete_relationship(DeleteRelationshipRequest { id: lost.id.clone(), etag: String::new(), reassign_to_id: String::new() }).await, Code::FailedPrecondition);
        let disabled = client.list_relationships(ListRelationshipsRequest { deleted_only: true, ..Default::default() }).await.unwrap().into_inner();
        let mut disabled_codes = codes(&disabled.relationships);
        disabled_codes.sort();
        assert_eq!(disabled_codes, ["CLOSED", "LOST"]);
    }

    async fn a_repeated_relationship_request_id_creates_once(app: TestApp) {
        let mut client = app.relationships();
        let request = CreateRelationshipRequest { relationship: Some(manual("VIP")), request_id: "abc".into() };
        let first = client.create_relationship(request.clone()).await.unwrap().into_inner().relationship.unwrap();
        let second = client.create_relationship(request).await.unwrap().into_inner().relationship.unwrap();
        assert_eq!(first.id, second.id);
        assert_eq!(relationships(&mut client).await.len(), 8);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vietnamese_seed_option_names_the_relationships_in_vietnamese() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options {
            seed_locale: SeedLocale::Vi,
            ..Options::default()
        },
    )
    .await
    .expect("sqlite");
    let seeded = relationships(&mut app.relationships()).await;
    assert_eq!(
        seeded.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        [
            "Mới",
            "Tiếp cận",
            "Nóng",
            "Tiềm năng",
            "Mất",
            "Chốt",
            "Đừng quên"
        ]
    );
    assert_eq!(
        codes(&seeded),
        SEEDED,
        "codes stay the same in every language"
    );
}

on_both_databases! {
    async fn relationship_names_codes_and_etags_follow_the_catalog_rules(app: TestApp) {
        let mut client = app.relationships();
        let seeded = relationships(&mut client).await;
        let hot = by_code(&seeded, "HOT").clone();
        let status = create(&mut client, manual("HOT")).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "names clash case-insensitively");
        assert!(status.message().contains(&hot.id));
        let status = create(&mut client, Relationship { code: "LOST".into(), ..manual("Thua") }).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
        let suffixed = create(&mut client, manual("Hot!")).await.unwrap();
        assert_eq!(suffixed.code, "HOT_2");
        let status = update(&mut client, Relationship { id: suffixed.id.clone(), name: "hot".into(), ..Default::default() }, &["name"]).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);

        let renamed = update(&mut client, Relationship { id: hot.id.clone(), name: "Rất nóng".into(), etag: hot.etag.clone(), ..Default::default() }, &["name"]).await.unwrap();
        let status = update(&mut client, Relationship { id: hot.id.clone(), color: "#000000".into(), etag: hot.etag.clone(), ..Default::default() }, &["color"]).await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        expect_code(client.delete_relationship(DeleteRelationshipRequest { id: hot.id.clone(), etag: hot.etag.clone(), reassign_to_id: String::new() }).await, Code::Aborted);
        let deleted = client.delete_relationship(DeleteRelationshipRequest { id: hot.id.clone(), etag: renamed.etag.clone(), reassign_to_id: String::new() }).await.unwrap().into_inner().relationship.unwrap();
        expect_code(client.restore_relationship(RestoreRelationshipRequest { id: hot.id.clone(), etag: renamed.etag.clone() }).await, Code::Aborted);
        let status = update(&mut client, Relationship { id: hot.id.clone(), name: "X".into(), ..Default::default() }, &["name"]).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "a deleted relationship cannot be changed");

        // Its name is free while it is deleted; taking it blocks the restore.
        let taker = create(&mut client, manual("rất nóng")).await.unwrap();
        expect_code(client.restore_relationship(RestoreRelationshipRequest { id: hot.id.clone(), etag: deleted.etag.clone() }).await, Code::AlreadyExists);
        delete(&mut client, &taker.id, "").await.unwrap();
        client.restore_relationship(RestoreRelationshipRequest { id: hot.id.clone(), etag: deleted.etag.clone() }).await.unwrap();
        expect_code(client.restore_relationship(RestoreRelationshipRequest { id: hot.id.clone(), etag: String::new() }).await, Code::FailedPrecondition);

        let status = update(&mut client, Relationship { id: hot.id.clone(), ..Default::default() }, &["colour"]).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["update_mask"]);
        let status = update(&mut client, Relationship { id: hot.id.clone(), color: "hot pink".into(), ..Default::default() }, &["color"]).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["relationship.color"]);
    }

    async fn deleted_relationships_cannot_be_exempted_and_show_deleted_lists_them(app: TestApp) {
        let mut client = app.relationships();
        let seeded = relationships(&mut client).await;
        let potential = by_code(&seeded, "POTENTIAL");
        delete(&mut client, &potential.id, "").await.unwrap();
        let status = create(&mut client, Relationship {
            kind: RelationshipKind::AutomaticInactivity.into(),
            inactivity_days: 45,
            exempt_relationship_ids: vec![potential.id.clone()],
            ..manual("Nguội")
        }).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let all = client.list_relationships(ListRelationshipsRequest { show_deleted: true, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(all.total_size, 7);
        assert_eq!(all.relationships.iter().filter(|r| r.delete_time.is_some()).count(), 1);

        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = client.list_relationships(ListRelationshipsRequest { page_size: 4, page_token: token, ..Default::default() }).await.unwrap().into_inner();
            seen.extend(page.relationships.into_iter().map(|r| r.code));
            if page.next_page_token.is_empty() { break; }
            token = page.next_page_token;
        }
        assert_eq!(seen, ["NEW", "APPROACHED", "HOT", "LOST", "CLOSED", "DONT_FORGET"]);
    }
}

on_both_databases! {
    async fn deleting_a_relationship_moves_its_deleted_holders_too(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let (hot, closed) = (by_code(&rels, "HOT").id.clone(), by_code(&rels, "CLOSED").id.clone());
        let mut customers = app.customers();
        let active = create_customer(&mut customers, Customer { relationship_id: hot.clone(), ..named("Active holder") }).await;
        let gone = create_customer(&mut customers, Customer { relationship_id: hot.clone(), ..named("Deleted holder") }).await;
        customers.delete_customer(DeleteCustomerRequest { id: gone.id.clone(), etag: String::new() }).await.expect("delete customer");

        let deleted = app.relationships()
            .delete_relationship(DeleteRelationshipRequest { id: hot.clone(), etag: String::new(), reassign_to_id: closed.clone() })
            .await
            .expect("delete the relationship")
            .into_inner();
        assert_eq!(deleted.reassigned_customer_count, 2, "the deleted holder moves too");
        for id in [&active.id, &gone.id] {
            assert_eq!(get_customer(&mut customers, id).await.relationship_id, closed);
        }
        assert!(get_customer(&mut customers, &gone.id).await.delete_time.is_some(), "still deleted");
        let bar = count(&mut customers, CountCustomersByRelationshipRequest::default()).await;
        let closed_count = bar.counts.iter().find(|c| c.relationship_id == closed).map(|c| c.count);
        assert_eq!(closed_count, Some(1), "deleted customers are not counted");
    }

    async fn deleting_a_relationship_held_by_thousands_reassigns_every_one(app: TestApp) {
        // More holders than one statement could log (nine values a change).
        const HOLDERS: usize = 4_000;
        let rels = relationships(&mut app.relationships()).await;
        let (hot, closed) = (by_code(&rels, "HOT").id.clone(), by_code(&rels, "CLOSED").id.clone());
        let created = at_most(32, HOLDERS, |i| {
            let mut client = app.customers();
            let hot = hot.clone();
            async move {
                let customer = Customer { relationship_id: hot, ..named(&format!("Holder {i}")) };
                create_customer(&mut client, customer).await.id
            }
        })
        .await;
        assert_eq!(created.len(), HOLDERS);

        let deleted = app
            .relationships()
            .delete_relationship(DeleteRelationshipRequest { id: hot.clone(), etag: String::new(), reassign_to_id: closed.clone() })
            .await
            .expect("delete a relationship with thousands of holders")
            .into_inner();
        assert_eq!(deleted.reassigned_customer_count, HOLDERS as i64);

        let bar = count(&mut app.customers(), CountCustomersByRelationshipRequest::default()).await;
        let of = |id: &str| bar.counts.iter().find(|c| c.relationship_id == id).map(|c| c.count);
        assert_eq!(of(&closed), Some(HOLDERS as i64));
        assert_eq!(of(&hot), None, "a deleted relationship leaves the summary bar");
        for id in [&created[0], &created[HOLDERS - 1]] {
            let last = history(&mut app.customers(), id).await.pop().expect("a history row");
            assert_eq!(last.cause, RelationshipChangeCause::RelationshipDeleted as i32);
            assert_eq!((last.old_relationship_id.as_str(), last.new_relationship_id.as_str()), (hot.as_str(), closed.as_str()));
        }
    }
}
