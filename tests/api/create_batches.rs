//! Concurrent CreateCustomer calls are committed in batches, one transaction
//! per batch, and the outcome must be exactly that of running the batch's
//! creates one after the other.
//!
//! Batches only form while calls arrive together, so every test here fires
//! a burst of 40–64 creates at once (the server runs on a two-worker
//! runtime, so they queue up) and then checks, through the API alone, what a
//! serial run would have left: each customer with its groups and its own
//! CREATED history row (actor and reason of its own call), change sequences
//! 1, 2, 3, … without gaps, one winner per phone or email with every loser
//! ALREADY_EXISTS naming a winner, failed creates leaving nothing behind,
//! repeated request ids answered with the first result, and the summary-bar
//! and group/relationship counters agreeing with the lists.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crm_classify::pb::{
    CountCustomersByRelationshipRequest, CountCustomersByRelationshipResponse,
    CreateCustomerRequest, Customer, DeleteGroupRequest, DeleteSourceRequest, ListCustomersRequest,
    ListRelationshipsRequest, RelationshipChange, RelationshipChangeCause,
};
use tonic::{Code, Response, Status};
use tonic_types::StatusExt;

use crate::fixtures::{
    self, Customers, create_request_with, get_customer, group_count, history_response, list_pages,
    named, new_group, new_source, rel, relationship_count, relationships, source_count, stored,
    total, unknown_id,
};
use crate::helpers::{TestApp, new_tenant, violated_fields};
use crate::on_both_databases;

type Created = Result<Response<crm_classify::pb::CreateCustomerResponse>, Status>;

/// The customer of a create that must have succeeded.
#[track_caller]
fn created(result: &Created, what: &str) -> Customer {
    match result {
        Ok(response) => response.get_ref().customer.clone().expect("customer"),
        Err(status) => panic!("{what}: expected OK, got {status:?}"),
    }
}

/// Fires `requests` at once, the i-th through `clients[i]`; results in order.
async fn burst(clients: Vec<Customers>, requests: Vec<CreateCustomerRequest>) -> Vec<Created> {
    assert_eq!(clients.len(), requests.len());
    let handles: Vec<_> = clients
        .into_iter()
        .zip(requests)
        .map(|(mut client, request)| {
            tokio::spawn(async move { client.create_customer(request).await })
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("task"));
    }
    results
}

/// The error of a create that must have failed with `code`.
#[track_caller]
fn failed<'a>(result: &'a Created, code: Code, what: &str) -> &'a Status {
    match result {
        Ok(response) => panic!(
            "{what}: expected {code:?}, got OK: {:?}",
            response.get_ref()
        ),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            status
        }
    }
}

/// Fires `requests` at once through clients of the test's tenant.
async fn burst_plain(app: &TestApp, requests: Vec<CreateCustomerRequest>) -> Vec<Created> {
    let clients = requests.iter().map(|_| app.customers()).collect();
    burst(clients, requests).await
}

/// A customer's history rows, checked to number the `total_size` reported.
async fn history(client: &mut Customers, customer_id: &str) -> Vec<RelationshipChange> {
    let response = history_response(client, customer_id).await;
    assert_eq!(
        response.total_size,
        response.changes.len() as i64,
        "history total_size"
    );
    response.changes
}

/// Checks that `customer_id` has exactly one history row, its creation in
/// `relationship_id` by `actor` for `reason`; returns that row's sequence.
async fn creation_sequence(
    client: &mut Customers,
    customer: &Customer,
    actor: &str,
    reason: &str,
) -> i64 {
    let changes = history(client, &customer.id).await;
    assert_eq!(
        changes.len(),
        1,
        "customer {} has exactly its creation in its history: {changes:?}",
        customer.name
    );
    let change = &changes[0];
    assert_eq!(change.customer_id, customer.id);
    assert_eq!(
        change.cause(),
        RelationshipChangeCause::Created,
        "{}: cause",
        customer.name
    );
    assert_eq!(
        change.old_relationship_id, "",
        "{}: created from nothing",
        customer.name
    );
    assert_eq!(
        change.new_relationship_id, customer.relationship_id,
        "{}: created in its relationship",
        customer.name
    );
    assert_eq!(
        change.actor_id, actor,
        "{}: the actor of its own call",
        customer.name
    );
    assert_eq!(
        change.reason, reason,
        "{}: the reason of its own call",
        customer.name
    );
    assert_eq!(
        change.change_time, customer.create_time,
        "{}: recorded when it was created",
        customer.name
    );
    assert!(
        change.sequence > 0,
        "{}: sequence {}",
        customer.name,
        change.sequence
    );
    change.sequence
}

/// Every customer of the tenant matching `request`, page after page.
async fn list_all(client: &mut Customers, mut request: ListCustomersRequest) -> Vec<Customer> {
    request.page_size = 1000;
    list_pages(client, request)
        .await
        .into_iter()
        .flat_map(|page| page.customers)
        .collect()
}

fn in_group(group_id: &str) -> ListCustomersRequest {
    ListCustomersRequest {
        group_id: group_id.to_owned(),
        ..Default::default()
    }
}

/// The summary bar of the customers in `group_id` (empty: all of them).
async fn count(client: &mut Customers, group_id: &str) -> CountCustomersByRelationshipResponse {
    fixtures::count(
        client,
        CountCustomersByRelationshipRequest {
            group_id: group_id.to_owned(),
            ..Default::default()
        },
    )
    .await
}

/// The summary bar as relationship id → count.
fn bar(response: &CountCustomersByRelationshipResponse) -> BTreeMap<String, i64> {
    response
        .counts
        .iter()
        .map(|c| (c.relationship_id.clone(), c.count))
        .collect()
}

/// The id an ALREADY_EXISTS status names as the existing customer: its
/// `google.rpc.ResourceInfo` resource name, which the message also names.
#[track_caller]
fn existing_id(status: &Status) -> String {
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let info = status
        .get_details_resource_info()
        .unwrap_or_else(|| panic!("ALREADY_EXISTS carries ResourceInfo: {status:?}"));
    assert!(
        status.message().contains(&info.resource_name),
        "the message names the existing customer {}: {}",
        info.resource_name,
        status.message()
    );
    info.resource_name
}

/// Sorted sequences must be exactly 1..=n: distinct, no gaps, none taken
/// by anything else.
#[track_caller]
fn assert_contiguous(mut sequences: Vec<i64>, what: &str) {
    sequences.sort_unstable();
    let n = sequences.len() as i64;
    assert_eq!(
        sequences,
        (1..=n).collect::<Vec<_>>(),
        "{what}: the creation rows take sequences 1..={n}, none skipped, none reused"
    );
}

/// Normalised phone of a spelling: digits with an optional leading `+`.
fn norm_phone(raw: &str) -> String {
    let raw = raw.trim();
    let plus = if raw.starts_with('+') { "+" } else { "" };
    format!(
        "{plus}{}",
        raw.chars().filter(char::is_ascii_digit).collect::<String>()
    )
}

fn norm_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

on_both_databases! {
    async fn a_burst_of_distinct_creates_all_commit_each_with_its_own_history_row(app: TestApp) {
        const N: usize = 64;
        let rels = relationships(&mut app.relationships()).await;
        let manual = ["NEW", "APPROACHED", "HOT", "POTENTIAL", "CLOSED"].map(|code| rel(&rels, code));
        let groups = [new_group(&app, "Miền Bắc").await, new_group(&app, "Miền Trung").await, new_group(&app, "Miền Nam").await];
        // Customer i: its own name, phone, email, actor and reason; groups by the bits of i % 8;
        // the default relationship for every fifth, a named one otherwise.
        let spec = |i: usize| {
            let group_ids: Vec<String> = (0..3).filter(|b| (i % 8) & (1 << b) != 0).map(|b| groups[b].id.clone()).collect();
            let relationship_id = if i.is_multiple_of(5) { String::new() } else { manual[i % manual.len()].clone() };
            Customer {
                phone: format!("0903 {:03} {:03}", i / 1000, i % 1000),
                email: format!("Khach.{i}@Example.VN"),
                group_ids,
                relationship_id,
                owner_id: format!("u-{}", i % 3),
                ..named(&format!("Khách hàng {i}"))
            }
        };
        let actor = |i: usize| format!("nhan-vien-{i}");
        let reason = |i: usize| format!("Lý do {i}: gặp ở hội chợ");
        let clients = (0..N).map(|i| app.customers_as(&actor(i))).collect();
        let requests = (0..N).map(|i| create_request_with(spec(i), &reason(i), "")).collect();
        let results = burst(clients, requests).await;

        let mut customers = app.customers();
        let mut sequences = Vec::new();
        let mut members: Vec<BTreeSet<String>> = vec![BTreeSet::new(); groups.len()];
        for (i, result) in results.iter().enumerate() {
            let customer = created(result, &format!("create {i}"));
            let want = spec(i);
            assert_eq!(customer.name, want.name);
            assert_eq!(customer.phone, norm_phone(&want.phone), "{}: phone", want.name);
            assert_eq!(customer.email, norm_email(&want.email), "{}: email", want.name);
            assert_eq!(customer.owner_id, want.owner_id, "{}: owner", want.name);
            let relationship_id = if want.relationship_id.is_empty() { manual[0].clone() } else { want.relationship_id.clone() };
            assert_eq!(customer.relationship_id, relationship_id, "{}: relationship", want.name);
            let mut group_ids = want.group_ids.clone();
            group_ids.sort();
            let mut returned = customer.group_ids.clone();
            returned.sort();
            assert_eq!(returned, group_ids, "{}: groups in the response", want.name);
            let fetched = get_customer(&mut customers, &customer.id).await;
            let mut fetched_groups = fetched.group_ids.clone();
            fetched_groups.sort();
            assert_eq!(fetched_groups, group_ids, "{}: groups as stored", want.name);
            assert_eq!(fetched, customer, "{}: GetCustomer returns what CreateCustomer returned", want.name);
            for (b, group) in groups.iter().enumerate() {
                if want.group_ids.contains(&group.id) {
                    members[b].insert(customer.id.clone());
                }
            }
            sequences.push(creation_sequence(&mut customers, &customer, &actor(i), &reason(i)).await);
        }
        let ids: BTreeSet<String> = results.iter().enumerate().map(|(i, r)| created(r, &format!("create {i}")).id).collect();
        assert_eq!(ids.len(), N, "every create made a customer of its own");
        assert_contiguous(sequences, "64 concurrent creates");

        let listed: BTreeSet<String> = list_all(&mut customers, ListCustomersRequest::default()).await.into_iter().map(|c| c.id).collect();
        assert_eq!(listed, ids, "ListCustomers lists exactly the created customers");
        for (b, group) in groups.iter().enumerate() {
            let listed: BTreeSet<String> = list_all(&mut customers, in_group(&group.id)).await.into_iter().map(|c| c.id).collect();
            assert_eq!(listed, members[b], "members of {}", group.name);
            assert_eq!(group_count(&app, &group.id).await, members[b].len() as i64, "customer_count of {}", group.name);
        }
        assert_eq!(count(&mut customers, "").await.total, N as i64, "summary bar total");
    }

    async fn concurrent_creates_sharing_a_phone_or_email_leave_one_winner_named_by_every_loser(app: TestApp) {
        // (name, phone, email) of each create; clusters share a normalised phone, an
        // email, or both, in different spellings; chains overlap two clusters.
        let phone_spellings = ["0912 345 678", "0912-345-678", "0912.345.678", "(0912) 345 678", "0912345678", " 0912 345-678 "];
        let email_spellings = ["tam@example.com", "TAM@EXAMPLE.COM", "Tam@Example.com", " tAm@example.COM "];
        let mut specs: Vec<(String, String, String)> = Vec::new();
        for i in 0..18 {
            specs.push((format!("Cùng số {i}"), phone_spellings[i % phone_spellings.len()].to_owned(), String::new()));
        }
        for i in 0..16 {
            specs.push((format!("Cùng thư {i}"), String::new(), email_spellings[i % email_spellings.len()].to_owned()));
        }
        for i in 0..8 {
            let phone = if i % 2 == 0 { "+84 90 111 2222" } else { "+84-901-112-222" };
            let email = if i % 2 == 0 { "Both@Example.VN" } else { "both@example.vn" };
            specs.push((format!("Cả hai {i}"), phone.to_owned(), email.to_owned()));
        }
        // Chains: X holds (P_k, E_k), Y (P_k, F_k), Z (Q_k, F_k): who wins depends on the order, but
        // every loser must name a winner holding its phone or email.
        for k in 0..4 {
            specs.push((format!("Chuỗi X{k}"), format!("0933 000 {k:03}"), format!("x{k}@chuoi.vn")));
            specs.push((format!("Chuỗi Y{k}"), format!("0933-000-{k:03}"), format!("Y{k}@Chuoi.vn")));
            specs.push((format!("Chuỗi Z{k}"), format!("0944 000 {k:03}"), format!("y{k}@chuoi.VN")));
        }
        for i in 0..10 {
            specs.push((format!("Riêng {i}"), format!("0955 000 {i:03}"), format!("rieng{i}@example.vn")));
        }
        let n = specs.len();
        assert!(n >= 60);
        let requests = specs.iter().map(|(name, phone, email)| create_request_with(Customer { phone: phone.clone(), email: email.clone(), ..named(name) }, "", "")).collect();
        let results = burst_plain(&app, requests).await;

        let mut winners: HashMap<String, usize> = HashMap::new();
        for (i, result) in results.iter().enumerate() {
            if let Ok(response) = result {
                let customer = response.get_ref().customer.clone().expect("customer");
                winners.insert(customer.id, i);
            }
        }
        let norm = |i: usize| (norm_phone(&specs[i].1), norm_email(&specs[i].2));
        // Winners hold distinct phones and emails.
        let mut phones = HashMap::new();
        let mut emails = HashMap::new();
        for &i in winners.values() {
            let (phone, email) = norm(i);
            if !phone.is_empty() {
                assert!(phones.insert(phone.clone(), i).is_none(), "two customers were created with phone {phone}");
            }
            if !email.is_empty() {
                assert!(emails.insert(email.clone(), i).is_none(), "two customers were created with email {email}");
            }
        }
        // Every loser is ALREADY_EXISTS naming a winner that holds its phone or its email.
        for (i, result) in results.iter().enumerate() {
            let Err(status) = result else { continue };
            let named_id = existing_id(status);
            let Some(&winner) = winners.get(&named_id) else {
                panic!("{} lost to {named_id}, which is not a customer that was created: {status:?}", specs[i].0);
            };
            let (phone, email) = norm(i);
            let (winner_phone, winner_email) = norm(winner);
            assert!(
                (!phone.is_empty() && phone == winner_phone) || (!email.is_empty() && email == winner_email),
                "{} ({phone}, {email}) lost to {} ({winner_phone}, {winner_email}), which holds neither: {status:?}",
                specs[i].0, specs[winner].0
            );
        }
        // One winner per cluster; the distinct ones all win.
        let won = |prefix: &str| winners.values().filter(|&&i| specs[i].0.starts_with(prefix)).count();
        assert_eq!(won("Cùng số "), 1, "one customer per phone");
        assert_eq!(won("Cùng thư "), 1, "one customer per email");
        assert_eq!(won("Cả hai "), 1, "one customer per phone and email");
        assert_eq!(won("Riêng "), 10, "customers with their own phone and email all commit");
        for k in 0..4 {
            let x = winners.values().any(|&i| specs[i].0 == format!("Chuỗi X{k}"));
            let y = winners.values().any(|&i| specs[i].0 == format!("Chuỗi Y{k}"));
            let z = winners.values().any(|&i| specs[i].0 == format!("Chuỗi Z{k}"));
            // A serial order gives either X and Z (X first) or Y alone (Y first).
            assert!((x && z && !y) || (y && !x && !z), "chain {k}: X {x}, Y {y}, Z {z} is no serial outcome");
        }

        let mut customers = app.customers();
        let listed = list_all(&mut customers, ListCustomersRequest::default()).await;
        let listed_ids: BTreeSet<String> = listed.iter().map(|c| c.id.clone()).collect();
        assert_eq!(listed_ids, winners.keys().cloned().collect::<BTreeSet<_>>(), "exactly the winners were stored");
        assert_eq!(stored(&mut customers).await, winners.len() as i64, "the losers left nothing behind");
        let mut sequences = Vec::new();
        for customer in &listed {
            sequences.push(creation_sequence(&mut customers, customer, "", "").await);
        }
        assert_contiguous(sequences, "the winners");
    }

    async fn failing_creates_in_a_burst_get_their_own_errors_and_leave_nothing_behind(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let (new, hot, dont_forget) = (rel(&rels, "NEW"), rel(&rels, "HOT"), rel(&rels, "DONT_FORGET"));
        let vip = new_group(&app, "VIP").await;
        let old = new_group(&app, "Cũ").await;
        app.groups().delete_group(DeleteGroupRequest { id: old.id.clone(), etag: String::new(), cascade: true }).await.expect("delete group");
        let web = new_source(&app, "Website").await;
        let gone = new_source(&app, "Tờ rơi").await;
        app.sources().delete_source(DeleteSourceRequest { id: gone.id.clone(), etag: String::new() }).await.expect("delete source");

        // The good creates and six kinds of bad ones, each naming the good group too.
        let good = |i: usize| Customer { group_ids: vec![vip.id.clone()], source_id: web.id.clone(), relationship_id: if i.is_multiple_of(2) { hot.clone() } else { String::new() }, ..named(&format!("Tốt {i}")) };
        let bad: Vec<(Customer, Code)> = vec![
            (Customer { group_ids: vec![vip.id.clone(), old.id.clone()], ..named("Nhóm đã xoá") }, Code::FailedPrecondition),
            (Customer { group_ids: vec![vip.id.clone(), unknown_id()], ..named("Nhóm không có") }, Code::NotFound),
            (Customer { group_ids: vec![vip.id.clone()], source_id: unknown_id(), ..named("Nguồn không có") }, Code::NotFound),
            (Customer { group_ids: vec![vip.id.clone()], source_id: gone.id.clone(), ..named("Nguồn đã xoá") }, Code::FailedPrecondition),
            (Customer { group_ids: vec![vip.id.clone()], relationship_id: unknown_id(), ..named("Quan hệ không có") }, Code::NotFound),
            (Customer { group_ids: vec![vip.id.clone()], relationship_id: dont_forget.clone(), ..named("Đừng quên") }, Code::FailedPrecondition),
        ];
        // 64 calls: good and bad interleaved. Bad ones in the first half have phones and emails
        // of their own; in the second half each shares its phone and email with a good twin,
        // which must still commit (a create that fails its checks takes no phone).
        let mut plan: Vec<(Customer, Option<Code>, Option<usize>)> = Vec::new();
        let mut good_count = 0;
        for i in 0..64 {
            if i % 2 == 0 {
                plan.push((Customer { phone: format!("0966 100 {i:03}"), email: format!("tot{i}@example.vn"), ..good(i) }, None, None));
                good_count += 1;
            } else {
                let (customer, code) = bad[(i / 2) % bad.len()].clone();
                let (phone, email, twin) = if i < 32 {
                    (format!("0966 200 {i:03}"), format!("xau{i}@example.vn"), None)
                } else {
                    (format!("0966-100-{:03}", i - 1), format!("TOT{}@Example.VN", i - 1), Some(i - 1))
                };
                plan.push((Customer { phone, email, ..customer }, Some(code), twin));
            }
        }
        let requests = plan.iter().map(|(c, _, _)| create_request_with(c.clone(), "", "")).collect();
        let results = burst_plain(&app, requests).await;

        let mut customers = app.customers();
        let mut sequences = Vec::new();
        let mut good_ids = BTreeSet::new();
        let mut hot_count = 0;
        for (i, ((spec, expected, twin), result)) in plan.iter().zip(&results).enumerate() {
            match expected {
                None => {
                    let customer = created(result, &spec.name);
                    assert_eq!(customer.group_ids, vec![vip.id.clone()], "{}: groups", spec.name);
                    assert_eq!(customer.source_id, web.id, "{}: source", spec.name);
                    let relationship_id = if spec.relationship_id.is_empty() { new.clone() } else { spec.relationship_id.clone() };
                    assert_eq!(customer.relationship_id, relationship_id, "{}: relationship", spec.name);
                    if relationship_id == hot {
                        hot_count += 1;
                    }
                    sequences.push(creation_sequence(&mut customers, &customer, "", "").await);
                    good_ids.insert(customer.id);
                }
                Some(code) => {
                    let Err(status) = result else {
                        panic!("create {i} ({}) must fail with {code:?}, got OK: {result:?}", spec.name);
                    };
                    match twin {
                        None => assert_eq!(status.code(), *code, "{}: {status:?}", spec.name),
                        // Sharing a good create's phone, it fails its own check or, checked
                        // after its twin, as a duplicate of that twin.
                        Some(twin) => {
                            if status.code() == Code::AlreadyExists {
                                let twin_id = created(&results[*twin], "twin").id;
                                assert_eq!(existing_id(status), twin_id, "{}: names its twin", spec.name);
                            } else {
                                assert_eq!(status.code(), *code, "{}: {status:?}", spec.name);
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(good_ids.len(), good_count);
        assert_contiguous(sequences, "the good creates (failed ones take no sequence)");

        assert_eq!(total(&mut customers, ListCustomersRequest::default()).await, good_count as i64, "ListCustomers total");
        assert_eq!(stored(&mut customers).await, good_count as i64, "nothing stored for the failed creates, deleted or not");
        let listed: BTreeSet<String> = list_all(&mut customers, ListCustomersRequest::default()).await.into_iter().map(|c| c.id).collect();
        assert_eq!(listed, good_ids);
        let summary = count(&mut customers, "").await;
        assert_eq!(summary.total, good_count as i64, "summary bar total");
        let bar_all = bar(&summary);
        assert_eq!(bar_all[&hot], hot_count, "summary bar HOT");
        assert_eq!(bar_all[&new], good_count as i64 - hot_count, "summary bar NEW");
        assert_eq!(bar_all.values().sum::<i64>(), good_count as i64, "no other relationship counts anyone");
        assert_eq!(count(&mut customers, &vip.id).await.total, good_count as i64, "summary bar of the group");
        assert_eq!(group_count(&app, &vip.id).await, good_count as i64, "customer_count of the group");
        assert_eq!(total(&mut customers, in_group(&vip.id)).await, good_count as i64, "members of the group");
        assert_eq!(group_count(&app, &old.id).await, 0, "nobody joined the deleted group");
        assert_eq!(source_count(&app, &web.id).await, good_count as i64, "customer_count of the source");
        assert_eq!(source_count(&app, &gone.id).await, 0);
        assert_eq!(relationship_count(&app, &hot).await, hot_count, "customer_count of HOT");
        assert_eq!(relationship_count(&app, &new).await, good_count as i64 - hot_count, "customer_count of NEW");
        assert_eq!(relationship_count(&app, &dont_forget).await, 0, "customer_count of DONT_FORGET");
    }

    async fn concurrent_repeats_of_a_request_id_create_once(app: TestApp) {
        let vip = new_group(&app, "VIP").await;
        let mut customers = app.customers();

        // 48 identical requests with one request id: one customer, the same answer for all.
        let same = || create_request_with(Customer { phone: "0977 123 456".into(), email: "Mot@Lan.vn".into(), group_ids: vec![vip.id.clone()], ..named("Một lần") }, "chỉ một lần", "req-same");
        let results = burst_plain(&app, (0..48).map(|_| same()).collect()).await;
        let first = created(&results[0], "identical repeat 0");
        for (i, result) in results.iter().enumerate() {
            let customer = created(result, &format!("identical repeat {i}"));
            assert_eq!(customer.id, first.id, "repeat {i} answers with the first customer");
            assert_eq!(customer, first, "repeat {i} returns the first result");
        }
        assert_eq!(stored(&mut customers).await, 1, "48 repeats created one customer");
        assert_eq!(group_count(&app, &vip.id).await, 1, "one membership");
        assert_eq!(history(&mut customers, &first.id).await.len(), 1, "one history row");
        let again = customers.create_customer(same()).await.expect("a later repeat").into_inner().customer.expect("customer");
        assert_eq!(again.id, first.id, "a later repeat answers with the first customer");

        // 48 requests with one request id and two different bodies: whichever body committed
        // first wins; its repeats get its customer, the other body INVALID_ARGUMENT on request_id.
        let variant = |v: usize| create_request_with(Customer { phone: format!("0977 555 00{v}"), ..named(&format!("Biến thể {v}")) }, "", "req-mixed");
        let results = burst_plain(&app, (0..48).map(|i| variant(i % 2)).collect()).await;
        let winners: BTreeSet<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i % 2).collect();
        assert_eq!(winners.len(), 1, "exactly one body wins the request id; winning bodies: {winners:?}");
        let winner = *winners.iter().next().unwrap();
        let mut winner_ids = BTreeSet::new();
        for (i, result) in results.iter().enumerate() {
            if i % 2 == winner {
                let customer = created(result, &format!("mixed repeat {i}"));
                assert_eq!(customer.name, format!("Biến thể {winner}"));
                winner_ids.insert(customer.id);
            } else {
                let status = failed(result, Code::InvalidArgument, &format!("mixed repeat {i}"));
                assert_eq!(violated_fields(status), vec!["request_id"], "{status:?}");
            }
        }
        assert_eq!(winner_ids.len(), 1, "every repeat of the winning body gets the same customer");
        assert_eq!(stored(&mut customers).await, 2, "one customer for the mixed request id");

        // 64 calls over 8 request ids, each repeated 8 times: 8 customers, one per request id.
        let keyed = |k: usize| create_request_with(Customer { email: format!("khoa{k}@example.vn"), ..named(&format!("Khoá {k}")) }, &format!("lý do {k}"), &format!("req-{k}"));
        let results = burst_plain(&app, (0..64).map(|i| keyed(i % 8)).collect()).await;
        let mut by_key: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for (i, result) in results.iter().enumerate() {
            by_key.entry(i % 8).or_default().insert(created(result, &format!("keyed repeat {i}")).id);
        }
        for (k, ids) in &by_key {
            assert_eq!(ids.len(), 1, "request id req-{k} answered with one customer: {ids:?}");
        }
        let keyed_ids: BTreeSet<String> = by_key.values().flatten().cloned().collect();
        assert_eq!(keyed_ids.len(), 8, "one customer per request id");
        assert_eq!(stored(&mut customers).await, 10, "1 + 1 + 8 customers in all");
        let mut sequences = Vec::new();
        for customer in list_all(&mut customers, ListCustomersRequest::default()).await {
            let reason = if customer.id == first.id {
                "chỉ một lần".to_owned()
            } else if let Some(k) = customer.name.strip_prefix("Khoá ") {
                format!("lý do {k}")
            } else {
                String::new()
            };
            sequences.push(creation_sequence(&mut customers, &customer, "", &reason).await);
        }
        assert_contiguous(sequences, "creates behind repeated request ids");
    }

    async fn summary_bar_and_counters_stay_right_under_batched_creates(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let (new, approached, hot, potential) = (rel(&rels, "NEW"), rel(&rels, "APPROACHED"), rel(&rels, "HOT"), rel(&rels, "POTENTIAL"));
        let north = new_group(&app, "Miền Bắc").await;
        let south = new_group(&app, "Miền Nam").await;
        // Kind of create i: (groups, relationship).
        let kinds: Vec<(Vec<String>, String)> = vec![
            (vec![north.id.clone()], hot.clone()),
            (vec![south.id.clone()], approached.clone()),
            (vec![north.id.clone(), south.id.clone()], potential.clone()),
            (vec![], String::new()),
            (vec![north.id.clone()], approached.clone()),
        ];
        let spec = |i: usize, phone: String| {
            let (group_ids, relationship_id) = kinds[i % kinds.len()].clone();
            Customer { phone, group_ids, relationship_id, ..named(&format!("Đếm {i}")) }
        };
        // First burst: 60 distinct creates. Second burst: 40 more, every other one reusing a
        // phone of the first burst (ALREADY_EXISTS), so failures are mixed in.
        let first = burst_plain(&app, (0..60).map(|i| create_request_with(spec(i, format!("0988 000 {i:03}")), "", "")).collect()).await;
        let second = burst_plain(&app, (60..100).map(|i| {
            let phone = if i % 2 == 0 { format!("0988-000-{:03}", i - 60) } else { format!("0988 000 {i:03}") };
            create_request_with(spec(i, phone), "", "")
        }).collect()).await;
        let mut made: Vec<usize> = Vec::new();
        for (i, result) in first.iter().enumerate() {
            created(result, &format!("first burst {i}"));
            made.push(i);
        }
        for (j, result) in second.iter().enumerate() {
            let i = j + 60;
            if i % 2 == 0 {
                let status = failed(result, Code::AlreadyExists, &format!("create {i}"));
                assert_eq!(existing_id(status), created(&first[i - 60], "first").id, "create {i} names the holder of its phone");
            } else {
                created(result, &format!("second burst {i}"));
                made.push(i);
            }
        }

        // The expected counts, per group filter ("" = all) and relationship.
        let mut expected: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for &i in &made {
            let (group_ids, relationship_id) = &kinds[i % kinds.len()];
            let relationship_id = if relationship_id.is_empty() { new.clone() } else { relationship_id.clone() };
            for filter in std::iter::once(String::new()).chain(group_ids.iter().cloned()) {
                *expected.entry(filter).or_default().entry(relationship_id.clone()).or_default() += 1;
            }
        }
        let mut customers = app.customers();
        for (group_id, label) in [(String::new(), "all"), (north.id.clone(), "Miền Bắc"), (south.id.clone(), "Miền Nam")] {
            let summary = count(&mut customers, &group_id).await;
            let want = &expected[&group_id];
            let want_total: i64 = want.values().sum();
            assert_eq!(summary.total, want_total, "{label}: summary bar total");
            let listed = total(&mut customers, in_group(&group_id)).await;
            assert_eq!(summary.total, listed, "{label}: summary bar total equals the list total");
            if !group_id.is_empty() {
                assert_eq!(group_count(&app, &group_id).await, want_total, "{label}: the group's customer_count");
            }
            assert_eq!(summary.counts.len(), rels.len(), "{label}: one count per relationship");
            for entry in &summary.counts {
                let want_count = want.get(&entry.relationship_id).copied().unwrap_or(0);
                assert_eq!(entry.count, want_count, "{label}: summary bar count of {}", entry.code);
                let listed = total(&mut customers, ListCustomersRequest { relationship_id: entry.relationship_id.clone(), ..in_group(&group_id) }).await;
                assert_eq!(entry.count, listed, "{label}: summary bar count of {} equals the list total", entry.code);
                if group_id.is_empty() {
                    assert_eq!(relationship_count(&app, &entry.relationship_id).await, want_count, "customer_count of {}", entry.code);
                }
            }
        }
        let mut sequences = Vec::new();
        for customer in list_all(&mut customers, ListCustomersRequest::default()).await {
            sequences.push(creation_sequence(&mut customers, &customer, "", "").await);
        }
        assert_eq!(sequences.len(), made.len());
        assert_contiguous(sequences, "two bursts");
    }

    async fn a_burst_across_two_tenants_keeps_each_tenants_rules_apart(app: TestApp) {
        let other = new_tenant();
        // Provision the second tenant before the burst.
        app.relationships_of(&other).list_relationships(ListRelationshipsRequest::default()).await.expect("provision");
        // Pairs (one call per tenant) share a phone, an email and a request id: both commit.
        let clients = (0..64).map(|i| if i % 2 == 0 { app.customers() } else { app.customers_of(&other) }).collect();
        let requests = (0..64).map(|i| {
            let k = i / 2;
            create_request_with(Customer { phone: format!("0999 000 {k:03}"), email: format!("chung{k}@example.vn"), ..named(&format!("Khách {k} ở {}", i % 2)) }, &format!("lý do {k}"), &format!("req-{k}"))
        }).collect();
        let results = burst(clients, requests).await;
        let mut ids = BTreeSet::new();
        for (i, result) in results.iter().enumerate() {
            let customer = created(result, &format!("create {i}"));
            assert_eq!(customer.name, format!("Khách {} ở {}", i / 2, i % 2), "create {i} got its own tenant's customer");
            ids.insert(customer.id);
        }
        assert_eq!(ids.len(), 64, "a customer per call");
        for (mut client, label) in [(app.customers(), "first tenant"), (app.customers_of(&other), "second tenant")] {
            let listed = list_all(&mut client, ListCustomersRequest::default()).await;
            assert_eq!(listed.len(), 32, "{label}: its own 32 customers");
            let mut sequences = Vec::new();
            for customer in &listed {
                let k = customer.name.split(' ').nth(1).expect("index").to_owned();
                sequences.push(creation_sequence(&mut client, customer, "", &format!("lý do {k}")).await);
            }
            assert_contiguous(sequences, label);
        }
    }
}
