//! GetGroupReport: every row compared, field by field, with a count over
//! the customers the test made and the memberships it changed through the
//! API (its own record of who is where, and when each join and leave was
//! made by the manual clock).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crm_classify::pb::{
    Customer, GetGroupReportRequest, GetGroupReportResponse, GroupReportRow, RelationshipCount,
    SourceCount,
};
use tonic::Code;

use crate::fixtures::{
    add_to_group, at_micros, change, create_customer, create_group, delete_customer, delete_group,
    delete_source, manual_relationships, micros, named, new_group, new_group_under, new_source,
    now_micros, rel, relationships, remove_from_group, restore_customer, unknown_id,
    update_customer,
};
use crate::helpers::{
    Backend, TestApp, expect_code, migrate_again_from, new_tenant, violated_fields,
    with_own_database,
};
use crate::on_both_databases;

/// A group as the test made it.
#[derive(Clone)]
struct MadeGroup {
    id: String,
    code: String,
    name: String,
    parent: Option<usize>,
    deleted: bool,
}

/// A customer as the test made it and keeps it.
#[derive(Clone)]
struct MadeCustomer {
    id: String,
    created: i64,
    source: Option<usize>,
    relationship: String,
    revenue: i64,
    /// Indexes of the groups it is in now.
    groups: BTreeSet<usize>,
    deleted: bool,
}

/// One join (or leave) the test made: group, customer, time.
struct Move {
    group: usize,
    customer: String,
    joined: bool,
    time: i64,
}

/// Everything the expectation is computed from.
struct World {
    groups: Vec<MadeGroup>,
    /// (id, name) of the sources.
    sources: Vec<(String, String)>,
    relationships: Vec<crm_classify::pb::Relationship>,
    customers: Vec<MadeCustomer>,
    moves: Vec<Move>,
}

impl World {
    /// Group `g` and its active descendants (when `subtree`).
    fn subtree(&self, g: usize, subtree: bool) -> BTreeSet<usize> {
        let mut found = BTreeSet::from([g]);
        if !subtree {
            return found;
        }
        loop {
            let more: Vec<usize> = (0..self.groups.len())
                .filter(|&c| {
                    !self.groups[c].deleted
                        && self.groups[c].parent.is_some_and(|p| found.contains(&p))
                        && !found.contains(&c)
                })
                .collect();
            if more.is_empty() {
                return found;
            }
            found.extend(more);
        }
    }

    fn row(
        &self,
        group: Option<&MadeGroup>,
        picked: &[&MadeCustomer],
        joined: i64,
        left: i64,
    ) -> GroupReportRow {
        let customers = picked.len() as i64;
        let relationship_counts: Vec<RelationshipCount> = self
            .relationships
            .iter()
            .map(|r| RelationshipCount {
                relationship_id: r.id.clone(),
                code: r.code.clone(),
                name: r.name.clone(),
                color: r.color.clone(),
                position: r.position,
                count: picked.iter().filter(|c| c.relationship == r.id).count() as i64,
            })
            .collect();
        let mut by_name: Vec<usize> = (0..self.sources.len()).collect();
        by_name.sort_by_key(|&s| self.sources[s].1.to_lowercase());
        let mut source_counts: Vec<SourceCount> = by_name
            .into_iter()
            .map(|s| SourceCount {
                source_id: self.sources[s].0.clone(),
                count: picked.iter().filter(|c| c.source == Some(s)).count() as i64,
            })
            .collect();
        source_counts.push(SourceCount {
            source_id: String::new(),
            count: picked.iter().filter(|c| c.source.is_none()).count() as i64,
        });
        source_counts.retain(|s| s.count > 0);
        let closed = rel(&self.relationships, "CLOSED");
        let closed_customers = picked.iter().filter(|c| c.relationship == closed).count() as i64;
        GroupReportRow {
            group_id: group.map(|g| g.id.clone()).unwrap_or_default(),
            group_code: group.map(|g| g.code.clone()).unwrap_or_default(),
            group_name: group.map_or("No group".to_owned(), |g| g.name.clone()),
            customers,
            relationship_counts,
            source_counts,
            closed_customers,
            conversion_rate: if customers == 0 {
                0.0
            } else {
                closed_customers as f64 / customers as f64
            },
            revenue: picked.iter().map(|c| c.revenue).sum(),
            joined,
            left,
        }
    }

    /// The report the request asks for, counted from the test's record.
    fn expected(&self, request: &GetGroupReportRequest) -> GetGroupReportResponse {
        let from = request.create_time_from.as_ref().map(micros);
        let to = request.create_time_to.as_ref().map(micros);
        let in_period = |t: i64| from.is_none_or(|f| t >= f) && to.is_none_or(|u| t < u);
        let bounded = from.is_some() || to.is_some();
        let asked: Vec<usize> = if request.group_ids.is_empty() {
            let mut active: Vec<usize> = (0..self.groups.len())
                .filter(|&g| !self.groups[g].deleted)
                .collect();
            active.sort_by_key(|&g| self.groups[g].name.to_lowercase());
            active
        } else {
            request
                .group_ids
                .iter()
                .map(|id| {
                    self.groups
                        .iter()
                        .position(|g| &g.id == id)
                        .expect("a group of the test")
                })
                .collect()
        };
        let counted: Vec<&MadeCustomer> = self
            .customers
            .iter()
            .filter(|c| !c.deleted && in_period(c.created))
            .collect();
        let mut rows = Vec::new();
        for g in asked {
            let tree = self.subtree(g, request.include_subgroups);
            let picked: Vec<&MadeCustomer> = counted
                .iter()
                .copied()
                .filter(|c| c.groups.iter().any(|m| tree.contains(m)))
                .collect();
            let moved = |joined: bool| -> i64 {
                if !bounded {
                    return 0;
                }
                self.moves
                    .iter()
                    .filter(|m| m.joined == joined && tree.contains(&m.group) && in_period(m.time))
                    .map(|m| m.customer.as_str())
                    .collect::<BTreeSet<_>>()
                    .len() as i64
            };
            rows.push(self.row(Some(&self.groups[g]), &picked, moved(true), moved(false)));
        }
        let ungrouped: Vec<&MadeCustomer> = counted
            .iter()
            .copied()
            .filter(|c| c.groups.iter().all(|&m| self.groups[m].deleted))
            .collect();
        rows.push(self.row(None, &ungrouped, 0, 0));
        GetGroupReportResponse { rows }
    }
}

async fn report(app: &TestApp, request: GetGroupReportRequest) -> GetGroupReportResponse {
    app.customers()
        .get_group_report(request)
        .await
        .expect("group report")
        .into_inner()
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// Groups (a parent with two children, one to be deleted, an empty one),
/// sources, 36 customers in overlapping groups created an hour apart,
/// moved, added to and removed from groups, some deleted.
async fn make_world(app: &TestApp) -> (World, BTreeMap<&'static str, i64>) {
    let mut groups = Vec::new();
    for (name, parent) in [
        ("Ca VIP", None),
        ("Hoi cho 2026", None),
        ("Mien Trung", None),
        ("Da Nang", Some(2)),
        ("Hue", Some(2)),
        ("Se xoa", None),
        ("Trong", None),
        ("Quang Tri", Some(2)),
    ] {
        let made = match parent {
            None => new_group(app, name).await,
            Some(p) => {
                new_group_under(
                    app,
                    name,
                    &groups
                        .get(p)
                        .map_or(String::new(), |g: &MadeGroup| g.id.clone()),
                )
                .await
            }
        };
        groups.push(MadeGroup {
            id: made.id,
            code: made.code,
            name: made.name,
            parent,
            deleted: false,
        });
    }
    let (vip, fair, danang, hue, doomed) = (0, 1, 3, 4, 5);
    let mut sources = Vec::new();
    // Made out of name order.
    for name in ["Zalo", "Facebook", "Website"] {
        let s = new_source(app, name).await;
        sources.push((s.id, s.name));
    }
    let rels = relationships(&mut app.relationships()).await;
    let manual = manual_relationships(&rels);
    let mut customers = Vec::new();
    let mut moves = Vec::new();
    let mut client = app.customers();
    for i in 0..36usize {
        app.clock
            .advance(chrono::Duration::hours(1) + chrono::Duration::microseconds(i as i64));
        let source = [Some(0), Some(1), Some(2), None][i % 4];
        let mut in_groups: BTreeSet<usize> = if i % 5 == 4 {
            BTreeSet::new()
        } else {
            let bits = (i * 7 + 3) % 32;
            (0..5).filter(|g| bits & (1 << g) != 0).collect()
        };
        if i % 6 == 0 {
            in_groups.insert(doomed);
        }
        let created_in = if i % 9 == 8 {
            rel(&rels, "HOT")
        } else {
            String::new()
        };
        let made = create_customer(
            &mut client,
            Customer {
                source_id: source.map_or(String::new(), |s: usize| sources[s].0.clone()),
                group_ids: in_groups.iter().map(|&g| groups[g].id.clone()).collect(),
                relationship_id: created_in,
                revenue: (i as i64 + 1) * 1_500_000,
                ..named(&format!("Khách {i}"))
            },
        )
        .await;
        let created = micros(made.create_time.as_ref().expect("create time"));
        assert_eq!(
            created,
            now_micros(app),
            "a customer is created at the clock's time"
        );
        for &g in &in_groups {
            moves.push(Move {
                group: g,
                customer: made.id.clone(),
                joined: true,
                time: created,
            });
        }
        let mut relationship = made.relationship_id.clone();
        let target = &manual[(i * 7) % 6];
        if *target != relationship {
            app.clock.advance(minutes(1));
            change(&mut client, &made.id, target).await;
            relationship = target.clone();
        }
        customers.push(MadeCustomer {
            id: made.id,
            created,
            source,
            relationship,
            revenue: (i as i64 + 1) * 1_500_000,
            groups: in_groups,
            deleted: false,
        });
    }
    let mut times = BTreeMap::new();
    // Joins and leaves by hand, each write at a time of its own.
    let mut membership =
        async |group: usize, picked: Vec<usize>, join: bool, label: &'static str| {
            app.clock.advance(chrono::Duration::hours(1));
            let now = now_micros(app);
            times.insert(label, now);
            let ids: Vec<String> = picked.iter().map(|&i| customers[i].id.clone()).collect();
            if join {
                add_to_group(app, &groups[group].id, &ids).await;
            } else {
                remove_from_group(app, &groups[group].id, &ids).await;
            }
            for i in picked {
                let c = &mut customers[i];
                let changed = if join {
                    c.groups.insert(group)
                } else {
                    c.groups.remove(&group)
                };
                if changed {
                    moves.push(Move {
                        group,
                        customer: c.id.clone(),
                        joined: join,
                        time: now,
                    });
                }
            }
        };
    membership(vip, vec![1, 2, 3, 4, 9, 14, 19], true, "join vip").await;
    membership(fair, (0..36).collect(), false, "leave fair").await;
    membership(hue, vec![0, 5, 10, 15, 20, 25], true, "join hue").await;
    membership(danang, vec![5, 10, 11, 12], true, "join danang").await;
    membership(fair, vec![2, 4, 6, 8], true, "join fair").await;
    membership(7, vec![1, 9, 17, 25, 33], true, "join quang tri").await;
    // Every seventh customer is deleted: out of every row, and it leaves
    // each of its groups.
    for i in (3..36).step_by(7) {
        app.clock.advance(minutes(10));
        let now = now_micros(app);
        delete_customer(&mut client, &customers[i].id).await;
        customers[i].deleted = true;
        for &g in &customers[i].groups {
            moves.push(Move {
                group: g,
                customer: customers[i].id.clone(),
                joined: false,
                time: now,
            });
        }
    }
    // The first one deleted is restored: back in its groups (joining
    // them again).
    app.clock.advance(minutes(10));
    let now = now_micros(app);
    times.insert("restore", now);
    restore_customer(&mut client, &customers[3].id)
        .await
        .expect("restore customer");
    customers[3].deleted = false;
    for &g in &customers[3].groups {
        moves.push(Move {
            group: g,
            customer: customers[3].id.clone(),
            joined: true,
            time: now,
        });
    }
    times.insert("deletes done", now_micros(app));
    // A deleted group keeps its memberships for its restore; a deleted
    // source is still listed in its name order.
    app.clock.advance(minutes(10));
    delete_group(app, &groups[doomed].id, false).await;
    groups[doomed].deleted = true;
    // A deleted subgroup is no part of its parent's subtree any more.
    delete_group(app, &groups[7].id, false).await;
    groups[7].deleted = true;
    delete_source(app, &sources[2].0).await;
    let relationships = rels;
    (
        World {
            groups,
            sources,
            relationships,
            customers,
            moves,
        },
        times,
    )
}

on_both_databases! {
    async fn group_report_rows_equal_a_count_of_the_customers_and_the_membership_log(app: TestApp) {
        let (world, times) = make_world(&app).await;
        let created = |i: usize| world.customers[i].created;
        // Sanity of the record: a customer in two subgroups of the parent.
        let (central, danang, hue) = (2, 3, 4);
        assert!(
            world.customers.iter().any(|c| !c.deleted && c.groups.contains(&danang) && c.groups.contains(&hue)),
            "some customer is in both subgroups"
        );
        let periods: Vec<(Option<i64>, Option<i64>)> = vec![
            (None, None),
            // Exactly at a creation: that customer is in, the next bound out.
            (Some(created(10)), None),
            (None, Some(created(20))),
            (Some(created(10)), Some(created(20))),
            (Some(created(10) + 1), Some(created(20) + 1)),
            // Exactly at a join: it counts; exactly at a leave: it does not.
            (Some(times["join vip"]), None),
            (Some(times["join vip"]), Some(times["leave fair"])),
            (Some(times["leave fair"]), Some(times["leave fair"] + 1)),
            (Some(times["join vip"] + 1), Some(times["join danang"])),
            (Some(times["join hue"]), Some(times["deletes done"] + 1)),
            (Some(times["restore"]), None),
            (None, Some(times["join hue"])),
        ];
        let explicit: Vec<String> = [central, 0, 5, 6, hue, 1, 7]
            .iter()
            .map(|&g| world.groups[g].id.clone())
            .collect();
        for (from, to) in periods {
            for include_subgroups in [false, true] {
                for group_ids in [Vec::new(), explicit.clone()] {
                    let request = GetGroupReportRequest {
                        group_ids,
                        include_subgroups,
                        create_time_from: from.map(at_micros),
                        create_time_to: to.map(at_micros),
                    };
                    let expected = world.expected(&request);
                    let got = report(&app, request.clone()).await;
                    assert_eq!(got, expected, "for {request:?}");
                }
            }
        }
        // The parent's subtree counts a customer of both children once:
        // less than its three groups' rows added up.
        let trio: Vec<String> = [central, danang, hue].iter().map(|&g| world.groups[g].id.clone()).collect();
        let ask = |include_subgroups| GetGroupReportRequest { group_ids: trio.clone(), include_subgroups, ..Default::default() };
        let alone = report(&app, ask(false)).await;
        let tree = report(&app, ask(true)).await;
        let added: i64 = alone.rows[..3].iter().map(|r| r.customers).sum();
        assert!(tree.rows[0].customers < added, "{} vs {added}", tree.rows[0].customers);
        // The deleted group and the empty one, asked for by id.
        let request = GetGroupReportRequest {
            group_ids: vec![world.groups[5].id.clone(), world.groups[6].id.clone()],
            ..Default::default()
        };
        let got = report(&app, request).await;
        assert!(got.rows[0].customers > 0, "the deleted group reports its kept memberships");
        assert_eq!(got.rows[1].customers, 0);
        assert!(got.rows[1].relationship_counts.iter().all(|c| c.count == 0));
        assert_eq!(got.rows[1].relationship_counts.len(), 7, "zeros included");
        assert!(got.rows[1].source_counts.is_empty());
        assert_eq!((got.rows[1].conversion_rate, got.rows[1].revenue), (0.0, 0));
    }

    async fn group_report_refuses_bad_group_lists_and_inverted_periods(app: TestApp) {
        let a = new_group(&app, "A").await.id;
        let b = new_group(&app, "B").await.id;
        let ask = |ids: Vec<String>| {
            let mut client = app.customers();
            async move {
                client.get_group_report(GetGroupReportRequest { group_ids: ids, ..Default::default() }).await
            }
        };
        let status = expect_code(ask(vec![a.clone(), b.clone(), a.clone()]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[2]"]);
        let status = expect_code(ask(vec![a.clone(), "not-an-id".into()]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[1]"]);
        let status = expect_code(ask(vec![b.clone(), a.clone(), unknown_id()]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[2]"]);
        let theirs = create_group(
            &mut app.groups_of(&new_tenant()),
            crm_classify::pb::Group { name: "Của người khác".into(), ..Default::default() },
        )
        .await
        .id;
        let status = expect_code(ask(vec![theirs, a.clone()]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[0]"]);
        let status = expect_code(ask((0..1001).map(|_| unknown_id()).collect()).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids"]);
        // 1000 is the most allowed: unknown ids are then refused one by one.
        let mut thousand: Vec<String> = (0..999).map(|_| unknown_id()).collect();
        thousand.insert(0, a.clone());
        let status = expect_code(ask(thousand).await, Code::InvalidArgument);
        let fields = violated_fields(&status);
        // (The details list the first few violations.)
        assert_eq!(fields.first().map(String::as_str), Some("group_ids[1]"), "{fields:?}");
        assert!(!fields.iter().any(|f| f == "group_ids"), "1000 ids are allowed: {fields:?}");

        let now = now_micros(&app);
        let inverted = GetGroupReportRequest {
            create_time_from: Some(at_micros(now)),
            create_time_to: Some(at_micros(now - 1)),
            ..Default::default()
        };
        let status = expect_code(app.customers().get_group_report(inverted).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["create_time_to"]);
    }
}

/// The report without a period, which reads the counters the write path
/// keeps, and the same report counted from the customers (a period from
/// the epoch holds every customer; its joins and leaves are set aside).
async fn assert_counters_agree(app: &TestApp, step: &str) {
    let rows = |response: GetGroupReportResponse| -> Vec<GroupReportRow> {
        response
            .rows
            .into_iter()
            .map(|row| GroupReportRow {
                joined: 0,
                left: 0,
                ..row
            })
            .collect()
    };
    for include_subgroups in [false, true] {
        let counted = report(
            app,
            GetGroupReportRequest {
                include_subgroups,
                ..Default::default()
            },
        )
        .await;
        let scanned = report(
            app,
            GetGroupReportRequest {
                include_subgroups,
                create_time_from: Some(at_micros(0)),
                ..Default::default()
            },
        )
        .await;
        assert!(
            counted.rows.iter().any(|r| r.customers > 0),
            "{step}: the report counts someone"
        );
        assert_eq!(
            rows(counted),
            rows(scanned),
            "{step} (include_subgroups {include_subgroups})"
        );
    }
}

on_both_databases! {
    async fn group_report_counters_follow_every_kind_of_write(app: TestApp) {
        every_kind_of_write(&app, true).await;
    }
}

/// Makes customers, groups (a subtree, rule groups) and sources, then
/// writes every kind of change that moves the group report's figures;
/// when `check`, the counters are compared with a count after each step.
async fn every_kind_of_write(app: &TestApp, check: bool) {
    let assert_counters_agree = async |app: &TestApp, step: &str| {
        if check {
            assert_counters_agree(app, step).await;
        }
    };
    let mut client = app.customers();
    let zalo = new_source(app, "Zalo").await.id;
    let web = new_source(app, "Website").await.id;
    let parent = new_group(app, "Miền Trung").await.id;
    let child = new_group_under(app, "Đà Nẵng", &parent).await.id;
    let lone = new_group(app, "Hội chợ").await.id;
    let rels = relationships(&mut app.relationships()).await;
    // Revenues past 2^32 (and their sum past i64 in none of these).
    let big = 987_654_321_987_654;
    let mut ids = Vec::new();
    for i in 0..12usize {
        let groups: Vec<String> = match i % 4 {
            0 => vec![],
            1 => vec![parent.clone()],
            2 => vec![child.clone(), lone.clone()],
            _ => vec![lone.clone()],
        };
        let made = create_customer(
            &mut client,
            Customer {
                source_id: [zalo.clone(), web.clone(), String::new()][i % 3].clone(),
                group_ids: groups,
                province: if i % 2 == 0 {
                    "Đà Nẵng".into()
                } else {
                    "Huế".into()
                },
                revenue: big - i as i64 * 1_000_003,
                ..named(&format!("Khách {i}"))
            },
        )
        .await;
        ids.push(made.id);
    }
    assert_counters_agree(app, "creations").await;
    let by_place = create_group(
        &mut app.groups(),
        crm_classify::pb::Group {
            name: "Ở Đà Nẵng".into(),
            rule: r#"province = "Đà Nẵng""#.into(),
            ..Default::default()
        },
    )
    .await
    .id;
    let hot = create_group(
        &mut app.groups(),
        crm_classify::pb::Group {
            name: "Nóng".into(),
            rule: r#"relationship = "HOT""#.into(),
            parent_id: lone.clone(),
            ..Default::default()
        },
    )
    .await
    .id;
    crate::rule_groups::await_current(app, &by_place).await;
    crate::rule_groups::await_current(app, &hot).await;
    assert_counters_agree(app, "rule groups filled").await;
    // Source, revenue and a province the rule reads, edited.
    update_customer(
        app,
        Customer {
            id: ids[0].clone(),
            source_id: web.clone(),
            ..Default::default()
        },
        &["source_id"],
    )
    .await;
    update_customer(
        app,
        Customer {
            id: ids[1].clone(),
            revenue: 7,
            ..Default::default()
        },
        &["revenue"],
    )
    .await;
    update_customer(
        app,
        Customer {
            id: ids[2].clone(),
            province: "Huế".into(),
            ..Default::default()
        },
        &["province"],
    )
    .await;
    update_customer(
        app,
        Customer {
            id: ids[3].clone(),
            source_id: String::new(),
            province: "Đà Nẵng".into(),
            ..Default::default()
        },
        &["source_id", "province"],
    )
    .await;
    assert_counters_agree(app, "edits").await;
    // Relationship moves, one into a rule's relationship.
    change(&mut client, &ids[4], &rel(&rels, "HOT")).await;
    change(&mut client, &ids[5], &rel(&rels, "CLOSED")).await;
    assert_counters_agree(app, "moves").await;
    // Memberships by hand: a customer of no group joins, one leaves
    // its only group, one is pinned into a rule group.
    add_to_group(app, &lone, &[ids[0].clone(), ids[1].clone()]).await;
    remove_from_group(app, &parent, std::slice::from_ref(&ids[5])).await;
    add_to_group(app, &hot, std::slice::from_ref(&ids[8])).await;
    assert_counters_agree(app, "memberships").await;
    delete_customer(&mut client, &ids[6]).await;
    delete_customer(&mut client, &ids[7]).await;
    restore_customer(&mut client, &ids[7])
        .await
        .expect("restore");
    assert_counters_agree(app, "deletions").await;
    // A deleted group: its members without another active group are
    // in no group; restored, they are its members again.
    delete_group(app, &parent, true).await;
    assert_counters_agree(app, "a group deleted").await;
    app.groups()
        .restore_group(crm_classify::pb::RestoreGroupRequest {
            id: parent.clone(),
            etag: String::new(),
        })
        .await
        .expect("restore group");
    assert_counters_agree(app, "the group restored").await;
}

/// Customers stored before the counters existed are counted by their
/// migration: the report read from the counters it filled equals the one
/// the write path kept, and a count of the customers.
async fn stored_customers_are_counted_by_the_migration(backend: Backend) {
    with_own_database(backend, "tallies", async |url| {
        counted_by_the_migration(backend, url).await
    })
    .await;
}

async fn counted_by_the_migration(backend: Backend, url: String) {
    let mut app = TestApp::spawn_on_url(backend, url.clone()).await;
    every_kind_of_write(&app, false).await;
    let kept = report(&app, GetGroupReportRequest::default()).await;
    assert!(
        kept.rows.iter().filter(|r| r.customers > 0).count() > 3,
        "{kept:?}"
    );
    let tenant = app.tenant.clone();
    app.stop_and_wait(Duration::from_secs(20)).await;

    migrate_again_from(&url, "m20261207_000016_group_tallies").await;

    let mut app = TestApp::spawn_on_url(backend, url).await;
    app.tenant = tenant;
    assert_eq!(report(&app, GetGroupReportRequest::default()).await, kept);
    assert_counters_agree(&app, "the migration").await;
    app.stop_and_wait(Duration::from_secs(20)).await;
}

crate::on_both_backends!(stored_customers_are_counted_by_the_migration);
