//! CountCustomersByRelationship with `as_of`: the summary bar at past
//! moments compared with a replay of every customer's history (read back)
//! and the deletions the test made, at each change's exact microsecond and
//! the one before it.

use std::collections::BTreeMap;

use crm_classify::pb::{
    BatchChangeRelationshipRequest, CountCustomersByRelationshipRequest,
    CountCustomersByRelationshipResponse, Customer, RelationshipChange,
};
use tonic::Code;

use crate::fixtures::{
    at_micros, change, create_customer, delete_customer, delete_relationship_into, get_customer,
    history, micros, named, new_manual_relationship, now_micros, rel, relationships,
    restore_customer,
};
use crate::helpers::{TestApp, expect_code, violated_fields};
use crate::on_both_databases;
use crate::report_record::time_of;

async fn as_of(app: &TestApp, at: i64) -> CountCustomersByRelationshipResponse {
    app.customers()
        .count_customers_by_relationship(CountCustomersByRelationshipRequest {
            as_of: Some(at_micros(at)),
            ..Default::default()
        })
        .await
        .expect("count as of")
        .into_inner()
}

/// (relationship, count) pairs, the total and the sequence of a response.
type Bar = (Vec<(String, i64)>, i64, i64);

fn bar(response: &CountCustomersByRelationshipResponse) -> Bar {
    (
        response
            .counts
            .iter()
            .map(|c| (c.relationship_id.clone(), c.count))
            .collect(),
        response.total,
        response.watch_from_sequence,
    )
}

/// The bar at `at` replayed: customers created at or before it and not
/// deleted at it (by their present delete time), each in the relationship
/// of its last change at or before it; the active relationships in order,
/// then the deleted ones (in the order given) that held customers.
fn replay(
    at: i64,
    histories: &BTreeMap<String, Vec<RelationshipChange>>,
    deleted_at: &BTreeMap<String, i64>,
    active: &[String],
    deleted: &[String],
) -> Bar {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    let mut sequence = 0;
    for (id, changes) in histories {
        for c in changes.iter().filter(|c| time_of(c) <= at) {
            sequence = sequence.max(c.sequence);
        }
        let Some(last) = changes.iter().rfind(|c| time_of(c) <= at) else {
            continue;
        };
        if deleted_at.get(id).is_some_and(|&d| d <= at) {
            continue;
        }
        *counts.entry(last.new_relationship_id.as_str()).or_default() += 1;
    }
    let mut pairs: Vec<(String, i64)> = active
        .iter()
        .map(|r| (r.clone(), counts.get(r.as_str()).copied().unwrap_or(0)))
        .collect();
    for r in deleted {
        if let Some(&n) = counts.get(r.as_str()).filter(|&&n| n > 0) {
            pairs.push((r.clone(), n));
        }
    }
    let total = pairs.iter().map(|p| p.1).sum();
    (pairs, total, sequence)
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

on_both_databases! {
    async fn the_summary_bar_as_of_past_moments_equals_a_replay_of_the_histories(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let code = |c: &str| rel(&rels, c);
        let (approached, hot, closed, lost) = (code("APPROACHED"), code("HOT"), code("CLOSED"), code("LOST"));
        let interim = new_manual_relationship(&app, "Tạm giữ").await;
        let never_held = new_manual_relationship(&app, "Chưa ai").await;
        let start = now_micros(&app);
        let mut client = app.customers();
        let mut ids = Vec::new();
        for i in 0..16usize {
            app.clock.advance(chrono::Duration::hours(1) + chrono::Duration::microseconds(i as i64));
            let made = create_customer(&mut client, Customer {
                relationship_id: match i % 5 { 1 => hot.clone(), 3 => interim.clone(), _ => String::new() },
                ..named(&format!("Khách {i}"))
            })
            .await;
            ids.push(made.id);
            // Moves in between the creations.
            if i >= 2 {
                app.clock.advance(minutes(3));
                let targets = [&approached, &hot, &closed, &interim, &lost];
                change(&mut client, &ids[i - 2], targets[i % 5]).await;
            }
        }
        // Several customers moved in one write: one microsecond.
        app.clock.advance(minutes(7));
        let batch = now_micros(&app);
        let batched = app.customers()
            .batch_change_relationship(BatchChangeRelationshipRequest {
                customer_ids: vec![ids[0].clone(), ids[5].clone(), ids[9].clone()],
                relationship_id: interim.clone(),
                reason: String::new(),
            })
            .await
            .expect("batch change")
            .into_inner()
            .changes
            .len() as i64;
        assert!(batched >= 2, "the batch moves several customers at once");
        // Deletions: one for good, one (holding the relationship deleted
        // below) for good too, one deleted and restored (active in between,
        // as its present delete time says).
        let mut deleted_at = BTreeMap::new();
        // Two days later: whole days between the changes, read from the
        // daily tallies.
        app.clock.advance(chrono::Duration::days(2));
        for (i, restore) in [(2usize, false), (5, false), (11, true)] {
            app.clock.advance(minutes(9));
            delete_customer(&mut client, &ids[i]).await;
            if restore {
                app.clock.advance(minutes(1));
                restore_customer(&mut client, &ids[i]).await.expect("restore");
            } else {
                deleted_at.insert(ids[i].clone(), now_micros(&app));
            }
        }
        // The interim relationship is deleted: its holders (the deleted
        // one too) move to LOST; it held customers before.
        app.clock.advance(minutes(11));
        delete_relationship_into(&app, &interim, &lost).await;
        app.clock.advance(minutes(11));
        delete_relationship_into(&app, &never_held, &lost).await;
        // A customer created after all that.
        app.clock.advance(minutes(13));
        let late = create_customer(&mut client, named("Muộn")).await;
        ids.push(late.id);
        app.clock.advance(minutes(1));
        let now = now_micros(&app);

        let mut histories = BTreeMap::new();
        for id in &ids {
            histories.insert(id.clone(), history(&mut client, id).await);
        }
        for (id, d) in &deleted_at {
            let stored = get_customer(&mut client, id).await.delete_time.expect("deleted");
            assert_eq!(micros(&stored), *d, "deleted at the clock's time");
        }
        assert!(get_customer(&mut client, &ids[11]).await.delete_time.is_none());
        let active: Vec<String> = relationships(&mut app.relationships()).await.into_iter().map(|r| r.id).collect();
        let deleted = [interim.clone(), never_held.clone()];

        let mut moments: Vec<i64> = vec![start, now, start - 1];
        for c in histories.values().flatten() {
            moments.extend([time_of(c), time_of(c) - 1, time_of(c) + 1]);
        }
        for d in deleted_at.values() {
            moments.extend([*d, d - 1]);
        }
        // Each midnight (where the tallies' days meet) and around it.
        let midnights = crate::fixtures::midnights_between(start, now);
        assert!(midnights.len() >= 2, "the changes span days");
        for m in midnights {
            moments.extend([m - 1, m, m + 1]);
        }
        moments.sort_unstable();
        moments.dedup();
        let mut seen_interim = false;
        for at in moments {
            let want = replay(at, &histories, &deleted_at, &active, &deleted);
            let got = as_of(&app, at).await;
            assert_eq!(bar(&got), want, "as of {at}");
            seen_interim |= want.0.iter().any(|(r, _)| *r == interim);
        }
        assert!(seen_interim, "the deleted relationship shows while it held customers");

        // Pointed: the batch's microsecond counts every change it made,
        // the one before none of them.
        let before = bar(&as_of(&app, batch - 1).await);
        let at = bar(&as_of(&app, batch).await);
        let in_interim = |b: &Bar| b.0.iter().find(|(r, _)| *r == interim).map_or(0, |p| p.1);
        assert_eq!(at.2 - before.2, batched, "the changes at that microsecond");
        assert_eq!(in_interim(&at) - in_interim(&before), batched);
        // Now, the bar as of now equals the present bar.
        let present = crate::fixtures::count(&mut client, CountCustomersByRelationshipRequest::default()).await;
        assert_eq!(bar(&as_of(&app, now).await), bar(&present));
    }

    async fn as_of_refuses_the_future_and_every_other_filter(app: TestApp) {
        create_customer(&mut app.customers(), named("Một")).await;
        let now = now_micros(&app);
        let ask = |request: CountCustomersByRelationshipRequest| {
            let mut client = app.customers();
            async move { client.count_customers_by_relationship(request).await }
        };
        let at = |t: i64| CountCustomersByRelationshipRequest { as_of: Some(at_micros(t)), ..Default::default() };
        let status = expect_code(ask(at(now + 1)).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["as_of"]);
        assert_eq!(ask(at(now)).await.expect("now is not the future").into_inner().total, 1);
        let group = crate::fixtures::new_group(&app, "Nhóm").await.id;
        let source = crate::fixtures::new_source(&app, "Web").await.id;
        let each: Vec<(&str, CountCustomersByRelationshipRequest)> = vec![
            ("group_id", CountCustomersByRelationshipRequest { group_id: group.clone(), ..at(now) }),
            ("include_subgroups", CountCustomersByRelationshipRequest { include_subgroups: true, ..at(now) }),
            ("source_id", CountCustomersByRelationshipRequest { source_id: source.clone(), ..at(now) }),
            ("owner_id", CountCustomersByRelationshipRequest { owner_id: "u-1".into(), ..at(now) }),
            ("query", CountCustomersByRelationshipRequest { query: "Một".into(), ..at(now) }),
            ("filter", CountCustomersByRelationshipRequest { filter: "revenue > 0".into(), ..at(now) }),
        ];
        for (field, request) in each {
            let status = expect_code(ask(request).await, Code::InvalidArgument);
            assert_eq!(violated_fields(&status), [field]);
        }
        let all = CountCustomersByRelationshipRequest {
            group_id: group,
            include_subgroups: true,
            source_id: source,
            owner_id: "u-1".into(),
            query: "Một".into(),
            filter: "revenue > 0".into(),
            ..at(now)
        };
        // Every field is named, in the request's order (the details hold
        // the first five violations, as every error's do).
        let status = expect_code(ask(all).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_id", "include_subgroups", "source_id", "owner_id", "query"]);
        let two = CountCustomersByRelationshipRequest { owner_id: "u-1".into(), filter: "revenue > 0".into(), ..at(now) };
        let status = expect_code(ask(two).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["owner_id", "filter"]);
    }
}
