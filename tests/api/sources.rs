//! SourceService: codes, tenant-wide names, soft delete and restore, masks,
//! idempotency and paging.

use std::collections::HashSet;

use crm_classify::pb::{
    CreateSourceRequest, DeleteSourceRequest, GetSourceRequest, ListSourcesRequest,
    RestoreSourceRequest, Source, UpdateSourceRequest,
};
use prost_types::FieldMask;
use tonic::Code;

use crate::fixtures::Sources;
use crate::helpers::{expect_code, violated_fields};
use crate::on_both_databases;

fn named(name: &str) -> Source {
    Source {
        name: name.to_owned(),
        ..Default::default()
    }
}

async fn create(client: &mut Sources, source: Source) -> Result<Source, tonic::Status> {
    client
        .create_source(CreateSourceRequest {
            source: Some(source),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner().source.expect("source"))
}

fn target(id: &str) -> (String, String) {
    (id.to_owned(), String::new())
}

on_both_databases! {
    async fn sources_get_codes_and_tenant_wide_unique_names(app: TestApp) {
        let mut sources = app.sources();
        let web = create(&mut sources, named("Website công ty")).await.unwrap();
        assert_eq!(web.code, "WEBSITE_CONG_TY");
        assert_eq!(web.name, "Website công ty");
        let referral = create(&mut sources, Source { code: "REF".into(), description: "Giới thiệu".into(), ..named("Giới thiệu") }).await.unwrap();
        assert_eq!((referral.code.as_str(), referral.description.as_str()), ("REF", "Giới thiệu"));
        let status = create(&mut sources, named("WEBSITE CÔNG TY")).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(status.message().contains(&web.id));
        let status = create(&mut sources, Source { code: "REF".into(), ..named("Other") }).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
        let clash = create(&mut sources, named("Website, công ty!")).await.unwrap();
        assert_eq!(clash.code, "WEBSITE_CONG_TY_2");
        let status = create(&mut sources, Source { name: String::new(), code: "bad!".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["source.code", "source.name"]);
    }

    async fn deleting_and_restoring_sources_follows_the_soft_delete_rules(app: TestApp) {
        let mut sources = app.sources();
        let fair = create(&mut sources, named("Hội chợ")).await.unwrap();
        let (id, etag) = target(&fair.id);
        let deleted = sources.delete_source(DeleteSourceRequest { id: id.clone(), etag: etag.clone() }).await.unwrap().into_inner().source.unwrap();
        assert!(deleted.delete_time.is_some());
        expect_code(sources.delete_source(DeleteSourceRequest { id: id.clone(), etag: etag.clone() }).await, Code::FailedPrecondition);
        let got = sources.get_source(GetSourceRequest { id: id.clone() }).await.unwrap().into_inner().source.unwrap();
        assert!(got.delete_time.is_some(), "Get returns deleted sources");
        let listed = sources.list_sources(ListSourcesRequest::default()).await.unwrap().into_inner();
        assert_eq!(listed.total_size, 0);
        let disabled = sources.list_sources(ListSourcesRequest { deleted_only: true, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(disabled.sources.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![id.clone()]);
        let status = expect_code(sources.update_source(UpdateSourceRequest { source: Some(Source { id: id.clone(), name: "X".into(), ..Default::default() }), update_mask: None }).await, Code::FailedPrecondition);
        assert!(status.message().contains("restore"));

        // The freed name can be taken; then the restore clashes.
        let newer = create(&mut sources, named("hội chợ")).await.unwrap();
        expect_code(sources.restore_source(RestoreSourceRequest { id: id.clone(), etag: String::new() }).await, Code::AlreadyExists);
        sources.delete_source(DeleteSourceRequest { id: newer.id.clone(), etag: String::new() }).await.unwrap();
        expect_code(sources.restore_source(RestoreSourceRequest { id: id.clone(), etag: deleted.etag.clone() + "x" }).await, Code::Aborted);
        let restored = sources.restore_source(RestoreSourceRequest { id: id.clone(), etag: deleted.etag.clone() }).await.unwrap().into_inner().source.unwrap();
        assert!(restored.delete_time.is_none());
        expect_code(sources.restore_source(RestoreSourceRequest { id, etag: String::new() }).await, Code::FailedPrecondition);
    }

    async fn updating_a_source_respects_masks_and_etags(app: TestApp) {
        let mut sources = app.sources();
        let ads = create(&mut sources, Source { description: "Quảng cáo".into(), ..named("Facebook Ads") }).await.unwrap();
        let renamed = sources.update_source(UpdateSourceRequest {
            source: Some(Source { id: ads.id.clone(), name: "Facebook Quảng cáo".into(), code: "FB_ADS".into(), etag: ads.etag.clone(), ..Default::default() }),
            update_mask: Some(FieldMask { paths: vec!["name".into()] }),
        }).await.unwrap().into_inner().source.unwrap();
        assert_eq!((renamed.name.as_str(), renamed.code.as_str(), renamed.description.as_str()), ("Facebook Quảng cáo", "FACEBOOK_ADS", "Quảng cáo"));
        expect_code(sources.update_source(UpdateSourceRequest {
            source: Some(Source { id: ads.id.clone(), code: "X".into(), etag: ads.etag.clone(), ..Default::default() }),
            update_mask: None,
        }).await, Code::Aborted);
        let status = expect_code(sources.update_source(UpdateSourceRequest {
            source: Some(Source { id: ads.id.clone(), ..Default::default() }),
            update_mask: Some(FieldMask { paths: vec!["id".into(), "parent_id".into()] }),
        }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["update_mask", "update_mask"]);
        let coded = sources.update_source(UpdateSourceRequest {
            source: Some(Source { id: ads.id.clone(), code: "FB".into(), ..Default::default() }),
            update_mask: None,
        }).await.unwrap().into_inner().source.unwrap();
        assert_eq!(coded.code, "FB");
    }

    async fn a_repeated_source_request_id_creates_once(app: TestApp) {
        let mut sources = app.sources();
        let request = CreateSourceRequest { source: Some(named("Zalo")), request_id: "7b0c2f0e".into() };
        let first = sources.create_source(request.clone()).await.unwrap().into_inner().source.unwrap();
        let second = sources.create_source(request).await.unwrap().into_inner().source.unwrap();
        assert_eq!(first, second);
        let status = expect_code(sources.create_source(CreateSourceRequest { source: Some(named("Zalo")), request_id: "x".repeat(129) }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["request_id"]);
    }

    async fn sources_page_in_name_order(app: TestApp) {
        let mut sources = app.sources();
        for name in ["Điện thoại", "Email", "Website", "Bạn bè", "Zalo", "Ads", "Khác"] {
            create(&mut sources, named(name)).await.unwrap();
        }
        let mut names = Vec::new();
        let mut token = String::new();
        loop {
            let page = sources.list_sources(ListSourcesRequest { page_size: 2, page_token: token, ..Default::default() }).await.unwrap().into_inner();
            assert_eq!(page.total_size, 7);
            names.extend(page.sources.into_iter().map(|s| s.name));
            if page.next_page_token.is_empty() { break; }
            token = page.next_page_token;
        }
        assert_eq!(names.len(), 7);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 7);
        let mut sorted = names.clone();
        sorted.sort_by_key(|n| deunicode::deunicode(n).to_lowercase());
        assert_eq!(names, sorted, "ordered by name");
    }
}

on_both_databases! {
    async fn show_deleted_lists_both_and_tokens_stay_with_their_list(app: TestApp) {
        let mut sources = app.sources();
        let mut ids = Vec::new();
        for name in ["A", "B", "C"] {
            ids.push(create(&mut sources, named(name)).await.unwrap().id);
        }
        sources.delete_source(DeleteSourceRequest { id: ids[1].clone(), etag: String::new() }).await.unwrap();
        let all = sources.list_sources(ListSourcesRequest { show_deleted: true, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(all.total_size, 3);
        assert_eq!(all.sources.iter().filter(|s| s.delete_time.is_some()).count(), 1);

        let page = sources.list_sources(ListSourcesRequest { page_size: 1, ..Default::default() }).await.unwrap().into_inner();
        let mut tampered = page.next_page_token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last / 2] = if tampered[last / 2] == b'x' { b'y' } else { b'x' };
        let status = expect_code(sources.list_sources(ListSourcesRequest { page_size: 1, page_token: String::from_utf8(tampered).unwrap(), ..Default::default() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["page_token"]);

        // Tokens of other List calls with the same (empty) filters are refused.
        let relationships = app.relationships().list_relationships(crm_classify::pb::ListRelationshipsRequest { page_size: 2, ..Default::default() }).await.unwrap().into_inner();
        let status = expect_code(sources.list_sources(ListSourcesRequest { page_size: 2, page_token: relationships.next_page_token.clone(), ..Default::default() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["page_token"]);
        let status = expect_code(app.groups().list_groups(crm_classify::pb::ListGroupsRequest { page_size: 2, page_token: relationships.next_page_token, ..Default::default() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["page_token"]);
        let status = expect_code(app.relationships().list_relationships(crm_classify::pb::ListRelationshipsRequest { page_size: 1, page_token: page.next_page_token, ..Default::default() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["page_token"]);
    }

    async fn concurrent_source_creates_keep_names_and_codes_unique(app: TestApp) {
        let results = crate::helpers::concurrently(40, |i| {
            let mut client = app.sources();
            // Twenty distinct names sharing the code ZALO, each sent twice.
            async move { create(&mut client, named(&format!("Zalo{}", "-".repeat(i % 20)))).await }
        }).await;
        let mut codes = HashSet::new();
        let mut names = HashSet::new();
        for result in results {
            match result {
                Ok(source) => {
                    assert!(codes.insert(source.code.clone()), "duplicate code {}", source.code);
                    assert!(names.insert(source.name.clone()), "duplicate name {}", source.name);
                }
                Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            }
        }
        assert_eq!(names.len(), 20, "each distinct name created once");
    }
}
