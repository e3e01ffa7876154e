//! Rule-based groups: rules that fill groups, pins in and out, conversions
//! between manual and rule groups, re-evaluation on every kind of customer
//! write, time-based rules, cycles, previews, and counters equal to a
//! recount. The oracle of every membership is the filter evaluated in SQL
//! (ListCustomers with the rule as its filter) plus the pins — a different
//! evaluator from the in-memory one the write path follows rules with.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use crm_classify::pb::{
    AddCustomersToGroupRequest, ClearGroupPinsRequest, CountCustomersByRelationshipRequest,
    Customer, EvaluationState, Group, ListCustomersRequest, ListGroupMembersRequest,
    MembershipReason, PreviewGroupRuleRequest, RemoveCustomersFromGroupRequest, UpdateGroupRequest,
};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::fixtures::{
    change, create_customer, create_group, delete_customer, get_customer, get_group, list_pages,
    mask, named, new_group, record_contact, rel, relationships, restore_customer, update_request,
};
use crate::helpers::{Options, TestApp, concurrently, expect_code, violated_fields};
use crate::on_both_databases;

/// How long a background evaluation may take on a busy machine.
const EVALUATED_WITHIN: Duration = Duration::from_secs(60);

async fn rule_group(app: &TestApp, name: &str, rule: &str) -> Group {
    create_group(
        &mut app.groups(),
        Group {
            name: name.to_owned(),
            rule: rule.to_owned(),
            ..Default::default()
        },
    )
    .await
}

async fn set_rule(app: &TestApp, id: &str, rule: &str) -> Result<Group, tonic::Status> {
    app.groups()
        .update_group(UpdateGroupRequest {
            group: Some(Group {
                id: id.to_owned(),
                rule: rule.to_owned(),
                ..Default::default()
            }),
            update_mask: mask(&["rule"]),
        })
        .await
        .map(|r| r.into_inner().group.expect("group"))
}

/// Waits until group `id` has evaluated its rule over every customer: reads
/// the group, and if it is still evaluating waits for the server's next
/// finished evaluation (marked seen before the read, so none is missed).
pub(crate) async fn await_current(app: &TestApp, id: &str) -> Group {
    let deadline = tokio::time::Instant::now() + EVALUATED_WITHIN;
    let mut finished = app.evaluations_finished.clone();
    loop {
        finished.borrow_and_update();
        let group = get_group(&mut app.groups(), id).await;
        if group.evaluation_state == EvaluationState::Current as i32 {
            return group;
        }
        tokio::time::timeout_at(deadline, finished.changed())
            .await
            .unwrap_or_else(|_| panic!("group {id} still evaluating after {EVALUATED_WITHIN:?}"))
            .expect("the server is running");
    }
}

/// Every listed member of group `id` (with pinned-out customers), with its
/// reasons.
async fn listed(app: &TestApp, id: &str) -> BTreeMap<String, BTreeSet<i32>> {
    let mut found = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = app
            .groups()
            .list_group_members(ListGroupMembersRequest {
                group_id: id.to_owned(),
                page_size: 7,
                page_token: token,
                show_pinned_out: true,
            })
            .await
            .expect("list members")
            .into_inner();
        for m in page.members {
            let reasons: BTreeSet<i32> = m.reasons.into_iter().collect();
            assert!(
                found.insert(m.customer_id.clone(), reasons).is_none(),
                "{} listed twice",
                m.customer_id
            );
        }
        if page.next_page_token.is_empty() {
            assert_eq!(page.total_size as usize, found.len(), "total_size");
            return found;
        }
        token = page.next_page_token;
    }
}

/// The members of group `id` (pinned-out customers left out).
pub(crate) async fn members(app: &TestApp, id: &str) -> BTreeSet<String> {
    listed(app, id)
        .await
        .into_iter()
        .filter(|(_, r)| !r.contains(&(MembershipReason::PinnedOut as i32)))
        .map(|(id, _)| id)
        .collect()
}

/// The active customers `rule` selects, evaluated in SQL.
async fn matching(app: &TestApp, rule: &str) -> BTreeSet<String> {
    list_pages(
        &mut app.customers(),
        ListCustomersRequest {
            filter: rule.to_owned(),
            page_size: 1000,
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .flat_map(|p| p.customers)
    .map(|c| c.id)
    .collect()
}

fn reasons(list: &[MembershipReason]) -> BTreeSet<i32> {
    list.iter().map(|r| *r as i32).collect()
}

async fn add(app: &TestApp, group: &str, ids: &[&str]) -> i64 {
    app.customers()
        .add_customers_to_group(AddCustomersToGroupRequest {
            group_id: group.to_owned(),
            customer_ids: ids.iter().map(|s| s.to_string()).collect(),
        })
        .await
        .expect("add")
        .into_inner()
        .added_count
}

async fn remove(app: &TestApp, group: &str, ids: &[&str]) -> i64 {
    app.customers()
        .remove_customers_from_group(RemoveCustomersFromGroupRequest {
            group_id: group.to_owned(),
            customer_ids: ids.iter().map(|s| s.to_string()).collect(),
        })
        .await
        .expect("remove")
        .into_inner()
        .removed_count
}

/// The group's customer count and its summary bar both equal a recount of
/// its members by their relationships.
async fn assert_counts(app: &TestApp, group_id: &str) {
    let members = members(app, group_id).await;
    let mut by_relationship: BTreeMap<String, i64> = BTreeMap::new();
    for id in &members {
        let c = get_customer(&mut app.customers(), id).await;
        assert!(
            c.group_ids.contains(&group_id.to_owned()),
            "{id} shows the group"
        );
        *by_relationship.entry(c.relationship_id).or_default() += 1;
    }
    let group = get_group(&mut app.groups(), group_id).await;
    assert_eq!(
        group.customer_count as usize,
        members.len(),
        "customer_count"
    );
    let bar = app
        .customers()
        .count_customers_by_relationship(CountCustomersByRelationshipRequest {
            group_id: group_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("count")
        .into_inner();
    assert_eq!(bar.total as usize, members.len(), "summary bar total");
    for count in bar.counts {
        let expected = by_relationship
            .get(&count.relationship_id)
            .copied()
            .unwrap_or(0);
        assert_eq!(count.count, expected, "summary bar of {}", count.code);
    }
}

fn in_province(name: &str, province: &str) -> Customer {
    Customer {
        province: province.to_owned(),
        ..named(name)
    }
}

/// Rule groups on each kind of customer data, for the one-test-per-kind
/// tests of re-evaluation.
struct Kinds {
    hot: String,
    closed: String,
    by_place: String,
    hot_group: String,
    contacted: String,
    manual: String,
    via_vip: String,
}

impl Kinds {
    async fn set_up(app: &TestApp) -> Self {
        let list = relationships(&mut app.relationships()).await;
        let by_place = rule_group(app, "Đà Nẵng", r#"province = "Đà Nẵng""#)
            .await
            .id;
        let hot_group = rule_group(app, "Nóng", r#"relationship = "HOT""#).await.id;
        let contacted = rule_group(app, "Đã liên hệ", "last_contact_time:*")
            .await
            .id;
        let manual = new_group(app, "VIP").await.id;
        let via_vip = rule_group(app, "Qua VIP", r#"in_group("VIP")"#).await.id;
        for g in [&by_place, &hot_group, &contacted, &via_vip] {
            await_current(app, g).await;
        }
        Self {
            hot: rel(&list, "HOT"),
            closed: rel(&list, "CLOSED"),
            by_place,
            hot_group,
            contacted,
            manual,
            via_vip,
        }
    }

    async fn assert_counts(&self, app: &TestApp) {
        for g in [
            &self.by_place,
            &self.hot_group,
            &self.contacted,
            &self.via_vip,
        ] {
            assert_counts(app, g).await;
        }
    }
}

const HOT_IN_DA_NANG: &str = r#"province = "Đà Nẵng" AND relationship = "HOT""#;

on_both_databases! {
    async fn a_new_rule_fills_its_group_with_exactly_what_it_matches(app: TestApp) {
        let mut customers = app.customers();
        let hot = rel(&relationships(&mut app.relationships()).await, "HOT");
        let mut ids = Vec::new();
        for i in 0..12 {
            let province = if i % 2 == 0 { "Đà Nẵng" } else { "Hà Nội" };
            let c = create_customer(&mut customers, in_province(&format!("Khách {i}"), province)).await;
            if i % 3 == 0 {
                change(&mut customers, &c.id, &hot).await;
            }
            ids.push(c.id);
        }
        let group = rule_group(&app, "Khách nóng Đà Nẵng", HOT_IN_DA_NANG).await;
        assert_eq!(group.rule, HOT_IN_DA_NANG);
        let group = await_current(&app, &group.id).await;
        assert!(group.evaluate_time.is_some(), "evaluated at some time");
        let expected = matching(&app, HOT_IN_DA_NANG).await;
        assert_eq!(expected.len(), 2, "customers 0 and 6");
        assert_eq!(members(&app, &group.id).await, expected);
        for reasons_of in listed(&app, &group.id).await.values() {
            assert_eq!(*reasons_of, reasons(&[MembershipReason::Rule]));
        }
        assert_counts(&app, &group.id).await;
    }

    async fn a_created_customer_joins_the_rule_groups_it_matches(app: TestApp) {
        let kinds = Kinds::set_up(&app).await;
        let c = create_customer(&mut app.customers(), in_province("Trần Thị Bình", "Đà Nẵng")).await;
        assert!(c.group_ids.contains(&kinds.by_place), "answered with the group: {:?}", c.group_ids);
        assert!(!c.group_ids.contains(&kinds.contacted), "{:?}", c.group_ids);
        assert!(members(&app, &kinds.by_place).await.contains(&c.id));
        kinds.assert_counts(&app).await;
    }

    async fn an_updated_customer_leaves_and_joins_as_its_fields_match(app: TestApp) {
        let kinds = Kinds::set_up(&app).await;
        let mut customers = app.customers();
        let c = create_customer(&mut customers, in_province("Trần Thị Bình", "Đà Nẵng")).await;
        let moved = Customer { province: "Huế".into(), ..c.clone() };
        let updated = customers.update_customer(update_request(moved, &["province"])).await.expect("update").into_inner().customer.expect("customer");
        assert!(!updated.group_ids.contains(&kinds.by_place), "update leaves");
        assert!(!members(&app, &kinds.by_place).await.contains(&c.id));
        let back = Customer { province: "đà nẵng".into(), ..updated };
        let updated = customers.update_customer(update_request(back, &["province"])).await.expect("update").into_inner().customer.expect("customer");
        assert!(updated.group_ids.contains(&kinds.by_place), "update joins");
        kinds.assert_counts(&app).await;
    }

    async fn a_relationship_change_moves_the_customer_in_and_out(app: TestApp) {
        let kinds = Kinds::set_up(&app).await;
        let mut customers = app.customers();
        let c = create_customer(&mut customers, named("Lê Văn Cường")).await;
        change(&mut customers, &c.id, &kinds.hot).await;
        assert!(members(&app, &kinds.hot_group).await.contains(&c.id), "changed to HOT");
        kinds.assert_counts(&app).await;
        change(&mut customers, &c.id, &kinds.closed).await;
        assert!(!members(&app, &kinds.hot_group).await.contains(&c.id), "changed away");
        kinds.assert_counts(&app).await;
    }

    async fn a_contact_re_evaluates_rules_on_contacts(app: TestApp) {
        let kinds = Kinds::set_up(&app).await;
        let mut customers = app.customers();
        let c = create_customer(&mut customers, named("Phạm Thị Dung")).await;
        assert!(!c.group_ids.contains(&kinds.contacted));
        record_contact(&mut customers, &c.id, None).await;
        assert!(get_customer(&mut customers, &c.id).await.group_ids.contains(&kinds.contacted), "contact");
        kinds.assert_counts(&app).await;
    }

    async fn joining_or_leaving_another_group_re_evaluates_rules_on_groups(app: TestApp) {
        let kinds = Kinds::set_up(&app).await;
        let mut customers = app.customers();
        let c = create_customer(&mut customers, named("Hoàng Văn Em")).await;
        add(&app, &kinds.manual, &[&c.id]).await;
        assert!(get_customer(&mut customers, &c.id).await.group_ids.contains(&kinds.via_vip), "in_group joins");
        kinds.assert_counts(&app).await;
        remove(&app, &kinds.manual, &[&c.id]).await;
        assert!(!members(&app, &kinds.via_vip).await.contains(&c.id), "in_group leaves");
        kinds.assert_counts(&app).await;
    }

    async fn a_deleted_customer_is_in_no_group_and_a_restored_one_follows_the_rules_again(app: TestApp) {
        let kinds = Kinds::set_up(&app).await;
        let mut customers = app.customers();
        let c = create_customer(&mut customers, in_province("Vũ Thị Giang", "Đà Nẵng")).await;
        record_contact(&mut customers, &c.id, None).await;
        delete_customer(&mut customers, &c.id).await;
        assert!(!members(&app, &kinds.contacted).await.contains(&c.id), "deleted");
        assert!(!members(&app, &kinds.by_place).await.contains(&c.id), "deleted");
        kinds.assert_counts(&app).await;
        // Changed while deleted: the rules hold on restore.
        let moved = Customer { province: "Huế".into(), ..get_customer(&mut customers, &c.id).await };
        let _ = customers.update_customer(update_request(moved, &["province"])).await;
        restore_customer(&mut customers, &c.id).await.expect("restore");
        assert!(members(&app, &kinds.contacted).await.contains(&c.id), "restored");
        let by_place_now = members(&app, &kinds.by_place).await.contains(&c.id);
        let matches_now = matching(&app, r#"province = "Đà Nẵng""#).await.contains(&c.id);
        assert_eq!(by_place_now, matches_now, "the rule decides after the restore");
        kinds.assert_counts(&app).await;
    }

    async fn pins_add_and_remove_by_hand_and_clearing_hands_back_to_the_rule(app: TestApp) {
        let mut customers = app.customers();
        let inside = create_customer(&mut customers, in_province("Lê Văn Cường", "Đà Nẵng")).await;
        let outside = create_customer(&mut customers, in_province("Phạm Thị Dung", "Hà Nội")).await;
        let both = create_customer(&mut customers, in_province("Hoàng Văn Em", "Đà Nẵng")).await;
        let group = rule_group(&app, "Đà Nẵng", r#"province = "Đà Nẵng""#).await;
        await_current(&app, &group.id).await;

        assert_eq!(add(&app, &group.id, &[&outside.id]).await, 1, "pinned in: new member");
        assert_eq!(add(&app, &group.id, &[&both.id]).await, 0, "already a member");
        assert_eq!(remove(&app, &group.id, &[&inside.id]).await, 1, "pinned out: leaves");
        let listed_now = listed(&app, &group.id).await;
        assert_eq!(listed_now[&outside.id], reasons(&[MembershipReason::Pinned]));
        assert_eq!(listed_now[&both.id], reasons(&[MembershipReason::Rule, MembershipReason::Pinned]));
        assert_eq!(listed_now[&inside.id], reasons(&[MembershipReason::PinnedOut]));
        assert_counts(&app, &group.id).await;

        // A pinned-out customer stays out whatever it does.
        let touched = Customer { company: "Công ty A".into(), ..inside.clone() };
        customers.update_customer(update_request(touched, &["company"])).await.expect("update");
        assert!(!members(&app, &group.id).await.contains(&inside.id));

        let cleared = app.groups().clear_group_pins(ClearGroupPinsRequest {
            group_id: group.id.clone(),
            customer_ids: vec![],
        }).await.expect("clear").into_inner();
        assert_eq!(cleared.cleared_count, 3);
        assert_eq!((cleared.joined_count, cleared.left_count), (1, 1), "inside joins, outside leaves");
        assert_eq!(members(&app, &group.id).await, matching(&app, r#"province = "Đà Nẵng""#).await);
        for r in listed(&app, &group.id).await.values() {
            assert_eq!(*r, reasons(&[MembershipReason::Rule]));
        }
        assert_counts(&app, &group.id).await;

        // On a manual group, clearing pins is refused.
        let manual = new_group(&app, "Thủ công").await;
        let err = app.groups().clear_group_pins(ClearGroupPinsRequest {
            group_id: manual.id.clone(),
            customer_ids: vec![],
        }).await.expect_err("manual");
        assert_eq!(err.code(), Code::FailedPrecondition);
    }

    async fn clearing_every_pin_of_a_large_group_hands_them_all_back_to_the_rule(app: TestApp) {
        // More pins than one transaction clears (1,000).
        const CUSTOMERS: usize = 1_100;
        let ids: Vec<String> = crate::helpers::at_most(8, CUSTOMERS, |i| {
            let mut customers = app.customers();
            async move {
                create_customer(&mut customers, Customer { revenue: (i % 2) as i64, ..named(&format!("K{i}")) }).await.id
            }
        }).await;
        let group = new_group(&app, "Nhiều ghim").await;
        for chunk in ids.chunks(1000) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            add(&app, &group.id, &chunk).await;
        }
        set_rule(&app, &group.id, "revenue = 1").await.expect("set rule");
        await_current(&app, &group.id).await;
        assert_eq!(members(&app, &group.id).await.len(), CUSTOMERS, "every manual member kept as a pin");
        let cleared = app.groups().clear_group_pins(ClearGroupPinsRequest {
            group_id: group.id.clone(),
            customer_ids: vec![],
        }).await.expect("clear").into_inner();
        assert_eq!(cleared.cleared_count as usize, CUSTOMERS);
        assert_eq!(cleared.left_count as usize, CUSTOMERS / 2, "the ones the rule does not match leave");
        assert_eq!(members(&app, &group.id).await, matching(&app, "revenue = 1").await);
        assert_counts(&app, &group.id).await;
    }

    async fn converting_between_manual_and_rule_groups_loses_nobody(app: TestApp) {
        let mut customers = app.customers();
        let manual = new_group(&app, "Khách quen").await;
        let a = create_customer(&mut customers, in_province("An", "Huế")).await;
        let b = create_customer(&mut customers, in_province("Bình", "Đà Nẵng")).await;
        let c = create_customer(&mut customers, in_province("Chi", "Đà Nẵng")).await;
        add(&app, &manual.id, &[&a.id, &b.id]).await;

        let group = set_rule(&app, &manual.id, r#"province = "Đà Nẵng""#).await.expect("set rule");
        assert_eq!(group.evaluation_state, EvaluationState::Evaluating as i32);
        await_current(&app, &manual.id).await;
        let now = listed(&app, &manual.id).await;
        assert_eq!(now.keys().cloned().collect::<BTreeSet<_>>(), BTreeSet::from([a.id.clone(), b.id.clone(), c.id.clone()]));
        assert_eq!(now[&a.id], reasons(&[MembershipReason::Pinned]), "manual member kept as pinned");
        assert_eq!(now[&b.id], reasons(&[MembershipReason::Rule, MembershipReason::Pinned]));
        assert_eq!(now[&c.id], reasons(&[MembershipReason::Rule]));
        remove(&app, &manual.id, &[&c.id]).await;

        let cleared = set_rule(&app, &manual.id, "").await.expect("clear rule");
        assert_eq!(cleared.rule, "");
        assert_eq!(cleared.evaluation_state, EvaluationState::Current as i32);
        let after = listed(&app, &manual.id).await;
        assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), BTreeSet::from([a.id.clone(), b.id.clone()]), "members kept, pin out gone");
        for r in after.values() {
            assert_eq!(*r, reasons(&[MembershipReason::Pinned]));
        }
        // A manual group again: new customers from Đà Nẵng do not join.
        let d = create_customer(&mut customers, in_province("Dũng", "Đà Nẵng")).await;
        assert!(!d.group_ids.contains(&manual.id));
        assert_counts(&app, &manual.id).await;
    }

    async fn rules_that_refer_to_themselves_or_to_nothing_are_refused(app: TestApp) {
        let a = new_group(&app, "Nhóm A").await;
        let b = rule_group(&app, "Nhóm B", &format!(r#"in_group("{}")"#, a.code)).await;
        let err = set_rule(&app, &a.id, &format!(r#"in_group("{}") OR revenue > 5"#, b.code)).await.expect_err("cycle");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&err), vec!["group.rule"]);
        assert!(err.message().contains(&a.code) && err.message().contains(&b.code), "names the cycle: {}", err.message());
        // Through a subtree: a rule taking in its own parent's subtree.
        let child = create_group(&mut app.groups(), Group { name: "Con".into(), parent_id: a.id.clone(), ..Default::default() }).await;
        let err = set_rule(&app, &child.id, &format!(r#"in_group("{}")"#, a.id)).await.expect_err("own subtree");
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = set_rule(&app, &a.id, r#"in_group("NO_SUCH_GROUP")"#).await.expect_err("unknown");
        assert_eq!(violated_fields(&err), vec!["group.rule"]);
        let err = set_rule(&app, &a.id, "province = ").await.expect_err("does not parse");
        assert_eq!(violated_fields(&err), vec!["group.rule"]);
        // Nothing changed.
        assert_eq!(get_group(&mut app.groups(), &a.id).await.rule, "");
        let err = app.groups().create_group(crm_classify::pb::CreateGroupRequest {
            group: Some(Group { name: "X".into(), rule: "nope = 1".into(), ..Default::default() }),
            request_id: String::new(),
        }).await.expect_err("unknown field");
        assert_eq!(violated_fields(&err), vec!["group.rule"]);
    }

    async fn a_deleted_group_a_rule_names_matches_nobody_until_restored(app: TestApp) {
        let mut customers = app.customers();
        let vip = new_group(&app, "VIP").await;
        let c = create_customer(&mut customers, Customer { group_ids: vec![vip.id.clone()], ..named("Khách") }).await;
        let via = rule_group(&app, "Qua VIP", r#"in_group("VIP")"#).await;
        await_current(&app, &via.id).await;
        assert!(members(&app, &via.id).await.contains(&c.id));
        app.groups().delete_group(crm_classify::pb::DeleteGroupRequest { id: vip.id.clone(), etag: String::new(), cascade: false }).await.expect("delete");
        await_current(&app, &via.id).await;
        assert!(members(&app, &via.id).await.is_empty(), "the deleted group matches nobody");
        app.groups().restore_group(crm_classify::pb::RestoreGroupRequest { id: vip.id.clone(), etag: String::new() }).await.expect("restore");
        await_current(&app, &via.id).await;
        assert!(members(&app, &via.id).await.contains(&c.id), "back after the restore");
    }

    async fn a_pin_out_made_while_the_group_is_deleted_holds_after_its_restore(app: TestApp) {
        let c = create_customer(&mut app.customers(), in_province("Khách", "Đà Nẵng")).await;
        let group = rule_group(&app, "Đà Nẵng", r#"province = "Đà Nẵng""#).await;
        await_current(&app, &group.id).await;
        app.groups().delete_group(crm_classify::pb::DeleteGroupRequest { id: group.id.clone(), etag: String::new(), cascade: false }).await.expect("delete");
        assert_eq!(remove(&app, &group.id, &[&c.id]).await, 1, "removed while deleted");
        app.groups().restore_group(crm_classify::pb::RestoreGroupRequest { id: group.id.clone(), etag: String::new() }).await.expect("restore");
        await_current(&app, &group.id).await;
        assert_eq!(listed(&app, &group.id).await.get(&c.id), Some(&reasons(&[MembershipReason::PinnedOut])), "still pinned out");
        assert_counts(&app, &group.id).await;
    }

    async fn a_relationship_change_that_a_rule_follows_names_the_group_it_joined(app: TestApp) {
        use crm_classify::pb::{WatchRelationshipChangesRequest, watch_relationship_changes_response::Event};
        let hot = rel(&relationships(&mut app.relationships()).await, "HOT");
        let group = rule_group(&app, "Nóng", r#"relationship = "HOT""#).await;
        await_current(&app, &group.id).await;
        let mut customers = app.customers();
        let c = create_customer(&mut customers, named("Khách")).await;
        let mut events = app.relationships().watch_relationship_changes(WatchRelationshipChangesRequest {
            group_ids: vec![group.id.clone()],
            ..Default::default()
        }).await.expect("watch").into_inner();
        let Some(Ok(first)) = events.next().await else { panic!("an opening heartbeat") };
        assert!(matches!(first.event, Some(Event::Heartbeat(_))), "{first:?}");
        let moved = change(&mut customers, &c.id, &hot).await;
        let sequence = moved.change.expect("logged").sequence;
        let got = tokio::time::timeout(EVALUATED_WITHIN, async {
            loop {
                match events.next().await {
                    Some(Ok(r)) => if let Some(Event::Change(change)) = r.event { return change },
                    other => panic!("the stream ended: {other:?}"),
                }
            }
        }).await.expect("the move, streamed to the group's watchers");
        assert_eq!((got.sequence, got.customer_id), (sequence, c.id.clone()));
    }

    async fn renaming_a_code_a_rule_names_re_evaluates_the_rule(app: TestApp) {
        let web = crate::fixtures::new_source(&app, "Web").await;
        assert_eq!(web.code, "WEB");
        let c = create_customer(&mut app.customers(), Customer { source_id: web.id.clone(), ..named("Khách web") }).await;
        let group = rule_group(&app, "Từ web", r#"source = "WEB""#).await;
        await_current(&app, &group.id).await;
        assert!(members(&app, &group.id).await.contains(&c.id));
        app.sources().update_source(crm_classify::pb::UpdateSourceRequest {
            source: Some(crm_classify::pb::Source { id: web.id.clone(), code: "SITE".into(), ..Default::default() }),
            update_mask: mask(&["code"]),
        }).await.expect("rename the code");
        await_current(&app, &group.id).await;
        assert!(members(&app, &group.id).await.is_empty(), "WEB names no source now");
        assert_counts(&app, &group.id).await;

        // Likewise a group named by its code.
        let vip = new_group(&app, "VIP").await;
        add(&app, &vip.id, &[&c.id]).await;
        let via = rule_group(&app, "Qua VIP", r#"in_group("VIP")"#).await;
        await_current(&app, &via.id).await;
        assert!(members(&app, &via.id).await.contains(&c.id));
        app.groups().update_group(UpdateGroupRequest {
            group: Some(Group { id: vip.id.clone(), code: "KHACH_VIP".into(), ..Default::default() }),
            update_mask: mask(&["code"]),
        }).await.expect("recode the group");
        await_current(&app, &via.id).await;
        assert!(members(&app, &via.id).await.is_empty(), "VIP names no group now");
        assert_counts(&app, &via.id).await;
    }

    async fn a_preview_tells_what_saving_the_rule_then_does(app: TestApp) {
        let mut customers = app.customers();
        let hot = rel(&relationships(&mut app.relationships()).await, "HOT");
        for i in 0..10 {
            let c = create_customer(&mut customers, Customer { revenue: i * 10, ..in_province(&format!("K{i}"), if i < 6 { "Đà Nẵng" } else { "Huế" }) }).await;
            if i % 2 == 0 {
                change(&mut customers, &c.id, &hot).await;
            }
        }
        let group = rule_group(&app, "Đà Nẵng", r#"province = "Đà Nẵng""#).await;
        await_current(&app, &group.id).await;
        // Pins the new rule keeps: one pinned in that it does not match,
        // one pinned out that it does.
        let all = matching(&app, "revenue >= 0").await;
        let low = matching(&app, "revenue < 40").await;
        let high = matching(&app, "revenue >= 40 AND province = \"Huế\"").await;
        let (pin_in, pin_out) = (low.iter().next().expect("a low one").clone(), high.iter().next().expect("a high one").clone());
        assert!(all.len() == 10);
        add(&app, &group.id, &[&pin_in]).await;
        remove(&app, &group.id, &[&pin_out]).await;
        let before = members(&app, &group.id).await;
        let rule = r#"revenue >= 40"#;
        let preview = app.groups().preview_group_rule(PreviewGroupRuleRequest {
            rule: rule.into(),
            group_id: group.id.clone(),
            page_size: 3,
        }).await.expect("preview").into_inner();
        let expected = matching(&app, rule).await;
        assert_eq!(preview.total_size as usize, expected.len());
        assert_eq!(preview.customers.len(), 3);
        assert!(preview.customers.iter().all(|c| expected.contains(&c.id)));
        assert_eq!(preview.counts.iter().map(|c| c.count).sum::<i64>(), preview.total_size);
        // Nothing was written.
        assert_eq!(members(&app, &group.id).await, before);
        set_rule(&app, &group.id, rule).await.expect("save");
        await_current(&app, &group.id).await;
        let after = members(&app, &group.id).await;
        let mut expected = expected;
        expected.insert(pin_in.clone());
        expected.remove(&pin_out);
        assert_eq!(after, expected);
        assert_eq!(preview.join_count as usize, after.difference(&before).count(), "joined");
        assert_eq!(preview.leave_count as usize, before.difference(&after).count(), "left");
        expect_code(app.groups().preview_group_rule(PreviewGroupRuleRequest { rule: "".into(), ..Default::default() }).await, Code::InvalidArgument);
        expect_code(app.groups().preview_group_rule(PreviewGroupRuleRequest { rule: "revenue >".into(), ..Default::default() }).await, Code::InvalidArgument);
    }

    async fn a_rule_changed_while_writers_run_ends_equal_to_a_fresh_evaluation(app: TestApp) {
        let ids: Vec<String> = concurrently(40, |i| {
            let mut customers = app.customers();
            async move {
                create_customer(&mut customers, Customer { revenue: i as i64, ..in_province(&format!("Khách {i}"), if i % 2 == 0 { "Đà Nẵng" } else { "Huế" }) }).await.id
            }
        }).await;
        let group = rule_group(&app, "Doanh thu", "revenue >= 20").await;
        let pinned = ids[0].clone();
        add(&app, &group.id, &[&pinned]).await;
        // Writers change revenues while the rule changes twice.
        let writers = concurrently(40, |i| {
            let mut customers = app.customers();
            let id = ids[i].clone();
            async move {
                let c = get_customer(&mut customers, &id).await;
                let c = Customer { revenue: (c.revenue * 7 + 3) % 40, ..c };
                customers.update_customer(update_request(c, &["revenue"])).await.expect("update");
            }
        });
        let rules = async {
            set_rule(&app, &group.id, r#"revenue >= 10 AND province = "Đà Nẵng""#).await.expect("rule 2");
            set_rule(&app, &group.id, "revenue >= 15").await.expect("rule 3");
        };
        tokio::join!(writers, rules);
        await_current(&app, &group.id).await;
        let mut expected = matching(&app, "revenue >= 15").await;
        expected.insert(pinned);
        assert_eq!(members(&app, &group.id).await, expected);
        assert_counts(&app, &group.id).await;
    }
}

on_both_databases! {
    async fn time_based_rules_move_with_the_clock_through_the_sweep(app: TestApp, options = Options { sweep_interval: Duration::from_millis(200), ..Options::default() }) {
        let mut customers = app.customers();
        let c = create_customer(&mut customers, named("Khách cũ")).await;
        let group = rule_group(&app, "Tạo hơn 45 ngày", r#"create_time < ago("45d")"#).await;
        await_current(&app, &group.id).await;
        assert!(members(&app, &group.id).await.is_empty());
        use crm_classify::pb::{MembershipCause, WatchGroupMembershipChangesRequest, membership_change::Change, watch_group_membership_changes_response::Event};
        let mut events = app.groups().watch_group_membership_changes(WatchGroupMembershipChangesRequest {
            group_ids: vec![group.id.clone()],
            ..Default::default()
        }).await.expect("watch").into_inner();
        app.clock.advance(chrono::Duration::days(46));
        // The sweep's pass streams the customer joining.
        let joined = tokio::time::timeout(EVALUATED_WITHIN, async {
            loop {
                match events.next().await {
                    Some(Ok(r)) => if let Some(Event::Change(change)) = r.event { return change },
                    other => panic!("the stream ended: {other:?}"),
                }
            }
        }).await.expect("the sweep moved the customer in");
        assert_eq!((joined.customer_id.as_str(), joined.change(), joined.cause()), (c.id.as_str(), Change::Joined, MembershipCause::Sweep));
        assert!(members(&app, &group.id).await.contains(&c.id));
        // A customer created now is not 45 days old.
        let fresh = create_customer(&mut customers, named("Khách mới")).await;
        assert!(!fresh.group_ids.contains(&group.id));
        assert_counts(&app, &group.id).await;
    }
}
