//! GetOwnerReport: every owner's row compared with a count over the
//! customers the test made (their owner, source and groups over time in
//! its own record) and their relationship histories read back.

use std::collections::{BTreeMap, BTreeSet};

use crm_classify::pb::{
    Customer, GetOwnerReportRequest, GetOwnerReportResponse, ImportRow, OwnerReportRow,
    Relationship,
};
use tonic::Code;

use crate::fixtures::{
    add_to_group, at_micros, change, create_customer, delete_customer, get_customer, micros, named,
    nearest_rank, new_group, new_source, now_micros, rel, relationships, remove_from_group,
    unknown_id, update_customer, update_relationship,
};
use crate::helpers::{TestApp, expect_code, violated_fields};
use crate::on_both_databases;
use crate::report_record::{Attrs, Record, duration, time_of, within};

fn owner_request(
    (from, to): (Option<i64>, Option<i64>),
    group: &str,
    source: &str,
) -> GetOwnerReportRequest {
    GetOwnerReportRequest {
        from_time: from.map(at_micros),
        to_time: to.map(at_micros),
        source_id: source.to_owned(),
        group_id: group.to_owned(),
    }
}

async fn owner_report(app: &TestApp, request: GetOwnerReportRequest) -> GetOwnerReportResponse {
    app.relationships()
        .get_owner_report(request)
        .await
        .expect("owner report")
        .into_inner()
}

/// What the test knows of the tenant now.
struct Now {
    record: Record,
    histories: BTreeMap<String, Vec<crm_classify::pb::RelationshipChange>>,
    /// Per customer: deleted, present revenue.
    customers: BTreeMap<String, (bool, i64)>,
    default: String,
    closed: String,
}

#[derive(Default)]
struct Tally {
    customers: i64,
    received: i64,
    converted: i64,
    times_to_move: Vec<i64>,
    closed: BTreeSet<String>,
}

impl Now {
    async fn read(app: &TestApp, record: Record) -> Self {
        let histories = record.histories(app).await;
        let mut customers = BTreeMap::new();
        for id in record.ids() {
            let c = get_customer(&mut app.customers(), id).await;
            customers.insert(id.clone(), (c.delete_time.is_some(), c.revenue));
        }
        let rels = relationships(&mut app.relationships()).await;
        let default = rels
            .iter()
            .find(|r| r.is_default)
            .expect("a default")
            .id
            .clone();
        Self {
            record,
            histories,
            customers,
            default,
            closed: rel(&rels, "CLOSED"),
        }
    }

    /// The report `request` asks for, counted from the record.
    fn expected(&self, request: &GetOwnerReportRequest) -> GetOwnerReportResponse {
        let from = request.from_time.as_ref().map(micros);
        let to = request.to_time.as_ref().map(micros);
        let (group, source) = (request.group_id.as_str(), request.source_id.as_str());
        let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
        for (id, changes) in &self.histories {
            let (deleted, _) = self.customers[id];
            let now = self.record.now(id);
            if !deleted && now.pass(group, source, "") {
                tallies.entry(now.owner.clone()).or_default().customers += 1;
            }
            let creation = &changes[0];
            let created = time_of(creation);
            let then = self.record.at(id, created);
            if within(created, from, to) && then.pass(group, source, "") {
                let tally = tallies.entry(then.owner.clone()).or_default();
                tally.received += 1;
                let present = &changes[changes.len() - 1].new_relationship_id;
                if *present == self.closed {
                    tally.converted += 1;
                }
                if creation.new_relationship_id == self.default && changes.len() > 1 {
                    tally.times_to_move.push(time_of(&changes[1]) - created);
                }
            }
            // Moves into CLOSED (a creation in it is not a move).
            for c in &changes[1..] {
                let t = time_of(c);
                let then = self.record.at(id, t);
                if c.new_relationship_id == self.closed
                    && within(t, from, to)
                    && then.pass(group, source, "")
                {
                    tallies
                        .entry(then.owner.clone())
                        .or_default()
                        .closed
                        .insert(id.clone());
                }
            }
        }
        let row = |owner: &str, t: &Tally| {
            let closed = t.closed.len() as i64;
            OwnerReportRow {
                owner_id: owner.to_owned(),
                customers: t.customers,
                received: t.received,
                moved_from_default: t.times_to_move.len() as i64,
                median_time_to_move: nearest_rank(&t.times_to_move, 50).map(duration),
                closed,
                converted: t.converted,
                conversion_rate: if t.received == 0 {
                    0.0
                } else {
                    t.converted as f64 / t.received as f64
                },
                revenue: t.closed.iter().map(|id| self.customers[id].1).sum(),
            }
        };
        let mut rows: Vec<OwnerReportRow> = tallies
            .iter()
            .filter(|(owner, t)| {
                !owner.is_empty()
                    && (t.customers != 0
                        || t.received != 0
                        || !t.times_to_move.is_empty()
                        || !t.closed.is_empty())
            })
            .map(|(owner, t)| row(owner, t))
            .collect();
        rows.push(row("", tallies.get("").unwrap_or(&Tally::default())));
        GetOwnerReportResponse { rows }
    }
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

on_both_databases! {
    async fn owner_report_rows_equal_a_count_over_the_customers_and_their_histories(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let code = |c: &str| rel(&rels, c);
        let (approached, hot, closed, lost) = (code("APPROACHED"), code("HOT"), code("CLOSED"), code("LOST"));
        let web = new_source(&app, "Web").await.id;
        let zalo = new_source(&app, "Zalo").await.id;
        let unused = new_source(&app, "Chưa dùng").await.id;
        let g1 = new_group(&app, "Nhóm 1").await.id;
        let g2 = new_group(&app, "Nhóm 2").await.id;
        let mut record = Record::default();
        let mut client = app.customers();
        // An owner whose only customer is deleted: a row only while its
        // creation is in the period.
        let gone = create_customer(&mut client, Customer { owner_id: "u-9".into(), ..named("Đã xoá") }).await;
        record.set(&gone.id, now_micros(&app), Attrs::of(&gone));
        app.clock.advance(minutes(1));
        delete_customer(&mut client, &gone.id).await;
        let owners = ["u-2", "u-1", "u-3", ""];
        let mut ids = Vec::new();
        let mut created = Vec::new();
        for i in 0..24usize {
            app.clock.advance(chrono::Duration::hours(1) + chrono::Duration::microseconds(i as i64));
            let mut groups = Vec::new();
            if i % 3 == 0 { groups.push(g1.clone()); }
            if i % 2 == 1 { groups.push(g2.clone()); }
            let created_in = match i {
                10 => closed.clone(),
                _ if i % 6 == 5 => hot.clone(),
                _ if i % 7 == 6 => approached.clone(),
                _ => String::new(),
            };
            let made = create_customer(&mut client, Customer {
                owner_id: owners[i % 4].into(),
                source_id: [web.clone(), zalo.clone(), String::new()][(i / 4) % 3].clone(),
                group_ids: groups,
                relationship_id: created_in,
                revenue: i as i64 * 1000 + 7,
                ..named(&format!("Khách {i}"))
            })
            .await;
            created.push(now_micros(&app));
            record.set(&made.id, now_micros(&app), Attrs::of(&made));
            ids.push(made.id);
        }
        // First moves out of the default after varied times.
        for (i, id) in ids.iter().enumerate() {
            if i % 5 == 0 { continue; }
            app.clock.advance(minutes((i * 17) as i64) + chrono::Duration::microseconds(3));
            change(&mut client, id, if i % 2 == 0 { &approached } else { &lost }).await;
        }
        // Closings.
        let mut closings = BTreeMap::new();
        for i in (1..24).step_by(3) {
            app.clock.advance(minutes(13));
            change(&mut client, &ids[i], &closed).await;
            closings.insert(i, now_micros(&app));
        }
        // Customer 4 (u-2) is closed twice by the same owner: once.
        app.clock.advance(minutes(5));
        change(&mut client, &ids[4], &hot).await;
        app.clock.advance(minutes(5));
        change(&mut client, &ids[4], &closed).await;
        // Customer 7 (unowned) is closed, then handed to u-1, reopened and
        // closed again: once for each owner. Customer 10 (u-3) was created
        // in CLOSED: that is no move into it.
        app.clock.advance(minutes(5));
        update_customer(&app, Customer { id: ids[7].clone(), owner_id: "u-1".into(), ..Default::default() }, &["owner_id"]).await;
        record.edit(&app, &ids[7], |a| a.owner = "u-1".into());
        app.clock.advance(minutes(5));
        change(&mut client, &ids[7], &hot).await;
        app.clock.advance(minutes(5));
        change(&mut client, &ids[7], &closed).await;
        // After closing: owners, sources, groups and revenue change.
        app.clock.advance(minutes(5));
        update_customer(&app, Customer { id: ids[1].clone(), owner_id: "u-2".into(), source_id: zalo.clone(), revenue: 5_000_000, ..Default::default() }, &["owner_id", "source_id", "revenue"]).await;
        record.edit(&app, &ids[1], |a| { a.owner = "u-2".into(); a.source = zalo.clone(); });
        app.clock.advance(minutes(5));
        remove_from_group(&app, &g2, std::slice::from_ref(&ids[13])).await;
        record.edit(&app, &ids[13], |a| { a.groups.remove(&g2); });
        app.clock.advance(minutes(5));
        add_to_group(&app, &g1, std::slice::from_ref(&ids[16])).await;
        record.edit(&app, &ids[16], |a| { a.groups.insert(g1.clone()); });
        app.clock.advance(minutes(5));
        update_customer(&app, Customer { id: ids[22].clone(), owner_id: String::new(), ..Default::default() }, &["owner_id"]).await;
        record.edit(&app, &ids[22], |a| a.owner.clear());
        // A deleted closed customer still counts as received and closed.
        app.clock.advance(minutes(5));
        delete_customer(&mut client, &ids[19]).await;
        app.clock.advance(minutes(5));
        let end = now_micros(&app);

        let now = Now::read(&app, record).await;
        let periods: Vec<(Option<i64>, Option<i64>)> = vec![
            (None, None),
            // Exactly at a creation: in; the end exactly at one: out.
            (Some(created[8]), None),
            (None, Some(created[8])),
            (Some(created[3]), Some(created[20])),
            // Exactly at a closing: in; the end exactly at one: out.
            (Some(closings[&16]), None),
            (Some(closings[&4]), Some(closings[&16])),
            (Some(closings[&13]), Some(closings[&13] + 1)),
            (Some(closings[&13] - 1), Some(closings[&13])),
            (Some(end), Some(end + 1)),
        ];
        let filters: Vec<(&str, &str)> = vec![("", ""), ("", &web), ("", &zalo), (&g1, ""), (&g2, ""), (&g1, &web), ("", &unused)];
        for &period in &periods {
            for &(group, source) in &filters {
                let request = owner_request(period, group, source);
                let want = now.expected(&request);
                let got = owner_report(&app, request.clone()).await;
                assert_eq!(got, want, "for {request:?}");
            }
        }
        // Not trivial: u-9 appears only while its creation is in the
        // period, every owner moved customers out of the default and closed
        // some, and a source nobody has leaves the unowned row alone.
        let all = owner_report(&app, owner_request((None, None), "", "")).await;
        let owners_listed: Vec<&str> = all.rows.iter().map(|r| r.owner_id.as_str()).collect();
        assert_eq!(owners_listed, ["u-1", "u-2", "u-3", "u-9", ""]);
        assert!(all.rows[..3].iter().all(|r| r.moved_from_default > 0 && r.closed > 0), "{all:?}");
        let later = owner_report(&app, owner_request((Some(created[0]), None), "", "")).await;
        assert!(!later.rows.iter().any(|r| r.owner_id == "u-9"));
        let nobody = owner_report(&app, owner_request((None, None), "", &unused)).await;
        assert_eq!(nobody.rows, [OwnerReportRow::default()]);

        // "The relationship that is now the default": another default
        // counts the customers created in it instead.
        update_relationship(&app, Relationship { id: approached.clone(), is_default: true, ..Default::default() }, &["is_default"]).await;
        let now = Now { default: approached.clone(), ..now };
        for period in [(None, None), (Some(created[3]), Some(created[20]))] {
            let request = owner_request(period, "", "");
            assert_eq!(owner_report(&app, request.clone()).await, now.expected(&request), "for {request:?}");
        }
        // A deleted group can still be asked for: its kept memberships now,
        // the memberships of the time for the rest.
        crate::fixtures::delete_group(&app, &g2, false).await;
        for period in [(None, None), (Some(created[3]), Some(created[20]))] {
            let request = owner_request(period, &g2, "");
            assert_eq!(owner_report(&app, request.clone()).await, now.expected(&request), "for {request:?}");
        }
    }

    async fn owner_report_refuses_inverted_periods_and_unknown_groups_and_sources(app: TestApp) {
        let now = now_micros(&app);
        let ask = |request: GetOwnerReportRequest| {
            let mut client = app.relationships();
            async move { client.get_owner_report(request).await }
        };
        let status = expect_code(ask(owner_request((Some(now), Some(now - 1)), "", "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["to_time"]);
        let status = expect_code(ask(owner_request((None, None), &unknown_id(), "")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_id"]);
        let status = expect_code(ask(owner_request((None, None), "", &unknown_id())).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["source_id"]);
        let status = expect_code(ask(owner_request((None, None), "", "not-an-id")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["source_id"]);
        // A tenant without customers: only the unowned row, all zeros.
        assert_eq!(owner_report(&app, owner_request((None, None), "", "")).await.rows, [OwnerReportRow::default()]);
    }
}

/// Customers handled over several days: created on the first two, then
/// closed, reopened and closed again by the same owner and by others
/// (owners handed over), some moves on one day and some days apart, one
/// exactly at a midnight, revenues edited after the closings (past 2^32 as
/// well), one customer deleted. Every customer has the one source `web`, so
/// the report filtered by it is read from the log.
struct Handling {
    record: Record,
    web: String,
    /// Every UTC midnight among the changes.
    midnights: Vec<i64>,
    /// The times of the moves into CLOSED.
    closings: Vec<i64>,
}

async fn days_of_handling(app: &TestApp) -> Handling {
    use migrations::tallies::DAY;
    let rels = relationships(&mut app.relationships()).await;
    let code = |c: &str| rel(&rels, c);
    let (hot, closed, lost, approached) = (
        code("HOT"),
        code("CLOSED"),
        code("LOST"),
        code("APPROACHED"),
    );
    let web = new_source(app, "Web").await.id;
    let owners = ["u-1", "u-2", "", "u-3"];
    let mut record = Record::default();
    let mut client = app.customers();
    let (mut ids, mut holds) = (Vec::new(), Vec::new());
    for i in 0..12usize {
        app.clock.advance(
            chrono::Duration::hours(3) + minutes(7) + chrono::Duration::microseconds(i as i64),
        );
        let created_in = match i {
            5 => hot.clone(),
            9 => closed.clone(),
            _ => String::new(),
        };
        let made = create_customer(
            &mut client,
            Customer {
                owner_id: owners[i % 4].into(),
                source_id: web.clone(),
                relationship_id: created_in,
                revenue: (i as i64 + 1) * 1_000_003,
                ..named(&format!("Khách {i}"))
            },
        )
        .await;
        record.set(&made.id, now_micros(app), Attrs::of(&made));
        holds.push(made.relationship_id.clone());
        ids.push(made.id);
    }
    let start = now_micros(app);
    let targets = [
        closed.clone(),
        hot.clone(),
        closed.clone(),
        lost.clone(),
        closed.clone(),
        approached.clone(),
    ];
    let mut closings = Vec::new();
    let mut at_midnight = false;
    for r in 0..32usize {
        app.clock.advance(
            chrono::Duration::hours(2)
                + minutes(9 * r as i64)
                + chrono::Duration::microseconds(r as i64 * 5),
        );
        if r == 14 {
            // The next moves fall exactly on a midnight.
            crate::fixtures::set_clock_to_next_midnight(app);
        }
        for i in 0..ids.len() {
            // Customer 3 is deleted at round 20.
            if (i + r) % 3 == 0 || (i == 3 && r > 20) {
                continue;
            }
            let target = &targets[(i + r) % targets.len()];
            if *target == holds[i] {
                continue;
            }
            let made = change(&mut client, &ids[i], target)
                .await
                .change
                .expect("a move");
            if *target == closed {
                closings.push(time_of(&made));
                at_midnight |= time_of(&made).rem_euclid(DAY) == 0;
            }
            holds[i] = target.clone();
        }
        // Now and then a customer changes hands, or its revenue changes.
        if r % 5 == 2 && (r * 7) % ids.len() != 3 {
            app.clock.advance(minutes(1));
            let i = (r * 7) % ids.len();
            let owner = owners[(r / 5) % 4];
            update_customer(
                app,
                Customer {
                    id: ids[i].clone(),
                    owner_id: owner.into(),
                    ..Default::default()
                },
                &["owner_id"],
            )
            .await;
            record.edit(app, &ids[i], |a| a.owner = owner.into());
        }
        if r % 4 == 3 && (r * 5 + 1) % ids.len() != 3 {
            let i = (r * 5 + 1) % ids.len();
            let revenue = if r % 8 == 3 {
                (5 << 32) + r as i64
            } else {
                r as i64 * 10_007
            };
            update_customer(
                app,
                Customer {
                    id: ids[i].clone(),
                    revenue,
                    ..Default::default()
                },
                &["revenue"],
            )
            .await;
        }
        if r == 20 {
            delete_customer(&mut client, &ids[3]).await;
        }
        if r == 25 {
            // One import batch, one write: a move and a revenue edit of the
            // same customer together, a revenue edit alone, a move alone.
            app.clock.advance(minutes(1));
            let update = |i: usize, relationship: Option<&str>, revenue: Option<i64>| ImportRow {
                row_number: i as i64 + 1,
                id: ids[i].clone(),
                relationship: relationship.map(str::to_owned),
                revenue,
                ..Default::default()
            };
            let closing = if holds[1] == closed { "HOT" } else { "CLOSED" };
            import_updates(
                app,
                vec![
                    update(1, Some(closing), Some(7_777_777_777)),
                    update(2, None, Some(123)),
                    update(4, Some(if holds[4] == hot { "LOST" } else { "HOT" }), None),
                ],
            )
            .await;
            for i in [1, 4] {
                holds[i] = get_customer(&mut client, &ids[i]).await.relationship_id;
            }
            if holds[1] == closed {
                closings.push(now_micros(app));
            }
        }
    }
    let end = now_micros(app);
    assert!(at_midnight, "a closing at midnight");
    let midnights = crate::fixtures::midnights_between(start, end);
    assert!(
        midnights.len() >= 4,
        "the changes span several days: {midnights:?}"
    );
    Handling {
        record,
        web,
        midnights,
        closings,
    }
}

/// Updates customers by id in one import batch; every row must succeed.
async fn import_updates(app: &TestApp, rows: Vec<ImportRow>) {
    use crm_classify::pb::{ImportMatchKey, ImportMode, ImportOptions};
    let options = ImportOptions {
        mode: ImportMode::Update as i32,
        match_on: ImportMatchKey::Id as i32,
        ..Default::default()
    };
    let (results, _) = crate::fixtures::import_with(&mut app.customers(), options, vec![rows])
        .await
        .expect("import");
    for result in &results {
        assert!(result.error.is_none(), "{result:?}");
    }
}

/// Periods cutting the days of [`days_of_handling`] every way: open sides,
/// whole days, a microsecond more or less, parts of days on both sides,
/// within a day, across one midnight, at a closing.
fn handling_periods(days: &Handling) -> Vec<(Option<i64>, Option<i64>)> {
    use migrations::tallies::DAY;
    let m = &days.midnights;
    let mut moments: Vec<i64> = Vec::new();
    for &midnight in m {
        moments.extend([
            midnight - 1,
            midnight,
            midnight + 1,
            midnight + DAY / 3,
            midnight + 2 * DAY / 3,
        ]);
    }
    moments.extend(days.closings.iter().step_by(7).copied());
    let mut periods = vec![(None, None)];
    for &a in &moments {
        periods.push((Some(a), None));
        periods.push((None, Some(a)));
    }
    for (k, &a) in moments.iter().enumerate() {
        for &b in moments[k..].iter().step_by(3) {
            if a <= b {
                periods.push((Some(a), Some(b)));
            }
        }
    }
    periods
}

/// Every period's report, unfiltered (from the tallies) and filtered by the
/// source every customer has (from the log), equals the count over the
/// histories; returns the unfiltered ones.
async fn handling_agrees_with_the_count(
    app: &TestApp,
    days: &Handling,
) -> Vec<GetOwnerReportResponse> {
    let now = Now::read(app, days.record.clone()).await;
    let mut reports = Vec::new();
    let mut closed_twice = false;
    for period in handling_periods(days) {
        let request = owner_request(period, "", "");
        let want = now.expected(&request);
        let got = owner_report(app, request.clone()).await;
        assert_eq!(got, want, "for {request:?}");
        let from_log = owner_report(app, owner_request(period, "", &days.web)).await;
        assert_eq!(from_log, want, "from the log, for {request:?}");
        closed_twice |= got.rows.iter().any(|r| r.closed > 1);
        reports.push(got);
    }
    assert!(closed_twice, "some owner closed several customers");
    reports
}

on_both_databases! {
    async fn the_unfiltered_owner_report_from_tallies_equals_a_count_across_midnights(app: TestApp) {
        let days = days_of_handling(&app).await;
        handling_agrees_with_the_count(&app, &days).await;
    }
}

/// The owner report's tallies of changes logged before their migration are
/// filled by it: undone and run again, the reports are those the write
/// path kept.
async fn owner_tallies_are_filled_by_the_migration(backend: crate::helpers::Backend) {
    crate::helpers::with_own_database(backend, "owners", async |url| {
        let mut app = TestApp::spawn_on_url(backend, url.clone()).await;
        let days = days_of_handling(&app).await;
        let kept = handling_agrees_with_the_count(&app, &days).await;
        let tenant = app.tenant.clone();
        app.stop_and_wait(std::time::Duration::from_secs(20)).await;

        crate::helpers::migrate_again_from(&url, "m20261207_000018_owner_tallies").await;

        let mut app = TestApp::spawn_on_url(backend, url).await;
        app.tenant = tenant;
        assert_eq!(handling_agrees_with_the_count(&app, &days).await, kept);
        app.stop_and_wait(std::time::Duration::from_secs(20)).await;
    })
    .await;
}

crate::on_both_backends!(owner_tallies_are_filled_by_the_migration);
