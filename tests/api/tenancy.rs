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
