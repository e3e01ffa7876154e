//! GetRelationshipFlow: the move matrix, the stays and the creations,
//! compared with a replay of every customer's relationship history (read
//! back) filtered by the owner, source and groups the test's own record
//! says each customer had when each change was made.

use std::collections::BTreeMap;
use std::time::Duration;

use crm_classify::pb::{
    Customer, GetRelationshipFlowRequest, GetRelationshipFlowResponse, RelationshipChangeCause,
    RelationshipMoveCount, RelationshipStay,
};
use tonic::Code;

use crate::fixtures::{
    add_to_group, apply_inactivity_rules, at_micros, change, create_customer, create_group,
    delete_customer, delete_group, delete_relationship_into, delete_source, manual_relationships,
    named, nearest_rank, new_group, new_manual_relationship, new_source, now_micros,
    record_contact, rel, relationships, remove_from_group, restore_on_contact, unknown_id,
    update_customer,
};
use crate::helpers::{
    Backend, TestApp, expect_code, migrate_again_from, new_tenant, violated_fields,
    with_own_database,
};
use crate::on_both_databases;
use crate::report_record::{Attrs, Record, duration, time_of, within};

/// A flow request.
fn flow_request(
    (from, to): (Option<i64>, Option<i64>),
    group: &str,
    source: &str,
    owner: &str,
) -> GetRelationshipFlowRequest {
    GetRelationshipFlowRequest {
        from_time: from.map(at_micros),
        to_time: to.map(at_micros),
        group_id: group.to_owned(),
        source_id: source.to_owned(),
        owner_id: owner.to_owned(),
    }
}

async fn flow(app: &TestApp, request: GetRelationshipFlowRequest) -> GetRelationshipFlowResponse {
    app.relationships()
        .get_relationship_flow(request)
        .await
        .expect("relationship flow")
        .into_inner()
}

/// The flow `request` asks for, replayed from the histories. `order` is
/// the report order of the relationships (active by position, then
/// deleted).
fn expected(
    request: &GetRelationshipFlowRequest,
    record: &Record,
    histories: &BTreeMap<String, Vec<crm_classify::pb::RelationshipChange>>,
    order: &[String],
) -> GetRelationshipFlowResponse {
    let from = request.from_time.as_ref().map(crate::fixtures::micros);
    let to = request.to_time.as_ref().map(crate::fixtures::micros);
    let rank = |id: &str| {
        order
            .iter()
            .position(|r| r == id)
            .expect("a known relationship")
    };
    let mut created = 0;
    let mut moves: BTreeMap<(usize, usize), (i64, i64)> = BTreeMap::new();
    let mut stays: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for (id, changes) in histories {
        for (k, c) in changes.iter().enumerate() {
            let t = time_of(c);
            if !within(t, from, to)
                || !record
                    .at(id, t)
                    .pass(&request.group_id, &request.source_id, &request.owner_id)
            {
                continue;
            }
            if c.old_relationship_id.is_empty() {
                created += 1;
                continue;
            }
            let automatic = matches!(
                c.cause(),
                RelationshipChangeCause::AutomaticInactivity
                    | RelationshipChangeCause::ContactResumed
            );
            let (old, new) = (rank(&c.old_relationship_id), rank(&c.new_relationship_id));
            let count = moves.entry((old, new)).or_default();
            if automatic {
                count.1 += 1;
            } else {
                count.0 += 1;
            }
            stays
                .entry(old)
                .or_default()
                .push(t - time_of(&changes[k - 1]));
        }
    }
    GetRelationshipFlowResponse {
        moves: moves
            .into_iter()
            .map(|((old, new), (manual, automatic))| RelationshipMoveCount {
                from_relationship_id: order[old].clone(),
                to_relationship_id: order[new].clone(),
                manual,
                automatic,
            })
            .collect(),
        stays: stays
            .into_iter()
            .map(|(left, durations)| RelationshipStay {
                relationship_id: order[left].clone(),
                left: durations.len() as i64,
                median_time: nearest_rank(&durations, 50).map(duration),
                p90_time: nearest_rank(&durations, 90).map(duration),
            })
            .collect(),
        created,
    }
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

on_both_databases! {
    async fn relationship_flow_equals_a_replay_of_the_histories_with_the_attributes_of_the_time(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let code = |c: &str| rel(&rels, c);
        let (hot, closed, lost, dont_forget) = (code("HOT"), code("CLOSED"), code("LOST"), code("DONT_FORGET"));
        let interim = new_manual_relationship(&app, "Tạm giữ").await;
        restore_on_contact(&app, &dont_forget).await;
        let mut manual = manual_relationships(&rels);
        manual.push(interim.clone());
        let web = new_source(&app, "Web").await.id;
        let zalo = new_source(&app, "Zalo").await.id;
        let g1 = new_group(&app, "Nhóm 1").await.id;
        let g2 = new_group(&app, "Nhóm 2").await.id;
        let owners = ["u-1", "u-2", ""];
        let mut record = Record::default();
        let mut client = app.customers();
        let mut ids = Vec::new();
        for i in 0..18usize {
            app.clock.advance(chrono::Duration::hours(1) + chrono::Duration::microseconds(i as i64));
            let mut groups = Vec::new();
            if i % 2 == 0 { groups.push(g1.clone()); }
            if i % 3 == 0 { groups.push(g2.clone()); }
            let made = create_customer(&mut client, Customer {
                owner_id: owners[i % 3].into(),
                source_id: [web.clone(), zalo.clone(), String::new()][(i / 2) % 3].clone(),
                group_ids: groups,
                relationship_id: if i % 5 == 4 { hot.clone() } else { String::new() },
                ..named(&format!("Khách {i}"))
            })
            .await;
            record.set(&made.id, now_micros(&app), Attrs::of(&made));
            ids.push(made.id);
        }
        // Rounds of moves by hand, a few minutes (and odd microseconds) apart.
        let mut holds: Vec<String> = Vec::new();
        for id in &ids {
            holds.push(crate::fixtures::get_customer(&mut client, id).await.relationship_id);
        }
        for r in 0..3usize {
            for i in 0..18usize {
                if (i + r) % 3 == 0 { continue; }
                app.clock.advance(minutes(7) + chrono::Duration::seconds((i * 13) as i64) + chrono::Duration::microseconds(r as i64 + 1));
                let target = if (i + r) % 7 == 0 { interim.clone() } else { manual[(i * 5 + r * 3 + 1) % 6].clone() };
                if target != holds[i] {
                    change(&mut client, &ids[i], &target).await;
                    holds[i] = target;
                }
            }
        }
        // The pointed case: customer 0 (owner u-1, source Web, groups 1
        // and 2) is closed, then changes owner, source and groups.
        app.clock.advance(minutes(5));
        if holds[0] == closed {
            change(&mut client, &ids[0], &hot).await;
            app.clock.advance(minutes(5));
        }
        let closing = now_micros(&app);
        let closing_change = change(&mut client, &ids[0], &closed).await.change.expect("a change");
        assert_eq!(time_of(&closing_change), closing);
        holds[0] = closed.clone();
        let first = ids[0].clone();
        // Owners, sources and groups change after the moves.
        app.clock.advance(minutes(5));
        update_customer(&app, Customer { id: first.clone(), owner_id: "u-2".into(), source_id: zalo.clone(), ..Default::default() }, &["owner_id", "source_id"]).await;
        record.edit(&app, &first, |a| { a.owner = "u-2".into(); a.source = zalo.clone(); });
        app.clock.advance(minutes(5));
        remove_from_group(&app, &g1, std::slice::from_ref(&first)).await;
        record.edit(&app, &first, |a| { a.groups.remove(&g1); });
        for i in (1..18).step_by(4) {
            app.clock.advance(minutes(3));
            let owner = owners[(i + 1) % 3];
            update_customer(&app, Customer { id: ids[i].clone(), owner_id: owner.into(), ..Default::default() }, &["owner_id"]).await;
            record.edit(&app, &ids[i], |a| a.owner = owner.into());
        }
        for i in (2..18).step_by(5) {
            app.clock.advance(minutes(3));
            update_customer(&app, Customer { id: ids[i].clone(), source_id: web.clone(), ..Default::default() }, &["source_id"]).await;
            record.edit(&app, &ids[i], |a| a.source = web.clone());
        }
        let joining: Vec<String> = (1..18).step_by(4).map(|i| ids[i].clone()).collect();
        app.clock.advance(minutes(3));
        add_to_group(&app, &g2, &joining).await;
        for id in &joining {
            record.edit(&app, id, |a| { a.groups.insert(g2.clone()); });
        }
        // A month without contact: the inactivity rule moves everyone.
        app.clock.advance(chrono::Duration::days(31));
        let swept = apply_inactivity_rules(&app).await;
        assert_eq!(swept.move_count, 18, "{swept:?}");
        let sweep_time = now_micros(&app);
        // Contacts bring some back (CONTACT_RESUMED), at times of their own.
        for i in (0..18).step_by(4) {
            app.clock.advance(minutes(11) + chrono::Duration::microseconds(i as i64));
            record_contact(&mut client, &ids[i], None).await;
        }
        // More moves by hand, out of the automatic relationship too.
        for i in (1..18).step_by(3) {
            app.clock.advance(minutes(2) + chrono::Duration::seconds(i as i64));
            let target = if i % 2 == 1 { interim.clone() } else { closed.clone() };
            change(&mut client, &ids[i], &target).await;
        }
        // Deleting a relationship moves its holders (RELATIONSHIP_DELETED).
        app.clock.advance(minutes(30));
        let deletion = now_micros(&app);
        let reassigned = delete_relationship_into(&app, &interim, &lost).await;
        assert!(reassigned.reassigned_customer_count > 0, "{reassigned:?}");
        // A deleted customer's changes stay in the log; a deleted group and
        // source can still be asked for.
        app.clock.advance(minutes(1));
        delete_customer(&mut client, &ids[7]).await;
        app.clock.advance(minutes(1));
        delete_group(&app, &g2, false).await;
        delete_source(&app, &zalo).await;
        app.clock.advance(minutes(1));
        let end = now_micros(&app);

        let histories = record.histories(&app).await;
        let causes: Vec<RelationshipChangeCause> = histories.values().flatten().map(|c| c.cause()).collect();
        for cause in [RelationshipChangeCause::Manual, RelationshipChangeCause::AutomaticInactivity, RelationshipChangeCause::ContactResumed, RelationshipChangeCause::RelationshipDeleted] {
            assert!(causes.contains(&cause), "the scenario has {cause:?} changes");
        }
        // Report order: active relationships by position, then the deleted one.
        let mut order: Vec<String> = relationships(&mut app.relationships()).await.into_iter().map(|r| r.id).collect();
        order.push(interim.clone());

        let some_contact = histories[&ids[4]].iter().find(|c| c.cause() == RelationshipChangeCause::ContactResumed).map(time_of).expect("customer 4 resumed");
        let periods: Vec<(Option<i64>, Option<i64>)> = vec![
            (None, None),
            (Some(closing), None),
            (None, Some(closing)),
            (Some(closing), Some(closing + 1)),
            (Some(closing - 1), Some(closing)),
            (Some(sweep_time), Some(some_contact)),
            (Some(some_contact), Some(deletion + 1)),
            (Some(deletion), Some(end)),
            (Some(end), Some(end + 1_000_000)),
        ];
        let filters: Vec<(&str, &str, &str)> = vec![
            ("", "", ""),
            ("", "", "u-1"),
            ("", "", "u-2"),
            ("", &web, ""),
            ("", &zalo, ""),
            (&g1, "", ""),
            (&g2, "", ""),
            (&g1, &web, "u-1"),
        ];
        for &period in &periods {
            for &(group, source, owner) in &filters {
                let request = flow_request(period, group, source, owner);
                let want = expected(&request, &record, &histories, &order);
                let got = flow(&app, request.clone()).await;
                assert_eq!(got, want, "for {request:?}");
            }
        }
        // The unbounded flow is not trivial: it has moves of both kinds
        // and stays with several durations.
        let all = flow(&app, flow_request((None, None), "", "", "")).await;
        assert_eq!(all.created, 18);
        assert!(all.moves.iter().any(|m| m.automatic > 0) && all.moves.iter().any(|m| m.manual > 0));
        assert!(all.stays.iter().any(|s| s.left >= 5 && s.median_time != s.p90_time), "{:?}", all.stays);

        // The closing of customer 0 counts under the owner, source and
        // groups it had then, not under those it has now.
        let one = (Some(closing), Some(closing + 1));
        let just_that = |got: &GetRelationshipFlowResponse| {
            got.moves.len() == 1 && got.moves[0].to_relationship_id == closed && got.moves[0].manual == 1 && got.created == 0
        };
        let empty = GetRelationshipFlowResponse::default();
        assert!(just_that(&flow(&app, flow_request(one, "", "", "u-1")).await));
        assert_eq!(flow(&app, flow_request(one, "", "", "u-2")).await, empty);
        assert!(just_that(&flow(&app, flow_request(one, "", &web, "")).await));
        assert_eq!(flow(&app, flow_request(one, "", &zalo, "")).await, empty);
        assert!(just_that(&flow(&app, flow_request(one, &g1, "", "")).await));
        // One microsecond earlier or the period ending at it: nothing.
        assert_eq!(flow(&app, flow_request((Some(closing - 1), Some(closing)), "", "", "")).await, empty);
    }

    async fn relationship_flow_refuses_inverted_periods_and_unknown_groups_and_sources(app: TestApp) {
        let now = now_micros(&app);
        let ask = |request: GetRelationshipFlowRequest| {
            let mut client = app.relationships();
            async move { client.get_relationship_flow(request).await }
        };
        let status = expect_code(ask(flow_request((Some(now), Some(now - 1)), "", "", "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["to_time"]);
        let status = expect_code(ask(flow_request((None, None), &unknown_id(), "", "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_id"]);
        let status = expect_code(ask(flow_request((None, None), "", &unknown_id(), "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["source_id"]);
        let status = expect_code(ask(flow_request((None, None), &unknown_id(), &unknown_id(), "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_id", "source_id"]);
        let status = expect_code(ask(flow_request((None, None), "not-an-id", "", "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_id"]);
        let theirs = create_group(&mut app.groups_of(&new_tenant()), crm_classify::pb::Group { name: "Của người khác".into(), ..Default::default() }).await.id;
        let status = expect_code(ask(flow_request((None, None), &theirs, "", "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_id"]);
        // A tenant without changes: an empty flow.
        assert_eq!(flow(&app, flow_request((None, None), "", "", "")).await, GetRelationshipFlowResponse::default());
    }
}

/// Microseconds in a day.
const DAY: i64 = 86_400_000_000;

/// What [`days_of_moves`] made: every customer's attributes, and the UTC
/// midnights its moves crossed, one of them at the exact time of a move.
struct Days {
    record: Record,
    midnights: Vec<i64>,
    at_midnight: i64,
}

/// Ten customers (all of owner u-1) created, then moved by hand over about
/// six days: stays of many lengths, several to a bucket of the tallies
/// (lengths a quarter-octave apart), moves on both sides of midnights and
/// one made exactly at one.
async fn days_of_moves(app: &TestApp) -> Days {
    let rels = relationships(&mut app.relationships()).await;
    let manual = manual_relationships(&rels);
    let mut record = Record::default();
    let mut client = app.customers();
    let (mut ids, mut holds) = (Vec::new(), Vec::new());
    for i in 0..10usize {
        app.clock
            .advance(minutes(13) + chrono::Duration::microseconds(i as i64));
        let made = create_customer(
            &mut client,
            Customer {
                owner_id: "u-1".into(),
                ..named(&format!("Khách {i}"))
            },
        )
        .await;
        record.set(&made.id, now_micros(app), Attrs::of(&made));
        holds.push(made.relationship_id.clone());
        ids.push(made.id);
    }
    let start = now_micros(app);
    let mut at_midnight = None;
    for r in 0..30usize {
        app.clock.advance(
            chrono::Duration::hours(2)
                + minutes(11 * r as i64)
                + chrono::Duration::microseconds(r as i64 * 7),
        );
        if r == 12 {
            // The next move falls exactly on a midnight.
            crate::fixtures::set_clock_to_next_midnight(app);
        }
        for i in 0..ids.len() {
            if (i + r) % 3 != 0 {
                continue;
            }
            let target = &manual[(i * 5 + r * 3 + 1) % manual.len()];
            if *target == holds[i] {
                continue;
            }
            let made = change(&mut client, &ids[i], target)
                .await
                .change
                .expect("a move");
            if r == 12 && at_midnight.is_none() {
                at_midnight = Some(time_of(&made));
            }
            holds[i] = target.clone();
        }
    }
    let end = now_micros(app);
    let at_midnight = at_midnight.expect("a move at midnight");
    assert_eq!(at_midnight.rem_euclid(DAY), 0, "the move is at midnight");
    let midnights = crate::fixtures::midnights_between(start, end);
    assert!(
        midnights.len() >= 4,
        "the moves span several days: {midnights:?}"
    );
    Days {
        record,
        midnights,
        at_midnight,
    }
}

/// Periods that cut the days of [`days_of_moves`] every way: open, whole
/// days, a microsecond more or less than whole days, parts of days on both
/// sides, within a day, across one midnight, empty, and bounded at the
/// move made at midnight.
fn periods_across_days(days: &Days) -> Vec<(Option<i64>, Option<i64>)> {
    let m = &days.midnights;
    let hour = 3_600_000_000;
    vec![
        (None, None),
        (Some(m[0]), Some(m[2])),
        (Some(m[0] - 1), Some(m[2] + 1)),
        (Some(m[0] + 1), Some(m[2] - 1)),
        (Some(m[0] + 5 * hour), Some(m[3] + 2 * hour)),
        (Some(m[1] + hour), Some(m[1] + 9 * hour)),
        (Some(m[1] - 3 * hour), Some(m[1] + 3 * hour)),
        (None, Some(m[1])),
        (Some(m[1]), None),
        (Some(m[1] + 7 * hour), None),
        (None, Some(m[2] + 7 * hour)),
        (Some(m[1]), Some(m[1])),
        (Some(days.at_midnight), Some(days.at_midnight + 1)),
        (Some(days.at_midnight - 1), Some(days.at_midnight)),
        (Some(days.at_midnight), Some(m[m.len() - 1] + DAY)),
    ]
}

/// The unfiltered flow of each period (read from the daily tallies and
/// the log at the ends) equals the replay, and the same flow read from the
/// log alone (an owner every customer has).
async fn flows_agree_with_the_replay(
    app: &TestApp,
    days: &Days,
) -> Vec<GetRelationshipFlowResponse> {
    let histories = days.record.histories(app).await;
    let order: Vec<String> = relationships(&mut app.relationships())
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut flows = Vec::new();
    for period in periods_across_days(days) {
        let request = flow_request(period, "", "", "");
        let got = flow(app, request.clone()).await;
        assert_eq!(
            got,
            expected(&request, &days.record, &histories, &order),
            "for {request:?}"
        );
        assert_eq!(
            flow(app, flow_request(period, "", "", "u-1")).await,
            got,
            "the log alone, for {request:?}"
        );
        flows.push(got);
    }
    // Not trivial: many stays, percentiles apart.
    let all = &flows[0];
    assert!(
        all.stays
            .iter()
            .filter(|s| s.left >= 8 && s.median_time != s.p90_time)
            .count()
            >= 3,
        "{:?}",
        all.stays
    );
    flows
}

on_both_databases! {
    async fn the_unfiltered_flow_from_daily_tallies_equals_a_replay_across_midnights(app: TestApp) {
        let days = days_of_moves(&app).await;
        flows_agree_with_the_replay(&app, &days).await;
    }
}

/// The daily tallies of changes logged before their migration are filled
/// by it: undone and run again, the flows are those the write path kept.
async fn daily_tallies_are_filled_by_the_migration(backend: Backend) {
    with_own_database(backend, "flow", async |url| {
        let mut app = TestApp::spawn_on_url(backend, url.clone()).await;
        let days = days_of_moves(&app).await;
        let kept = flows_agree_with_the_replay(&app, &days).await;
        let tenant = app.tenant.clone();
        app.stop_and_wait(Duration::from_secs(20)).await;

        migrate_again_from(&url, "m20261207_000017_flow_tallies").await;

        let mut app = TestApp::spawn_on_url(backend, url).await;
        app.tenant = tenant;
        assert_eq!(flows_agree_with_the_replay(&app, &days).await, kept);
        app.stop_and_wait(Duration::from_secs(20)).await;
    })
    .await;
}

crate::on_both_backends!(daily_tallies_are_filled_by_the_migration);

/// The migration's SQL keys the tallies as the write path does: the day of
/// times around midnights (before the epoch too), and the bucket of stay
/// lengths at every bucket's bounds.
async fn the_migrations_tally_keys_match_the_write_paths(backend: Backend) {
    use migrations::tallies::{
        LAST_BUCKET, day_of, day_sql, stay_bounds, stay_bucket, stay_bucket_sql,
    };
    with_own_database(backend, "tally_keys", async |url| {
        // A new SQLite file is created when asked for.
        let url = if url.starts_with("sqlite:") {
            format!("{url}?mode=rwc")
        } else {
            url
        };
        let db = sea_orm::Database::connect(&url).await.expect("connect");
        let mut values = vec![
            i64::MIN + 1,
            -DAY - 1,
            -DAY,
            -DAY + 1,
            -1,
            0,
            1,
            DAY - 1,
            DAY,
            DAY + 1,
            i64::MAX,
        ];
        for bucket in 1..=LAST_BUCKET {
            let (lower, upper) = stay_bounds(bucket);
            let lower = lower.expect("a lower bound");
            values.extend([lower - 1, lower, lower + 1]);
            values.extend(upper.map(|u| u - 1));
        }
        for value in values {
            let literal = format!("({value})");
            let sql = format!(
                "SELECT {}, {}",
                stay_bucket_sql(&literal),
                day_sql(&literal)
            );
            let row = sea_orm::ConnectionTrait::query_one_raw(
                &db,
                sea_orm::Statement::from_string(db.get_database_backend(), sql),
            )
            .await
            .expect("evaluate")
            .expect("a row");
            let bucket: i32 = row.try_get_by_index(0).expect("bucket");
            let day: i64 = row.try_get_by_index(1).expect("day");
            assert_eq!(bucket, stay_bucket(value), "bucket of {value}");
            assert_eq!(day, day_of(value), "day of {value}");
        }
        db.close().await.expect("close");
    })
    .await;
}

crate::on_both_backends!(the_migrations_tally_keys_match_the_write_paths);
