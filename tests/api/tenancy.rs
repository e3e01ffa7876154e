//! Tenants never see or touch each other's rows.

use crm_classify::pb::{
    CreateGroupRequest, CreateSourceRequest, DeleteGroupRequest, GetGroupRequest, GetSourceRequest,
    Group, ListGroupsRequest, ListRelationshipsRequest, Source, UpdateGroupRequest,
};
use tonic::Code;

use crate::helpers::{expect_code, new_tenant, violated_fields};
use crate::on_both_databases;

on_both_databases! {
    async fn two_tenants_never_see_each_others_rows(app: TestApp) {
        let (a, b) = (new_tenant(), new_tenant());
        let mut groups_a = app.groups_of(&a);
        let mut groups_b = app.groups_of(&b);
        let group = groups_a.create_group(CreateGroupRequest { group: Some(Group { name: "Chung".into(), ..Default::default() }), request_id: "same".into() }).await.unwrap().into_inner().group.unwrap();
        // The same name, code and request id are free in the other tenant.
        let other = groups_b.create_group(CreateGroupRequest { group: Some(Group { name: "Chung".into(), ..Default::default() }), request_id: "same".into() }).await.unwrap().into_inner().group.unwrap();
        assert_ne!(group.id, other.id);
        assert_eq!(group.code, other.code);

        expect_code(groups_b.get_group(GetGroupRequest { id: group.id.clone() }).await, Code::NotFound);
        expect_code(groups_b.update_group(UpdateGroupRequest { group: Some(Group { id: group.id.clone(), name: "Hijack".into(), ..Default::default() }), update_mask: None }).await, Code::NotFound);
        expect_code(groups_b.delete_group(DeleteGroupRequest { id: group.id.clone(), etag: String::new(), cascade: true }).await, Code::NotFound);
        expect_code(groups_b.create_group(CreateGroupRequest { group: Some(Group { name: "Child".into(), parent_id: group.id.clone(), ..Default::default() }), request_id: String::new() }).await, Code::NotFound);
        let listed = groups_b.list_groups(ListGroupsRequest::default()).await.unwrap().into_inner();
        assert_eq!(listed.groups.iter().map(|g| g.id.clone()).collect::<Vec<_>>(), vec![other.id.clone()]);
        let still = groups_a.get_group(GetGroupRequest { id: group.id.clone() }).await.unwrap().into_inner().group.unwrap();
        assert_eq!(still, group, "untouched by the other tenant");

        let source = app.sources_of(&a).create_source(CreateSourceRequest { source: Some(Source { name: "Web".into(), ..Default::default() }), request_id: String::new() }).await.unwrap().into_inner().source.unwrap();
        expect_code(app.sources_of(&b).get_source(GetSourceRequest { id: source.id }).await, Code::NotFound);

        let rels_a = app.relationships_of(&a).list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        let rels_b = app.relationships_of(&b).list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        assert!(rels_a.iter().all(|r| rels_b.iter().all(|s| s.id != r.id)), "each tenant has its own relationships");
    }

    async fn a_malformed_tenant_header_is_invalid_argument(app: TestApp) {
        let mut groups = app.groups_of("bad tenant!");
        let status = expect_code(groups.list_groups(ListGroupsRequest::default()).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["x-tenant-id"]);
    }
}

on_both_databases! {
    async fn another_tenants_sources_and_relationships_cannot_be_touched_or_referenced(app: TestApp) {
        use crm_classify::pb::{
            CreateRelationshipRequest, DeleteRelationshipRequest, DeleteSourceRequest, Relationship, RelationshipKind,
            RestoreRelationshipRequest, RestoreSourceRequest, UpdateRelationshipRequest, UpdateSourceRequest,
        };
        let (a, b) = (new_tenant(), new_tenant());
        let source = app.sources_of(&a).create_source(CreateSourceRequest { source: Some(Source { name: "Web".into(), ..Default::default() }), request_id: String::new() }).await.unwrap().into_inner().source.unwrap();
        let mut sources_b = app.sources_of(&b);
        expect_code(sources_b.update_source(UpdateSourceRequest { source: Some(Source { id: source.id.clone(), name: "X".into(), ..Default::default() }), update_mask: None }).await, Code::NotFound);
        expect_code(sources_b.delete_source(DeleteSourceRequest { id: source.id.clone(), etag: String::new() }).await, Code::NotFound);
        expect_code(sources_b.restore_source(RestoreSourceRequest { id: source.id.clone(), etag: String::new() }).await, Code::NotFound);

        let rels_a = app.relationships_of(&a).list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        let lost_a = rels_a.iter().find(|r| r.code == "LOST").unwrap();
        let mut rels_b = app.relationships_of(&b);
        expect_code(rels_b.update_relationship(UpdateRelationshipRequest { relationship: Some(Relationship { id: lost_a.id.clone(), name: "X".into(), ..Default::default() }), update_mask: None }).await, Code::NotFound);
        expect_code(rels_b.delete_relationship(DeleteRelationshipRequest { id: lost_a.id.clone(), etag: String::new(), reassign_to_id: String::new() }).await, Code::NotFound);
        expect_code(rels_b.restore_relationship(RestoreRelationshipRequest { id: lost_a.id.clone(), etag: String::new() }).await, Code::NotFound);
        // Tenant A's ids are unknown in tenant B as references too.
        expect_code(rels_b.create_relationship(CreateRelationshipRequest {
            relationship: Some(Relationship { name: "Nguội".into(), kind: RelationshipKind::AutomaticInactivity.into(), inactivity_days: 10, exempt_relationship_ids: vec![lost_a.id.clone()], ..Default::default() }),
            request_id: String::new(),
        }).await, Code::NotFound);
        let rels_b_list = rels_b.list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        let hot_b = rels_b_list.iter().find(|r| r.code == "HOT").unwrap();
        expect_code(rels_b.delete_relationship(DeleteRelationshipRequest { id: hot_b.id.clone(), etag: String::new(), reassign_to_id: lost_a.id.clone() }).await, Code::NotFound);
        let unchanged = app.relationships_of(&a).list_relationships(ListRelationshipsRequest::default()).await.unwrap().into_inner().relationships;
        assert_eq!(&unchanged, &rels_a);
    }
}
