//! GroupService: codes, names, the tree, soft delete, etags, idempotency,
//! masks, paging and concurrency.

use std::collections::HashSet;

use crm_classify::pb::{
    CreateGroupRequest, DeleteGroupRequest, GetGroupRequest, Group, ListGroupsRequest,
    RestoreGroupRequest, UpdateGroupRequest,
};
use tonic::Code;

use crate::fixtures::{Groups, create_group, get_group, mask};
use crate::helpers::{concurrently, expect_code, violated_fields};
use crate::on_both_databases;

fn named(name: &str) -> Group {
    Group {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn under(name: &str, parent: &Group) -> Group {
    Group {
        name: name.to_owned(),
        parent_id: parent.id.clone(),
        ..Default::default()
    }
}

async fn move_group(
    client: &mut Groups,
    id: &str,
    parent_id: &str,
) -> Result<Group, tonic::Status> {
    client
        .update_group(UpdateGroupRequest {
            group: Some(Group {
                id: id.to_owned(),
                parent_id: parent_id.to_owned(),
                ..Default::default()
            }),
            update_mask: mask(&["parent_id"]),
        })
        .await
        .map(|r| r.into_inner().group.expect("group"))
}

async fn delete(
    client: &mut Groups,
    id: &str,
    cascade: bool,
) -> Result<Vec<String>, tonic::Status> {
    client
        .delete_group(DeleteGroupRequest {
            id: id.to_owned(),
            etag: String::new(),
            cascade,
        })
        .await
        .map(|r| r.into_inner().cascaded_group_ids)
}

async fn list_all(client: &mut Groups, request: ListGroupsRequest) -> Vec<Group> {
    client
        .list_groups(request)
        .await
        .expect("list")
        .into_inner()
        .groups
}

on_both_databases! {
    async fn codes_are_transliterated_from_names_and_clashes_get_a_suffix(app: TestApp) {
        let mut groups = app.groups();
        let vip = create_group(&mut groups, named("Khách hàng VIP")).await;
        assert_eq!(vip.code, "KHACH_HANG_VIP");
        assert_eq!(vip.name, "Khách hàng VIP", "Vietnamese text round-trips exactly");
        assert_eq!(create_group(&mut groups, named("Đà Nẵng")).await.code, "DA_NANG");
        let parent = create_group(&mut groups, named("Miền Trung")).await;
        let clash = create_group(&mut groups, under("Khach hang  VIP!", &parent)).await;
        assert_eq!(clash.code, "KHACH_HANG_VIP_2");
        let third = create_group(&mut groups, under("khách-hàng vip", &vip)).await;
        assert_eq!(third.code, "KHACH_HANG_VIP_3");
        assert!(!vip.etag.is_empty() && vip.create_time.is_some() && vip.delete_time.is_none());
        uuid::Uuid::parse_str(&vip.id).expect("ids are UUIDs");
    }

    async fn a_given_code_is_validated_and_must_be_unique(app: TestApp) {
        let mut groups = app.groups();
        let first = create_group(&mut groups, Group { code: "VIP".into(), ..named("First") }).await;
        assert_eq!(first.code, "VIP");
        let status = expect_code(
            groups.create_group(CreateGroupRequest { group: Some(Group { code: "VIP".into(), ..named("Second") }), request_id: String::new() }).await,
            Code::AlreadyExists,
        );
        assert!(status.message().contains(&first.id), "names the existing group: {}", status.message());
        let status = expect_code(
            groups.create_group(CreateGroupRequest { group: Some(Group { code: "vip lower".into(), ..named("Third") }), request_id: String::new() }).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["group.code"]);
    }

    async fn bad_input_names_every_offending_field_and_writes_nothing(app: TestApp) {
        let mut groups = app.groups();
        let status = expect_code(
            groups.create_group(CreateGroupRequest {
                group: Some(Group { name: "   ".into(), description: "x".repeat(2001), parent_id: "nope".into(), ..Default::default() }),
                request_id: String::new(),
            }).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["group.name", "group.description", "group.parent_id"]);
        let status = expect_code(groups.create_group(CreateGroupRequest::default()).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["group"]);
        let status = expect_code(groups.create_group(CreateGroupRequest { group: Some(named(&"ạ".repeat(201))), request_id: String::new() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["group.name"]);
        let listed = groups.list_groups(ListGroupsRequest { show_deleted: true, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(listed.total_size, 0);
    }

    async fn names_are_unique_among_active_siblings_ignoring_case(app: TestApp) {
        let mut groups = app.groups();
        let north = create_group(&mut groups, named("Miền Bắc")).await;
        let south = create_group(&mut groups, named("Miền Nam")).await;
        let hanoi = create_group(&mut groups, under("Hà Nội", &north)).await;
        // Same name under another parent is fine.
        create_group(&mut groups, under("Hà Nội", &south)).await;
        let status = expect_code(
            groups.create_group(CreateGroupRequest { group: Some(under("HÀ NỘI", &north)), request_id: String::new() }).await,
            Code::AlreadyExists,
        );
        assert!(status.message().contains(&hanoi.id));
        expect_code(
            groups.create_group(CreateGroupRequest { group: Some(named("miền bắc")), request_id: String::new() }).await,
            Code::AlreadyExists,
        );
        // Renaming into a sibling's name clashes too; a deleted sibling frees its name.
        let other = create_group(&mut groups, under("Hải Phòng", &north)).await;
        let rename = |id: &str, name: &str| UpdateGroupRequest {
            group: Some(Group { id: id.to_owned(), name: name.to_owned(), ..Default::default() }),
            update_mask: mask(&["name"]),
        };
        expect_code(groups.update_group(rename(&other.id, "hà nội")).await, Code::AlreadyExists);
        delete(&mut groups, &hanoi.id, false).await.unwrap();
        let renamed = groups.update_group(rename(&other.id, "hà nội")).await.unwrap().into_inner().group.unwrap();
        assert_eq!(renamed.name, "hà nội");
        // And now the deleted one cannot come back under the same name.
        expect_code(groups.restore_group(RestoreGroupRequest { id: hanoi.id.clone(), etag: String::new() }).await, Code::AlreadyExists);
    }

    async fn a_parent_must_exist_in_the_tenant_and_be_active(app: TestApp) {
        let mut groups = app.groups();
        let missing = uuid::Uuid::now_v7().to_string();
        let status = expect_code(
            groups.create_group(CreateGroupRequest { group: Some(Group { parent_id: missing.clone(), ..named("Child") }), request_id: String::new() }).await,
            Code::NotFound,
        );
        assert!(status.message().contains(&missing));
        let parent = create_group(&mut groups, named("Parent")).await;
        delete(&mut groups, &parent.id, false).await.unwrap();
        expect_code(
            groups.create_group(CreateGroupRequest { group: Some(under("Child", &parent)), request_id: String::new() }).await,
            Code::FailedPrecondition,
        );
        let loose = create_group(&mut groups, named("Loose")).await;
        expect_code(move_group(&mut groups, &loose.id, &parent.id).await.map(tonic::Response::new), Code::FailedPrecondition);
    }

    async fn moving_a_group_under_itself_or_a_descendant_is_refused(app: TestApp) {
        let mut groups = app.groups();
        let a = create_group(&mut groups, named("A")).await;
        let b = create_group(&mut groups, under("B", &a)).await;
        let c = create_group(&mut groups, under("C", &b)).await;
        for parent in [&a.id, &b.id, &c.id] {
            let status = expect_code(move_group(&mut groups, &a.id, parent).await.map(tonic::Response::new), Code::InvalidArgument);
            assert_eq!(violated_fields(&status), vec!["group.parent_id"]);
        }
        assert_eq!(get_group(&mut groups, &a.id).await.parent_id, "", "nothing changed");
        // Legal moves: C to the top level, then A under C.
        let c_moved = move_group(&mut groups, &c.id, "").await.unwrap();
        assert_eq!(c_moved.parent_id, "");
        let a_moved = move_group(&mut groups, &a.id, &c.id).await.unwrap();
        assert_eq!(a_moved.parent_id, c.id);
        let children = list_all(&mut groups, ListGroupsRequest { parent_id: c.id.clone(), ..Default::default() }).await;
        assert_eq!(children.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), vec!["A"]);
    }

    async fn concurrent_opposite_moves_never_make_a_cycle(app: TestApp) {
        for round in 0..8 {
            let mut groups = app.groups();
            let x = create_group(&mut groups, named(&format!("X{round}"))).await;
            let y = create_group(&mut groups, named(&format!("Y{round}"))).await;
            let (one, two) = {
                let (mut g1, mut g2) = (app.groups(), app.groups());
                let (x1, y1, x2, y2) = (x.id.clone(), y.id.clone(), x.id.clone(), y.id.clone());
                tokio::join!(
                    async move { move_group(&mut g1, &x1, &y1).await },
                    async move { move_group(&mut g2, &y2, &x2).await },
                )
            };
            let succeeded = [&one, &two].iter().filter(|r| r.is_ok()).count();
            assert_eq!(succeeded, 1, "round {round}: exactly one move wins: {one:?} / {two:?}");
            for result in [one, two] {
                if let Err(status) = result {
                    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                }
            }
            let (x, y) = (get_group(&mut groups, &x.id).await, get_group(&mut groups, &y.id).await);
            assert!(!(x.parent_id == y.id && y.parent_id == x.id), "cycle committed in round {round}");
        }
    }

    async fn deleting_a_group_with_children_needs_cascade(app: TestApp) {
        let mut groups = app.groups();
        let root = create_group(&mut groups, named("Root")).await;
        let child = create_group(&mut groups, under("Child", &root)).await;
        let grandchild = create_group(&mut groups, under("Grandchild", &child)).await;
        let keep = create_group(&mut groups, named("Keep")).await;
        let status = expect_code(
            groups.delete_group(DeleteGroupRequest { id: root.id.clone(), etag: String::new(), cascade: false }).await,
            Code::FailedPrecondition,
        );
        assert!(status.message().contains("cascade"), "{}", status.message());
        assert!(get_group(&mut groups, &root.id).await.delete_time.is_none(), "nothing deleted");

        let cascaded: HashSet<String> = delete(&mut groups, &root.id, true).await.unwrap().into_iter().collect();
        assert_eq!(cascaded, HashSet::from([child.id.clone(), grandchild.id.clone()]));
        for id in [&root.id, &child.id, &grandchild.id] {
            assert!(get_group(&mut groups, id).await.delete_time.is_some(), "Get still returns deleted groups");
        }
        let active = list_all(&mut groups, ListGroupsRequest::default()).await;
        assert_eq!(active.iter().map(|g| g.id.clone()).collect::<Vec<_>>(), vec![keep.id.clone()]);
        let all = list_all(&mut groups, ListGroupsRequest { show_deleted: true, ..Default::default() }).await;
        assert_eq!(all.len(), 4);
        let deleted_only = list_all(&mut groups, ListGroupsRequest { deleted_only: true, ..Default::default() }).await;
        assert_eq!(deleted_only.len(), 3);
        assert!(deleted_only.iter().all(|g| g.delete_time.is_some()));

        let status = expect_code(delete(&mut groups, &root.id, true).await.map(tonic::Response::new), Code::FailedPrecondition);
        assert!(status.message().contains("already deleted"));
    }

    async fn restore_brings_back_the_cascade_and_refuses_a_deleted_parent(app: TestApp) {
        let mut groups = app.groups();
        let root = create_group(&mut groups, named("Root")).await;
        let child = create_group(&mut groups, under("Child", &root)).await;
        let grandchild = create_group(&mut groups, under("Grandchild", &child)).await;
        delete(&mut groups, &root.id, true).await.unwrap();

        let status = expect_code(
            groups.restore_group(RestoreGroupRequest { id: child.id.clone(), etag: String::new() }).await,
            Code::FailedPrecondition,
        );
        assert!(status.message().contains(&root.id), "names the deleted parent: {}", status.message());

        let restored = groups.restore_group(RestoreGroupRequest { id: root.id.clone(), etag: String::new() }).await.unwrap().into_inner();
        let restored_ids: HashSet<String> = restored.restored_group_ids.into_iter().collect();
        assert_eq!(restored_ids, HashSet::from([child.id.clone(), grandchild.id.clone()]));
        for id in [&root.id, &child.id, &grandchild.id] {
            assert!(get_group(&mut groups, id).await.delete_time.is_none());
        }
        expect_code(groups.restore_group(RestoreGroupRequest { id: root.id.clone(), etag: String::new() }).await, Code::FailedPrecondition);

        // A group deleted on its own before the cascade stays deleted.
        let solo = create_group(&mut groups, under("Solo", &root)).await;
        delete(&mut groups, &solo.id, false).await.unwrap();
        delete(&mut groups, &root.id, true).await.unwrap();
        let restored = groups.restore_group(RestoreGroupRequest { id: root.id.clone(), etag: String::new() }).await.unwrap().into_inner();
        assert!(!restored.restored_group_ids.contains(&solo.id));
        assert!(get_group(&mut groups, &solo.id).await.delete_time.is_some());
    }

    async fn stale_etags_are_aborted_and_change_nothing(app: TestApp) {
        let mut groups = app.groups();
        let group = create_group(&mut groups, named("Etag")).await;
        let updated = groups.update_group(UpdateGroupRequest {
            group: Some(Group { id: group.id.clone(), description: "new".into(), etag: group.etag.clone(), ..Default::default() }),
            update_mask: None,
        }).await.unwrap().into_inner().group.unwrap();
        assert_ne!(updated.etag, group.etag, "the etag changes with the group");
        assert_eq!(updated.name, "Etag", "an empty mask only touches populated fields");
        assert_eq!(updated.description, "new");

        expect_code(groups.update_group(UpdateGroupRequest {
            group: Some(Group { id: group.id.clone(), name: "Stale".into(), etag: group.etag.clone(), ..Default::default() }),
            update_mask: None,
        }).await, Code::Aborted);
        expect_code(groups.delete_group(DeleteGroupRequest { id: group.id.clone(), etag: group.etag.clone(), cascade: false }).await, Code::Aborted);
        let now = get_group(&mut groups, &group.id).await;
        assert_eq!((now.name.as_str(), now.delete_time), ("Etag", None));
        assert_eq!(now.etag, updated.etag);
        groups.delete_group(DeleteGroupRequest { id: group.id.clone(), etag: updated.etag.clone(), cascade: false }).await.expect("current etag works");
    }

    async fn update_masks_reject_unknown_and_output_only_paths(app: TestApp) {
        let mut groups = app.groups();
        let group = create_group(&mut groups, Group { description: "keep".into(), ..named("Masked") }).await;
        for paths in [vec!["nickname"], vec!["customer_count"], vec!["name", "etag"], vec!["Name"]] {
            let status = expect_code(groups.update_group(UpdateGroupRequest {
                group: Some(Group { id: group.id.clone(), name: "Changed".into(), ..Default::default() }),
                update_mask: mask(&paths),
            }).await, Code::InvalidArgument);
            assert_eq!(violated_fields(&status), vec!["update_mask"], "{paths:?}");
        }
        // A mask path clears a field even when the value is empty.
        let cleared = groups.update_group(UpdateGroupRequest {
            group: Some(Group { id: group.id.clone(), ..Default::default() }),
            update_mask: mask(&["description"]),
        }).await.unwrap().into_inner().group.unwrap();
        assert_eq!((cleared.name.as_str(), cleared.description.as_str()), ("Masked", ""));
        let status = expect_code(groups.update_group(UpdateGroupRequest {
            group: Some(Group { id: group.id.clone(), ..Default::default() }),
            update_mask: mask(&["name"]),
        }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["group.name"]);
        let unknown = uuid::Uuid::now_v7().to_string();
        expect_code(groups.update_group(UpdateGroupRequest {
            group: Some(Group { id: unknown, name: "X".into(), ..Default::default() }),
            update_mask: None,
        }).await, Code::NotFound);
    }

    async fn a_repeated_request_id_returns_the_first_group(app: TestApp) {
        let mut groups = app.groups();
        let request = CreateGroupRequest { group: Some(named("Once")), request_id: "req-1".into() };
        let first = groups.create_group(request.clone()).await.unwrap().into_inner().group.unwrap();
        let again = groups.create_group(request.clone()).await.unwrap().into_inner().group.unwrap();
        assert_eq!(first.id, again.id);
        let total = groups.list_groups(ListGroupsRequest::default()).await.unwrap().into_inner().total_size;
        assert_eq!(total, 1, "created nothing the second time");

        let other = CreateGroupRequest { group: Some(named("Other")), request_id: "req-1".into() };
        let status = expect_code(groups.create_group(other).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["request_id"]);

        // Concurrent repeats also create one group.
        let results = concurrently(10, |_| {
            let mut client = app.groups();
            async move { client.create_group(CreateGroupRequest { group: Some(named("Burst")), request_id: "req-2".into() }).await }
        }).await;
        let ids: HashSet<String> = results.into_iter().map(|r| r.expect("every repeat succeeds").into_inner().group.unwrap().id).collect();
        assert_eq!(ids.len(), 1);

        // After 24 hours the key is forgotten: the same request creates again.
        groups.delete_group(DeleteGroupRequest { id: first.id.clone(), etag: String::new(), cascade: false }).await.unwrap();
        app.clock.advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
        let later = groups.create_group(request).await.unwrap().into_inner().group.unwrap();
        assert_ne!(later.id, first.id);
    }

    async fn paging_yields_every_group_once_and_rejects_forged_tokens(app: TestApp) {
        let mut groups = app.groups();
        let mut expected = HashSet::new();
        for i in 0..23 {
            expected.insert(create_group(&mut groups, named(&format!("Nhóm {i:02}"))).await.id);
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = groups.list_groups(ListGroupsRequest { page_size: 5, page_token: token.clone(), ..Default::default() }).await.unwrap().into_inner();
            assert_eq!(page.total_size, 23);
            assert!(page.groups.len() <= 5);
            seen.extend(page.groups.into_iter().map(|g| g.id));
            pages += 1;
            if page.next_page_token.is_empty() { break; }
            token = page.next_page_token;
        }
        assert_eq!(pages, 5);
        assert_eq!(seen.len(), 23);
        assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);

        let first = groups.list_groups(ListGroupsRequest { page_size: 5, ..Default::default() }).await.unwrap().into_inner();
        let token = first.next_page_token;
        let mut tampered = token.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        for bad in [String::from_utf8(tampered).unwrap(), "not a token".into(), token[..token.len() / 2].to_owned()] {
            let status = expect_code(groups.list_groups(ListGroupsRequest { page_size: 5, page_token: bad, ..Default::default() }).await, Code::InvalidArgument);
            assert_eq!(violated_fields(&status), vec!["page_token"]);
        }
        let status = expect_code(groups.list_groups(ListGroupsRequest { page_size: 5, page_token: token, show_deleted: true, ..Default::default() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["page_token"], "a token only works with its own filters");
        let status = expect_code(groups.list_groups(ListGroupsRequest { page_size: -1, ..Default::default() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["page_size"]);
        let clamped = groups.list_groups(ListGroupsRequest { page_size: 100_000, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(clamped.groups.len(), 23);
    }

    async fn unknown_and_malformed_ids_are_told_apart(app: TestApp) {
        let mut groups = app.groups();
        let status = expect_code(groups.get_group(GetGroupRequest { id: "42".into() }).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["id"]);
        let unknown = uuid::Uuid::now_v7().to_string();
        let status = expect_code(groups.get_group(GetGroupRequest { id: unknown.clone() }).await, Code::NotFound);
        assert!(status.message().contains(&unknown));
        expect_code(groups.list_groups(ListGroupsRequest { parent_id: unknown, ..Default::default() }).await, Code::NotFound);
    }

    async fn fifty_concurrent_creates_give_unique_codes_and_one_winner_per_name(app: TestApp) {
        let distinct = concurrently(50, |i| {
            let mut client = app.groups();
            async move { client.create_group(CreateGroupRequest { group: Some(named(&format!("Nhóm số {i}"))), request_id: String::new() }).await }
        }).await;
        let same = concurrently(50, |_| {
            let mut client = app.groups();
            async move { client.create_group(CreateGroupRequest { group: Some(named("Cùng tên")), request_id: String::new() }).await }
        }).await;
        let mut codes = HashSet::new();
        for result in distinct {
            let group = result.expect("distinct names all succeed").into_inner().group.unwrap();
            assert!(codes.insert(group.code.clone()), "duplicate code {}", group.code);
        }
        let mut winners = 0;
        for result in same {
            match result {
                Ok(response) => {
                    winners += 1;
                    assert!(codes.insert(response.into_inner().group.unwrap().code));
                }
                Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            }
        }
        assert_eq!(winners, 1);
        let all = app.groups().list_groups(ListGroupsRequest { page_size: 1000, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(all.total_size, 51);
    }
}

on_both_databases! {
    async fn a_repeated_request_id_returns_the_first_result_not_the_current_row(app: TestApp) {
        let mut groups = app.groups();
        let request = CreateGroupRequest { group: Some(named("Original")), request_id: "k1".into() };
        let first = groups.create_group(request.clone()).await.unwrap().into_inner().group.unwrap();
        groups.update_group(UpdateGroupRequest {
            group: Some(Group { id: first.id.clone(), name: "Changed".into(), ..Default::default() }),
            update_mask: None,
        }).await.unwrap();
        let repeat = groups.create_group(request).await.unwrap().into_inner().group.unwrap();
        assert_eq!(repeat, first);
    }

    async fn updating_a_deleted_group_is_refused(app: TestApp) {
        let mut groups = app.groups();
        let group = create_group(&mut groups, named("Gone")).await;
        delete(&mut groups, &group.id, false).await.unwrap();
        let status = expect_code(groups.update_group(UpdateGroupRequest {
            group: Some(Group { id: group.id.clone(), name: "Back".into(), ..Default::default() }),
            update_mask: None,
        }).await, Code::FailedPrecondition);
        assert!(status.message().contains("restore"), "{}", status.message());
    }

    async fn the_longest_names_in_any_script_are_stored(app: TestApp) {
        let mut groups = app.groups();
        // One character that transliterates to 27 ASCII characters.
        let name = "\u{fdfa}".repeat(200);
        let group = create_group(&mut groups, named(&name)).await;
        assert_eq!(group.name, name);
        assert!(group.code.len() <= 64);
        let status = expect_code(
            groups.create_group(CreateGroupRequest {
                group: Some(Group { description: "a\u{0}b".into(), ..named("Nul") }),
                request_id: String::new(),
            }).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["group.description"]);
    }

    async fn names_that_share_a_code_get_distinct_codes_under_concurrency(app: TestApp) {
        // 50 distinct names that all transliterate to WEB, created at once,
        // together with 50 creates of one name.
        let clashing = concurrently(50, |i| {
            let mut client = app.groups();
            async move { client.create_group(CreateGroupRequest { group: Some(named(&format!("Web{}", "!".repeat(i)))), request_id: String::new() }).await }
        });
        let same = concurrently(50, |_| {
            let mut client = app.groups();
            async move { client.create_group(CreateGroupRequest { group: Some(named("Một tên")), request_id: String::new() }).await }
        });
        let (clashing, same) = tokio::join!(clashing, same);
        let mut codes = HashSet::new();
        for result in clashing {
            let code = result.expect("distinct names all succeed").into_inner().group.unwrap().code;
            assert!(code == "WEB" || code.starts_with("WEB_"), "{code}");
            assert!(codes.insert(code.clone()), "duplicate code {code}");
        }
        assert_eq!(same.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(same.iter().filter_map(|r| r.as_ref().err()).all(|s| s.code() == Code::AlreadyExists));
    }
}
