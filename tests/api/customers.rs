//! CustomerService: records, classification, lists and counts.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use crm_classify::{
    clock::Clock,
    pb::{
        AddCustomersToGroupRequest, BatchChangeRelationshipRequest, ChangeRelationshipRequest,
        ContactChannel, CountCustomersByRelationshipRequest, CountCustomersByRelationshipResponse,
        CreateCustomerRequest, CreateGroupRequest, CreateRelationshipRequest, Customer,
        DeleteCustomerRequest, DeleteGroupRequest, DeleteRelationshipRequest, DeleteSourceRequest,
        GetCustomerRequest, GetRelationshipRequest, GetSourceReportRequest, Group,
        ListContactsRequest, ListCustomersRequest, ListRelationshipHistoryRequest,
        RecordContactRequest, RecordContactResponse, Relationship, RelationshipChangeCause,
        RemoveCustomersFromGroupRequest, RestoreGroupRequest, Source, SourceReportRow,
        UpdateCustomerRequest,
    },
};
use prost_types::Timestamp;
use tonic::{Code, Response, Status};

use crate::fixtures::{
    self, Customers, SEEDED, change, change_request, count, create_customer, create_request,
    delete_customer, get_customer, history, list_pages, named, new_group, new_group_under,
    new_groups, new_source, rel, relationships, restore_customer, stored, total, unknown_id,
    update_request,
};
use crate::helpers::{TestApp, at_most, concurrently, expect_code, new_tenant, violated_fields};
use crate::on_both_databases;

fn batch_request(customer_ids: &[String], relationship_id: &str) -> BatchChangeRelationshipRequest {
    BatchChangeRelationshipRequest {
        customer_ids: customer_ids.to_vec(),
        relationship_id: relationship_id.to_owned(),
        reason: String::new(),
    }
}

async fn record(
    client: &mut Customers,
    customer_id: &str,
    channel: ContactChannel,
    contact_time: Option<Timestamp>,
) -> Result<Response<RecordContactResponse>, Status> {
    client
        .record_contact(RecordContactRequest {
            customer_id: customer_id.to_owned(),
            channel: channel.into(),
            note: String::new(),
            contact_time,
        })
        .await
}

/// Every customer matching `request`, page after page; checks that every page
/// reports the number of customers returned in all as `total_size` and that
/// no customer comes twice.
async fn list_all(client: &mut Customers, request: ListCustomersRequest) -> Vec<Customer> {
    let page_size = request.page_size;
    let mut customers = Vec::new();
    let mut totals = Vec::new();
    for page in list_pages(client, request).await {
        if page_size > 0 {
            assert!(page.customers.len() <= page_size as usize);
        }
        totals.push(page.total_size);
        customers.extend(page.customers);
    }
    let n = customers.len() as i64;
    assert!(
        totals.iter().all(|t| *t == n),
        "total_size {totals:?} but {n} customers returned"
    );
    assert_eq!(
        ids_of(&customers).len(),
        customers.len(),
        "no customer twice"
    );
    customers
}

fn ids_of(customers: &[Customer]) -> HashSet<String> {
    customers.iter().map(|c| c.id.clone()).collect()
}

fn id_set(customers: &[&Customer]) -> HashSet<String> {
    customers.iter().map(|c| c.id.clone()).collect()
}

async fn delete_group(app: &TestApp, id: &str) {
    app.groups()
        .delete_group(DeleteGroupRequest {
            id: id.to_owned(),
            etag: String::new(),
            cascade: true,
        })
        .await
        .expect("delete group");
}

/// A group's `customer_count`, checked to be the same in Get and List.
async fn group_count(app: &TestApp, id: &str) -> i64 {
    let got = fixtures::group_count(app, id).await;
    let listed = fixtures::listed_groups(&mut app.groups())
        .await
        .into_iter()
        .find(|g| g.id == id)
        .expect("listed group")
        .customer_count;
    assert_eq!(
        got, listed,
        "Get and List agree on the group's customer_count"
    );
    got
}

/// A source's `customer_count`, checked to be the same in Get and List.
async fn source_count(app: &TestApp, id: &str) -> i64 {
    let got = fixtures::source_count(app, id).await;
    let listed = fixtures::listed_sources(&mut app.sources())
        .await
        .into_iter()
        .find(|s| s.id == id)
        .expect("listed source")
        .customer_count;
    assert_eq!(
        got, listed,
        "Get and List agree on the source's customer_count"
    );
    got
}

/// A relationship's `customer_count`, checked to be the same in Get and List.
async fn relationship_count(app: &TestApp, id: &str) -> i64 {
    let got = fixtures::relationship_count(app, id).await;
    let listed = relationships(&mut app.relationships())
        .await
        .into_iter()
        .find(|r| r.id == id)
        .expect("listed relationship")
        .customer_count;
    assert_eq!(
        got, listed,
        "Get and List agree on the relationship's customer_count"
    );
    got
}

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn key(t: &Option<Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp");
    (t.seconds, t.nanos)
}

fn fields(status: &Status) -> HashSet<String> {
    violated_fields(status).into_iter().collect()
}

/// A tenant's catalogue for the list and count tests: two sources, a
/// three-level group tree plus another group, five active customers and a
/// deleted one.
struct Catalogue {
    rels: Vec<Relationship>,
    web: Source,
    fair: Source,
    root: Group,
    mid: Group,
    leaf: Group,
    other: Group,
    /// 0–4 active, 5 deleted.
    customers: Vec<Customer>,
}

async fn seed_catalogue(app: &TestApp) -> Catalogue {
    let rels = relationships(&mut app.relationships()).await;
    let (new, hot) = (rel(&rels, "NEW"), rel(&rels, "HOT"));
    let web = new_source(app, "Website").await;
    let fair = new_source(app, "Hội chợ").await;
    let root = new_group(app, "Miền Bắc").await;
    let mid = new_group_under(app, "Hà Nội", &root.id).await;
    let leaf = new_group_under(app, "Cầu Giấy", &mid.id).await;
    let other = new_group(app, "Miền Nam").await;
    let specs = vec![
        Customer {
            phone: "0901000001".into(),
            email: "a@example.com".into(),
            owner_id: "u-1".into(),
            source_id: web.id.clone(),
            group_ids: vec![root.id.clone()],
            relationship_id: new.clone(),
            ..named("Nguyễn Văn A")
        },
        Customer {
            phone: "0901000002".into(),
            owner_id: "u-2".into(),
            source_id: web.id.clone(),
            group_ids: vec![mid.id.clone()],
            relationship_id: hot.clone(),
            ..named("Trần Thị B")
        },
        Customer {
            email: "c.le@congty.vn".into(),
            owner_id: "u-1".into(),
            source_id: fair.id.clone(),
            group_ids: vec![leaf.id.clone()],
            relationship_id: hot.clone(),
            ..named("Lê Văn C")
        },
        Customer {
            owner_id: "u-2".into(),
            group_ids: vec![other.id.clone()],
            relationship_id: new.clone(),
            ..named("Phạm D")
        },
        Customer {
            phone: "0912888777".into(),
            owner_id: "u-1".into(),
            source_id: fair.id.clone(),
            relationship_id: hot.clone(),
            ..named("NGUYEN THI E")
        },
        Customer {
            phone: "0901000006".into(),
            owner_id: "u-1".into(),
            source_id: web.id.clone(),
            group_ids: vec![root.id.clone()],
            relationship_id: hot.clone(),
            ..named("Nguyễn Đã Xoá")
        },
    ];
    let mut client = app.customers();
    let mut customers = Vec::new();
    for spec in specs {
        customers.push(create_customer(&mut client, spec).await);
    }
    delete_customer(&mut client, &customers[5].id).await;
    Catalogue {
        rels,
        web,
        fair,
        root,
        mid,
        leaf,
        other,
        customers,
    }
}

fn filter(request: &CountCustomersByRelationshipRequest) -> ListCustomersRequest {
    ListCustomersRequest {
        group_id: request.group_id.clone(),
        include_subgroups: request.include_subgroups,
        source_id: request.source_id.clone(),
        owner_id: request.owner_id.clone(),
        query: request.query.clone(),
        ..Default::default()
    }
}

fn count_codes(response: &CountCustomersByRelationshipResponse) -> Vec<(String, i64)> {
    response
        .counts
        .iter()
        .map(|c| (c.code.clone(), c.count))
        .collect()
}

fn expected_counts(nonzero: &[(&str, i64)]) -> Vec<(String, i64)> {
    SEEDED
        .iter()
        .map(|code| {
            let n = nonzero
                .iter()
                .find(|(c, _)| c == code)
                .map_or(0, |(_, n)| *n);
            (code.to_string(), n)
        })
        .collect()
}

#[track_caller]
fn check_row(
    row: &SourceReportRow,
    customers: i64,
    closed: i64,
    revenue: i64,
    per_relationship: &[(&str, i64)],
) {
    let label = &row.source_name;
    assert_eq!(row.customers, customers, "{label}: customers");
    assert_eq!(row.closed_customers, closed, "{label}: closed_customers");
    let rate = if customers == 0 {
        0.0
    } else {
        closed as f64 / customers as f64
    };
    assert!(
        (row.conversion_rate - rate).abs() < 1e-9,
        "{label}: conversion_rate {} != {rate}",
        row.conversion_rate
    );
    assert_eq!(row.revenue, revenue, "{label}: revenue");
    let counts: Vec<(String, i64)> = row
        .relationship_counts
        .iter()
        .map(|c| (c.code.clone(), c.count))
        .collect();
    assert_eq!(
        counts,
        expected_counts(per_relationship),
        "{label}: relationship_counts"
    );
    assert_eq!(
        row.relationship_counts
            .iter()
            .map(|c| c.position)
            .collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>(),
        "{label}: position order"
    );
}

on_both_databases! {
    async fn create_normalises_phone_and_email_and_keeps_vietnamese_names(app: TestApp) {
        let mut customers = app.customers();
        let now = ts(app.clock.now());
        let an = create_customer(&mut customers, Customer { phone: "0912 345.678".into(), email: "  An@Example.COM ".into(), ..named("Nguyễn Thị Ánh Tuyết") }).await;
        assert_eq!(an.phone, "0912345678");
        assert_eq!(an.email, "an@example.com");
        assert_eq!(an.name, "Nguyễn Thị Ánh Tuyết", "Vietnamese text round-trips exactly");
        uuid::Uuid::parse_str(&an.id).expect("ids are UUIDs");
        assert!(!an.etag.is_empty());
        assert_eq!(an.create_time, Some(now));
        assert!(an.delete_time.is_none());
        assert!(an.last_contact_time.is_none(), "never contacted");
        let fetched = get_customer(&mut customers, &an.id).await;
        assert_eq!((fetched.name.as_str(), fetched.phone.as_str(), fetched.email.as_str()), ("Nguyễn Thị Ánh Tuyết", "0912345678", "an@example.com"));

        let intl = create_customer(&mut customers, Customer { phone: "+84 (912) 345-678".into(), ..named("Đặng Văn Lưỡng") }).await;
        assert_eq!(intl.phone, "+84912345678");
        assert_eq!(intl.name, "Đặng Văn Lưỡng");
        // 6 and 15 digits are the bounds.
        let six = create_customer(&mut customers, Customer { phone: "12-34-56".into(), ..named("Huỳnh Sáu") }).await;
        assert_eq!(six.phone, "123456");
        let fifteen = create_customer(&mut customers, Customer { phone: "+123 456 789 012 345".into(), ..named("Mười Lăm") }).await;
        assert_eq!(fifteen.phone, "+123456789012345");
        for name in ["Trịnh Công Sơn", "Ngô Thị Hường", "Phùng Quốc Khánh Ỷ"] {
            let created = create_customer(&mut customers, named(name)).await;
            assert_eq!(created.name, name);
            assert_eq!(get_customer(&mut customers, &created.id).await.name, name);
        }
        assert_eq!(stored(&mut customers).await, 7);
    }

    async fn bad_fields_are_invalid_argument_naming_each_and_write_nothing(app: TestApp) {
        let mut customers = app.customers();
        let cases = [
            (named(""), "customer.name"),
            (named("   "), "customer.name"),
            (Customer { phone: "12ab".into(), ..named("A") }, "customer.phone"),
            (Customer { phone: "123".into(), ..named("A") }, "customer.phone"),
            (Customer { phone: "12 345".into(), ..named("A") }, "customer.phone"),
            (Customer { phone: "1234567890123456".into(), ..named("A") }, "customer.phone"),
            (Customer { email: "no-at-sign".into(), ..named("A") }, "customer.email"),
            (Customer { email: "a@b".into(), ..named("A") }, "customer.email"),
        ];
        for (customer, field) in cases {
            let status = expect_code(customers.create_customer(create_request(customer.clone())).await, Code::InvalidArgument);
            assert_eq!(violated_fields(&status), vec![field], "{customer:?}");
        }
        let status = expect_code(
            customers.create_customer(create_request(Customer { name: String::new(), phone: "123".into(), email: "a@b".into(), revenue: -1, ..Default::default() })).await,
            Code::InvalidArgument,
        );
        assert_eq!(
            fields(&status),
            HashSet::from(["customer.name", "customer.phone", "customer.email", "customer.revenue"].map(String::from)),
            "one error names every bad field"
        );
        expect_code(customers.create_customer(CreateCustomerRequest::default()).await, Code::InvalidArgument);
        assert_eq!(stored(&mut customers).await, 0, "nothing was written");
    }

    async fn an_active_duplicate_phone_or_email_is_already_exists_naming_the_existing_customer(app: TestApp) {
        let mut customers = app.customers();
        let first = create_customer(&mut customers, Customer { phone: "0912 345 678".into(), email: "Tam@Example.com".into(), ..named("Lê Văn Tám") }).await;
        let status = expect_code(
            customers.create_customer(create_request(Customer { phone: "0912.345-678".into(), ..named("Người khác") })).await,
            Code::AlreadyExists,
        );
        assert!(status.message().contains(&first.id), "names the existing customer: {}", status.message());
        let status = expect_code(
            customers.create_customer(create_request(Customer { email: " TAM@example.COM".into(), ..named("Người khác") })).await,
            Code::AlreadyExists,
        );
        assert!(status.message().contains(&first.id), "names the existing customer: {}", status.message());
        assert_eq!(stored(&mut customers).await, 1, "nothing was written");

        // A deleted customer frees its phone; it cannot then be restored over the new holder.
        delete_customer(&mut customers, &first.id).await;
        let second = create_customer(&mut customers, Customer { phone: "0912345678".into(), ..named("Người mới") }).await;
        assert_eq!(second.phone, "0912345678");
        expect_code(restore_customer(&mut customers, &first.id).await, Code::AlreadyExists);
        assert!(get_customer(&mut customers, &first.id).await.delete_time.is_some(), "still deleted");
        assert_eq!(total(&mut customers, ListCustomersRequest::default()).await, 1);
    }

    async fn twenty_concurrent_creates_with_one_phone_make_one_customer(app: TestApp) {
        let results = concurrently(20, |i| {
            let mut client = app.customers();
            async move { client.create_customer(create_request(Customer { phone: "0987 654 321".into(), ..named(&format!("Khách {i}")) })).await }
        }).await;
        let mut winners = 0;
        for result in results {
            match result {
                Ok(_) => winners += 1,
                Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            }
        }
        assert_eq!(winners, 1);
        let listed = list_all(&mut app.customers(), ListCustomersRequest::default()).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].phone, "0987654321");
    }

    async fn the_relationship_on_create_defaults_and_must_be_an_active_manual_one(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let plain = create_customer(&mut customers, named("Mặc định")).await;
        assert_eq!(plain.relationship_id, rel(&rels, "NEW"));
        let hot = create_customer(&mut customers, Customer { relationship_id: rel(&rels, "HOT"), ..named("Nóng") }).await;
        assert_eq!(hot.relationship_id, rel(&rels, "HOT"));
        assert_eq!(get_customer(&mut customers, &hot.id).await.relationship_id, rel(&rels, "HOT"));

        app.relationships().delete_relationship(DeleteRelationshipRequest { id: rel(&rels, "LOST"), etag: String::new(), reassign_to_id: String::new() }).await.expect("delete an unused relationship");
        let cases = [
            (rel(&rels, "DONT_FORGET"), Code::FailedPrecondition),
            (rel(&rels, "LOST"), Code::FailedPrecondition),
            (unknown_id(), Code::NotFound),
            ("not-a-uuid".to_owned(), Code::InvalidArgument),
        ];
        for (relationship_id, code) in cases {
            let status = expect_code(customers.create_customer(create_request(Customer { relationship_id, ..named("Sai") })).await, code);
            if code == Code::InvalidArgument {
                assert_eq!(violated_fields(&status), vec!["customer.relationship_id"]);
            }
        }
        assert_eq!(stored(&mut customers).await, 2, "nothing was written");
    }

    async fn sources_and_groups_given_on_create_must_exist_and_be_active(app: TestApp) {
        let mut customers = app.customers();
        let web = new_source(&app, "Website").await;
        let gone = new_source(&app, "Tờ rơi").await;
        app.sources().delete_source(DeleteSourceRequest { id: gone.id.clone(), etag: String::new() }).await.expect("delete source");
        let vip = new_group(&app, "VIP").await;
        let old = new_group(&app, "Cũ").await;
        delete_group(&app, &old.id).await;

        let ok = create_customer(&mut customers, Customer { source_id: web.id.clone(), group_ids: vec![vip.id.clone()], ..named("Có nguồn") }).await;
        assert_eq!(ok.source_id, web.id);
        assert_eq!(ok.group_ids, vec![vip.id.clone()]);

        expect_code(customers.create_customer(create_request(Customer { source_id: unknown_id(), ..named("X") })).await, Code::NotFound);
        expect_code(customers.create_customer(create_request(Customer { source_id: gone.id.clone(), ..named("X") })).await, Code::FailedPrecondition);
        expect_code(customers.create_customer(create_request(Customer { group_ids: vec![vip.id.clone(), unknown_id()], ..named("X") })).await, Code::NotFound);
        expect_code(customers.create_customer(create_request(Customer { group_ids: vec![vip.id.clone(), old.id.clone()], ..named("X") })).await, Code::FailedPrecondition);
        assert_eq!(stored(&mut customers).await, 1, "nothing was written");
        assert_eq!(group_count(&app, &vip.id).await, 1, "no membership was written");
        assert_eq!(source_count(&app, &web.id).await, 1);
    }

    async fn a_create_names_at_most_a_hundred_groups(app: TestApp) {
        let mut customers = app.customers();
        // 101 distinct well-formed ids: refused for their number, whether the
        // groups exist or not.
        let unknown: Vec<String> = (0..101).map(|_| unknown_id()).collect();
        assert_eq!(unknown.iter().collect::<HashSet<_>>().len(), 101);
        let status = expect_code(customers.create_customer(create_request(Customer { group_ids: unknown, ..named("Quá nhiều nhóm") })).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["customer.group_ids"], "{status:?}");

        let groups = new_groups(&app, "Nhóm", 101).await;
        let all: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let status = expect_code(customers.create_customer(create_request(Customer { group_ids: all.clone(), ..named("Quá nhiều nhóm") })).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["customer.group_ids"], "{status:?}");
        assert_eq!(stored(&mut customers).await, 0, "nothing was written");

        let hundred = &all[..100];
        let expected: HashSet<String> = hundred.iter().cloned().collect();
        let created = create_customer(&mut customers, Customer { group_ids: hundred.to_vec(), ..named("Trăm nhóm") }).await;
        assert_eq!(created.group_ids.len(), 100, "the created customer lists its 100 groups");
        assert_eq!(created.group_ids.iter().cloned().collect::<HashSet<_>>(), expected);
        let read = get_customer(&mut customers, &created.id).await;
        assert_eq!(read.group_ids.len(), 100, "Get lists the 100 groups");
        assert_eq!(read.group_ids.iter().cloned().collect::<HashSet<_>>(), expected);
        let listed = fixtures::listed_groups(&mut app.groups()).await;
        assert_eq!(listed.len(), 101);
        for group in &listed {
            let want = i64::from(expected.contains(&group.id));
            assert_eq!(group.customer_count, want, "customer_count of {}", group.name);
        }
        assert_eq!(fixtures::group_count(&app, &all[0]).await, 1);
        assert_eq!(fixtures::group_count(&app, &all[99]).await, 1);
        assert_eq!(fixtures::group_count(&app, &all[100]).await, 0, "the group left out");
        assert_eq!(stored(&mut customers).await, 1);
    }

    async fn profile_completion_is_the_share_of_the_seven_profile_fields(app: TestApp) {
        let mut customers = app.customers();
        let source = new_source(&app, "Giới thiệu").await;
        let name_only = create_customer(&mut customers, named("Chỉ tên")).await;
        assert_eq!(name_only.profile_completion, 14);
        let two = create_customer(&mut customers, Customer { phone: "0903111333".into(), ..named("Hai trường") }).await;
        assert_eq!(two.profile_completion, 28);
        let three = create_customer(&mut customers, Customer { phone: "0903111222".into(), email: "ba@example.com".into(), ..named("Ba trường") }).await;
        assert_eq!(three.profile_completion, 42);
        let full = create_customer(&mut customers, Customer {
            phone: "0903111444".into(),
            email: "du@example.com".into(),
            owner_id: "u-1".into(),
            source_id: source.id.clone(),
            province: "Hà Nội".into(),
            company: "Công ty TNHH Hoa Sen".into(),
            ..named("Đầy đủ")
        }).await;
        assert_eq!(full.profile_completion, 100);
        let extras = create_customer(&mut customers, Customer { revenue: 10, attributes: BTreeMap::from([("hang".to_owned(), "vang".to_owned())]), ..named("Không tính") }).await;
        assert_eq!(extras.profile_completion, 14, "revenue and attributes are not profile fields");
        let updated = customers.update_customer(update_request(Customer { id: name_only.id.clone(), province: "Huế".into(), ..Default::default() }, &["province"])).await.expect("update").into_inner().customer.unwrap();
        assert_eq!(updated.profile_completion, 28);
        assert_eq!(get_customer(&mut customers, &name_only.id).await.profile_completion, 28);
    }

    async fn revenue_must_not_be_negative_and_attributes_round_trip_with_valid_keys(app: TestApp) {
        let mut customers = app.customers();
        let status = expect_code(customers.create_customer(create_request(Customer { revenue: -1, ..named("Âm") })).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["customer.revenue"]);
        let attributes = BTreeMap::from([
            ("ma_so_thue".to_owned(), "0101234567".to_owned()),
            ("ghi_chu_2".to_owned(), "Khách quen, hay đặt hàng dịp Tết".to_owned()),
        ]);
        let created = create_customer(&mut customers, Customer { revenue: 1_500_000_000, attributes: attributes.clone(), ..named("Doanh thu") }).await;
        assert_eq!(created.revenue, 1_500_000_000);
        assert_eq!(created.attributes, attributes);
        let fetched = get_customer(&mut customers, &created.id).await;
        assert_eq!((fetched.revenue, &fetched.attributes), (1_500_000_000, &attributes));
        for bad in ["Ma_so", "ma so"] {
            let status = expect_code(
                customers.create_customer(create_request(Customer { attributes: BTreeMap::from([(bad.to_owned(), "x".to_owned())]), ..named("Khoá sai") })).await,
                Code::InvalidArgument,
            );
            assert_eq!(violated_fields(&status), vec!["customer.attributes"], "key {bad:?}");
        }
        let status = expect_code(customers.update_customer(update_request(Customer { id: created.id.clone(), revenue: -5, ..Default::default() }, &["revenue"])).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["customer.revenue"]);
        assert_eq!(get_customer(&mut customers, &created.id).await.revenue, 1_500_000_000, "unchanged");
        assert_eq!(stored(&mut customers).await, 1, "nothing else was written");
    }

    async fn every_relationship_change_path_is_recorded_in_the_history(app: TestApp) {
        let mut customers = app.customers_as("u-42");
        let rels = relationships(&mut app.relationships()).await;
        let (new, approached, hot, potential) = (rel(&rels, "NEW"), rel(&rels, "APPROACHED"), rel(&rels, "HOT"), rel(&rels, "POTENTIAL"));

        let t0 = ts(app.clock.now());
        let customer = customers.create_customer(CreateCustomerRequest { customer: Some(named("Hồ Thị Lịch Sử")), request_id: String::new(), reason: "Gặp ở hội chợ".into() }).await.expect("create").into_inner().customer.unwrap();

        app.clock.advance(Duration::minutes(5));
        let t1 = ts(app.clock.now());
        let changed = customers.change_relationship(ChangeRelationshipRequest { reason: "Đã gọi điện".into(), ..change_request(&customer.id, &approached) }).await.expect("change").into_inner();
        assert_eq!(changed.customer.as_ref().unwrap().relationship_id, approached);
        let single = changed.change.expect("a change was recorded");

        app.clock.advance(Duration::minutes(5));
        let t2 = ts(app.clock.now());
        let batch = customers.batch_change_relationship(BatchChangeRelationshipRequest { reason: "Quan tâm báo giá".into(), ..batch_request(std::slice::from_ref(&customer.id), &hot) }).await.expect("batch").into_inner();
        assert_eq!(batch.changes.len(), 1);

        app.clock.advance(Duration::minutes(5));
        // An update that leaves the relationship alone records nothing.
        customers.update_customer(update_request(Customer { id: customer.id.clone(), company: "Công ty Lịch Sử".into(), ..Default::default() }, &["company"])).await.expect("update company");
        let t3 = ts(app.clock.now());
        let updated = customers.update_customer(UpdateCustomerRequest { reason: "Đang cân nhắc".into(), ..update_request(Customer { id: customer.id.clone(), relationship_id: potential.clone(), ..Default::default() }, &["relationship_id"]) }).await.expect("update relationship").into_inner().customer.unwrap();
        assert_eq!(updated.relationship_id, potential);

        app.clock.advance(Duration::minutes(5));
        let t4 = ts(app.clock.now());
        let deleted = app.relationships().delete_relationship(DeleteRelationshipRequest { id: potential.clone(), etag: String::new(), reassign_to_id: approached.clone() }).await.expect("delete relationship").into_inner();
        assert_eq!(deleted.reassigned_customer_count, 1);

        let changes = history(&mut customers, &customer.id).await;
        use RelationshipChangeCause::{Created, Manual, RelationshipDeleted};
        let expected = [
            (Created, "", new.as_str(), Some("Gặp ở hội chợ"), t0),
            (Manual, new.as_str(), approached.as_str(), Some("Đã gọi điện"), t1),
            (Manual, approached.as_str(), hot.as_str(), Some("Quan tâm báo giá"), t2),
            (Manual, hot.as_str(), potential.as_str(), Some("Đang cân nhắc"), t3),
            (RelationshipDeleted, potential.as_str(), approached.as_str(), None, t4),
        ];
        assert_eq!(changes.len(), expected.len(), "{changes:#?}");
        for (i, (change, (cause, old, new, reason, time))) in changes.iter().zip(expected).enumerate() {
            assert_eq!(change.customer_id, customer.id, "change {i}");
            assert_eq!(change.cause(), cause, "change {i}");
            assert_eq!(change.old_relationship_id, old, "change {i}");
            assert_eq!(change.new_relationship_id, new, "change {i}");
            assert_eq!(change.change_time, Some(time), "change {i}");
            if let Some(reason) = reason {
                assert_eq!(change.reason, reason, "change {i}");
                assert_eq!(change.actor_id, "u-42", "change {i}");
            }
        }
        assert!(changes.windows(2).all(|w| w[0].sequence < w[1].sequence), "oldest first: {changes:#?}");
        assert!(changes[0].sequence >= 1);
        assert_eq!(changes[1], single, "ChangeRelationship returns the recorded row");
        assert_eq!(changes[2], batch.changes[0], "BatchChangeRelationship returns the recorded row");
        let page = customers.list_relationship_history(ListRelationshipHistoryRequest { customer_id: customer.id.clone(), page_size: 2, page_token: String::new() }).await.unwrap().into_inner();
        assert_eq!(page.total_size, 5);
        assert_eq!(page.changes, changes[..2].to_vec());
        assert_eq!(get_customer(&mut customers, &customer.id).await.relationship_id, approached);
    }

    async fn the_tenants_change_sequences_run_from_one_without_gaps(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (hot, lost, potential, closed) = (rel(&rels, "HOT"), rel(&rels, "LOST"), rel(&rels, "POTENTIAL"), rel(&rels, "CLOSED"));
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(create_customer(&mut customers, named(&format!("Tuần tự {i}"))).await.id);
        }
        let created = concurrently(10, |i| {
            let mut client = app.customers();
            async move { create_customer(&mut client, named(&format!("Song song {i}"))).await.id }
        }).await;
        ids.extend(created);
        let changed = concurrently(ids.len(), |i| {
            let mut client = app.customers();
            let (id, hot) = (ids[i].clone(), hot.clone());
            async move { change(&mut client, &id, &hot).await }
        }).await;
        assert!(changed.iter().all(|r| r.change.is_some()));
        // Failed and no-op calls take no sequence number.
        expect_code(customers.batch_change_relationship(batch_request(&[ids[0].clone(), unknown_id()], &lost)).await, Code::NotFound);
        expect_code(customers.change_relationship(change_request(&ids[0], &rel(&rels, "DONT_FORGET"))).await, Code::FailedPrecondition);
        assert!(change(&mut customers, &ids[0], &hot).await.change.is_none());
        let batch = customers.batch_change_relationship(batch_request(&ids[0..5], &lost)).await.expect("batch").into_inner();
        assert_eq!(batch.changes.len(), 5);
        assert!(batch.changes.windows(2).all(|w| w[0].sequence < w[1].sequence), "in sequence order");
        customers.update_customer(update_request(Customer { id: ids[5].clone(), relationship_id: closed.clone(), ..Default::default() }, &["relationship_id"])).await.expect("update");
        customers.batch_change_relationship(batch_request(&ids[6..9], &potential)).await.expect("batch");
        let deleted = app.relationships().delete_relationship(DeleteRelationshipRequest { id: potential.clone(), etag: String::new(), reassign_to_id: closed.clone() }).await.expect("delete").into_inner();
        assert_eq!(deleted.reassigned_customer_count, 3);

        let mut sequences = Vec::new();
        for id in &ids {
            sequences.extend(history(&mut customers, id).await.into_iter().map(|c| c.sequence));
        }
        sequences.sort_unstable();
        let expected_len = 15 + 15 + 5 + 1 + 3 + 3;
        assert_eq!(sequences, (1..=expected_len as i64).collect::<Vec<_>>(), "1..=n, none skipped, none reused");
    }

    async fn change_relationship_refuses_automatic_stale_deleted_and_unknown_and_skips_no_ops(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (new, hot, lost) = (rel(&rels, "NEW"), rel(&rels, "HOT"), rel(&rels, "LOST"));
        let customer = create_customer(&mut customers, named("Đổi quan hệ")).await;

        expect_code(customers.change_relationship(change_request(&customer.id, &rel(&rels, "DONT_FORGET"))).await, Code::FailedPrecondition);
        assert_eq!(get_customer(&mut customers, &customer.id).await.relationship_id, new);
        assert_eq!(history(&mut customers, &customer.id).await.len(), 1);

        let same = change(&mut customers, &customer.id, &new).await;
        assert!(same.change.is_none(), "nothing changed: {same:?}");
        assert_eq!(same.customer.unwrap().relationship_id, new);
        assert_eq!(history(&mut customers, &customer.id).await.len(), 1, "no history row for a no-op");

        let current = get_customer(&mut customers, &customer.id).await;
        let moved = customers.change_relationship(ChangeRelationshipRequest { etag: current.etag.clone(), ..change_request(&customer.id, &hot) }).await.expect("current etag").into_inner();
        let moved = moved.customer.unwrap();
        assert_eq!(moved.relationship_id, hot);
        assert_ne!(moved.etag, current.etag, "the etag changes with the customer");
        expect_code(customers.change_relationship(ChangeRelationshipRequest { etag: current.etag.clone(), ..change_request(&customer.id, &lost) }).await, Code::Aborted);
        let after = get_customer(&mut customers, &customer.id).await;
        assert_eq!(after.relationship_id, hot, "a stale etag changes nothing");
        assert_eq!(after.etag, moved.etag);
        assert_eq!(history(&mut customers, &customer.id).await.len(), 2);

        let gone = create_customer(&mut customers, named("Đã xoá")).await;
        delete_customer(&mut customers, &gone.id).await;
        expect_code(customers.change_relationship(change_request(&gone.id, &hot)).await, Code::FailedPrecondition);
        assert_eq!(get_customer(&mut customers, &gone.id).await.relationship_id, new);
        assert_eq!(history(&mut customers, &gone.id).await.len(), 1);

        let unknown = unknown_id();
        expect_code(customers.change_relationship(change_request(&unknown, &hot)).await, Code::NotFound);
    }

    async fn batch_change_is_all_or_nothing(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (new, hot) = (rel(&rels, "NEW"), rel(&rels, "HOT"));
        let mut ids = Vec::new();
        for name in ["Một", "Hai", "Ba"] {
            ids.push(create_customer(&mut customers, named(name)).await.id);
        }
        let gone = create_customer(&mut customers, named("Đã xoá")).await;
        delete_customer(&mut customers, &gone.id).await;

        let with_unknown = vec![ids[0].clone(), ids[1].clone(), unknown_id(), ids[2].clone()];
        expect_code(customers.batch_change_relationship(batch_request(&with_unknown, &hot)).await, Code::NotFound);
        let with_deleted = vec![ids[0].clone(), ids[1].clone(), gone.id.clone(), ids[2].clone()];
        expect_code(customers.batch_change_relationship(batch_request(&with_deleted, &hot)).await, Code::FailedPrecondition);
        for id in ids.iter().chain([&gone.id]) {
            assert_eq!(get_customer(&mut customers, id).await.relationship_id, new, "{id} unchanged");
            assert_eq!(history(&mut customers, id).await.len(), 1, "{id} has only its creation");
        }
        assert_eq!(relationship_count(&app, &hot).await, 0);
    }

    async fn batch_change_validates_its_ids_and_lists_only_real_changes(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (new, hot) = (rel(&rels, "NEW"), rel(&rels, "HOT"));
        let a = create_customer(&mut customers, named("A")).await;
        let b = create_customer(&mut customers, named("B")).await;
        let c = create_customer(&mut customers, named("C")).await;

        let too_many: Vec<String> = (0..1001).map(|_| unknown_id()).collect();
        let status = expect_code(customers.batch_change_relationship(batch_request(&too_many, &hot)).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["customer_ids"]);
        let status = expect_code(customers.batch_change_relationship(batch_request(&[], &hot)).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["customer_ids"]);
        expect_code(customers.batch_change_relationship(batch_request(std::slice::from_ref(&a.id), &rel(&rels, "DONT_FORGET"))).await, Code::FailedPrecondition);
        assert_eq!(get_customer(&mut customers, &a.id).await.relationship_id, new);

        change(&mut customers, &a.id, &hot).await;
        let repeated = vec![a.id.clone(), b.id.clone(), b.id.clone(), c.id.clone(), a.id.clone(), c.id.clone()];
        let response = customers.batch_change_relationship(batch_request(&repeated, &hot)).await.expect("batch").into_inner();
        let moved: Vec<String> = response.changes.iter().map(|ch| ch.customer_id.clone()).collect();
        assert_eq!(moved.len(), 2, "b and c once each; a already held it: {moved:?}");
        assert_eq!(moved.iter().cloned().collect::<HashSet<_>>(), HashSet::from([b.id.clone(), c.id.clone()]));
        assert!(response.changes.iter().all(|ch| ch.cause() == RelationshipChangeCause::Manual && ch.old_relationship_id == new && ch.new_relationship_id == hot));
        for customer in [&a, &b, &c] {
            assert_eq!(get_customer(&mut customers, &customer.id).await.relationship_id, hot);
            assert_eq!(history(&mut customers, &customer.id).await.len(), 2, "created + one move");
        }
        let again = customers.batch_change_relationship(batch_request(&[a.id.clone(), b.id.clone()], &hot)).await.expect("batch").into_inner();
        assert!(again.changes.is_empty());
        assert_eq!(relationship_count(&app, &hot).await, 3);
    }

    async fn group_membership_changes_are_idempotent_and_check_the_group_and_customers(app: TestApp) {
        let mut customers = app.customers();
        let group = new_group(&app, "Khách sỉ").await;
        let a = create_customer(&mut customers, named("A")).await;
        let b = create_customer(&mut customers, named("B")).await;
        let c = create_customer(&mut customers, named("C")).await;
        let add = |ids: Vec<String>| AddCustomersToGroupRequest { group_id: group.id.clone(), customer_ids: ids };
        let remove = |ids: Vec<String>| RemoveCustomersFromGroupRequest { group_id: group.id.clone(), customer_ids: ids };

        let first = customers.add_customers_to_group(add(vec![a.id.clone(), b.id.clone()])).await.expect("add").into_inner();
        assert_eq!(first.added_count, 2);
        let second = customers.add_customers_to_group(add(vec![a.id.clone(), b.id.clone(), a.id.clone()])).await.expect("add again").into_inner();
        assert_eq!(second.added_count, 0);
        assert_eq!(group_count(&app, &group.id).await, 2);
        assert_eq!(get_customer(&mut customers, &a.id).await.group_ids, vec![group.id.clone()]);

        let none = customers.remove_customers_from_group(remove(vec![c.id.clone()])).await.expect("remove non-member").into_inner();
        assert_eq!(none.removed_count, 0);
        let one = customers.remove_customers_from_group(remove(vec![a.id.clone(), c.id.clone()])).await.expect("remove").into_inner();
        assert_eq!(one.removed_count, 1);
        let again = customers.remove_customers_from_group(remove(vec![a.id.clone()])).await.expect("remove again").into_inner();
        assert_eq!(again.removed_count, 0);
        assert!(get_customer(&mut customers, &a.id).await.group_ids.is_empty());
        assert_eq!(group_count(&app, &group.id).await, 1);

        expect_code(customers.add_customers_to_group(add(vec![c.id.clone(), unknown_id()])).await, Code::NotFound);
        assert!(get_customer(&mut customers, &c.id).await.group_ids.is_empty(), "nothing added");
        assert_eq!(group_count(&app, &group.id).await, 1);

        let gone = new_group(&app, "Đã xoá").await;
        delete_group(&app, &gone.id).await;
        expect_code(customers.add_customers_to_group(AddCustomersToGroupRequest { group_id: gone.id.clone(), customer_ids: vec![c.id.clone()] }).await, Code::FailedPrecondition);
        assert!(get_customer(&mut customers, &c.id).await.group_ids.is_empty());
    }

    async fn group_ids_list_active_groups_only_and_memberships_outlive_a_group_delete(app: TestApp) {
        let mut customers = app.customers();
        let kept = new_group(&app, "Giữ lại").await;
        let parked = new_group(&app, "Tạm ẩn").await;
        let customer = create_customer(&mut customers, Customer { group_ids: vec![kept.id.clone(), parked.id.clone()], ..named("Thành viên") }).await;
        let mut ids = customer.group_ids.clone();
        ids.sort();
        let mut both = vec![kept.id.clone(), parked.id.clone()];
        both.sort();
        assert_eq!(ids, both);

        delete_group(&app, &parked.id).await;
        assert_eq!(get_customer(&mut customers, &customer.id).await.group_ids, vec![kept.id.clone()]);
        app.groups().restore_group(RestoreGroupRequest { id: parked.id.clone(), etag: String::new() }).await.expect("restore group");
        let mut ids = get_customer(&mut customers, &customer.id).await.group_ids;
        ids.sort();
        assert_eq!(ids, both, "the membership was kept");
        assert_eq!(group_count(&app, &parked.id).await, 1);
    }

    async fn record_contact_validates_its_input_and_keeps_the_latest_contact_time(app: TestApp) {
        let mut customers = app.customers_as("u-7");
        let customer = create_customer(&mut customers, named("Liên hệ")).await;
        // Back-dated contacts below stay after the customer's creation.
        app.clock.advance(Duration::days(5));
        let t0 = app.clock.now();

        let status = expect_code(record(&mut customers, &customer.id, ContactChannel::Call, Some(ts(t0 + Duration::minutes(1)))).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["contact_time"]);
        let status = expect_code(record(&mut customers, &customer.id, ContactChannel::Unspecified, None).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["channel"]);
        let listed = customers.list_contacts(ListContactsRequest { customer_id: customer.id.clone(), ..Default::default() }).await.expect("list contacts").into_inner();
        assert_eq!(listed.total_size, 0, "nothing was recorded");
        assert!(get_customer(&mut customers, &customer.id).await.last_contact_time.is_none());

        let first = record(&mut customers, &customer.id, ContactChannel::Call, None).await.expect("record").into_inner();
        let contact = first.contact.expect("contact");
        assert_eq!(contact.contact_time, Some(ts(t0)), "defaults to the server's now");
        assert_eq!(contact.actor_id, "u-7");
        assert_eq!(contact.customer_id, customer.id);
        assert_eq!(contact.channel(), ContactChannel::Call);
        assert_eq!(first.customer.unwrap().last_contact_time, Some(ts(t0)));

        app.clock.advance(Duration::hours(1));
        let back_dated = record(&mut customers, &customer.id, ContactChannel::Email, Some(ts(t0 - Duration::days(3)))).await.expect("record back-dated").into_inner();
        assert_eq!(back_dated.contact.unwrap().contact_time, Some(ts(t0 - Duration::days(3))));
        assert_eq!(back_dated.customer.unwrap().last_contact_time, Some(ts(t0)), "a back-dated contact does not lower it");
        assert_eq!(get_customer(&mut customers, &customer.id).await.last_contact_time, Some(ts(t0)));

        let newer = record(&mut customers, &customer.id, ContactChannel::Meeting, Some(ts(t0 + Duration::minutes(30)))).await.expect("record").into_inner();
        assert_eq!(newer.customer.unwrap().last_contact_time, Some(ts(t0 + Duration::minutes(30))));
        let now = app.clock.now();
        let at_now = record(&mut customers, &customer.id, ContactChannel::Sms, Some(ts(now))).await.expect("now is not the future").into_inner();
        assert_eq!(at_now.customer.unwrap().last_contact_time, Some(ts(now)));
        assert_eq!(get_customer(&mut customers, &customer.id).await.last_contact_time, Some(ts(now)));

        let gone = create_customer(&mut customers, named("Đã xoá")).await;
        delete_customer(&mut customers, &gone.id).await;
        expect_code(record(&mut customers, &gone.id, ContactChannel::Call, None).await, Code::FailedPrecondition);
        expect_code(record(&mut customers, &unknown_id(), ContactChannel::Call, None).await, Code::NotFound);
    }

    async fn contacts_are_listed_newest_first_with_who_recorded_them(app: TestApp) {
        let customer = create_customer(&mut app.customers(), named("Nhiều liên hệ")).await;
        app.clock.advance(Duration::hours(10));
        let t0 = app.clock.now();
        let recorded = [
            ("u-1", ContactChannel::Call, Duration::hours(3), "gọi lần đầu"),
            ("u-2", ContactChannel::Chat, Duration::hours(2), "nhắn Zalo"),
            ("u-3", ContactChannel::Meeting, Duration::hours(1), "gặp ở văn phòng"),
        ];
        for (actor, channel, ago, note) in recorded {
            app.clock.advance(Duration::minutes(1));
            app.customers_as(actor).record_contact(RecordContactRequest {
                customer_id: customer.id.clone(),
                channel: channel.into(),
                note: note.into(),
                contact_time: Some(ts(t0 - ago)),
            }).await.expect("record");
        }
        let mut customers = app.customers();
        let listed = customers.list_contacts(ListContactsRequest { customer_id: customer.id.clone(), page_size: 2, page_token: String::new() }).await.expect("list").into_inner();
        assert_eq!(listed.total_size, 3);
        assert_eq!(listed.contacts.len(), 2);
        assert!(!listed.next_page_token.is_empty());
        let rest = customers.list_contacts(ListContactsRequest { customer_id: customer.id.clone(), page_size: 2, page_token: listed.next_page_token.clone() }).await.expect("list").into_inner();
        let all: Vec<_> = listed.contacts.into_iter().chain(rest.contacts).collect();
        assert_eq!(
            all.iter().map(|c| (c.actor_id.as_str(), c.note.as_str(), c.contact_time)).collect::<Vec<_>>(),
            vec![
                ("u-3", "gặp ở văn phòng", Some(ts(t0 - Duration::hours(1)))),
                ("u-2", "nhắn Zalo", Some(ts(t0 - Duration::hours(2)))),
                ("u-1", "gọi lần đầu", Some(ts(t0 - Duration::hours(3)))),
            ]
        );
        assert_eq!(all.iter().map(|c| c.channel()).collect::<Vec<_>>(), vec![ContactChannel::Meeting, ContactChannel::Chat, ContactChannel::Call]);
        assert!(all.iter().all(|c| c.customer_id == customer.id));
    }

    async fn list_filters_work_alone_and_combined(app: TestApp) {
        let cat = seed_catalogue(&app).await;
        let c = &cat.customers;
        let (new, hot) = (rel(&cat.rels, "NEW"), rel(&cat.rels, "HOT"));
        let mut customers = app.customers();
        let by_group = |group: &Group, include_subgroups: bool| ListCustomersRequest { group_id: group.id.clone(), include_subgroups, ..Default::default() };
        let cases: Vec<(&str, ListCustomersRequest, Vec<usize>)> = vec![
            ("no filter", ListCustomersRequest::default(), vec![0, 1, 2, 3, 4]),
            ("root group", by_group(&cat.root, false), vec![0]),
            ("root group and subgroups", by_group(&cat.root, true), vec![0, 1, 2]),
            ("middle group and subgroups", by_group(&cat.mid, true), vec![1, 2]),
            ("middle group", by_group(&cat.mid, false), vec![1]),
            ("leaf group and subgroups", by_group(&cat.leaf, true), vec![2]),
            ("other group", by_group(&cat.other, true), vec![3]),
            ("web source", ListCustomersRequest { source_id: cat.web.id.clone(), ..Default::default() }, vec![0, 1]),
            ("fair source", ListCustomersRequest { source_id: cat.fair.id.clone(), ..Default::default() }, vec![2, 4]),
            ("HOT", ListCustomersRequest { relationship_id: hot.clone(), ..Default::default() }, vec![1, 2, 4]),
            ("NEW", ListCustomersRequest { relationship_id: new.clone(), ..Default::default() }, vec![0, 3]),
            ("owner u-1", ListCustomersRequest { owner_id: "u-1".into(), ..Default::default() }, vec![0, 2, 4]),
            ("owner u-2", ListCustomersRequest { owner_id: "u-2".into(), ..Default::default() }, vec![1, 3]),
            ("owner u-1 and HOT", ListCustomersRequest { owner_id: "u-1".into(), relationship_id: hot.clone(), ..Default::default() }, vec![2, 4]),
            ("root subtree and HOT", ListCustomersRequest { relationship_id: hot.clone(), ..by_group(&cat.root, true) }, vec![1, 2]),
            ("fair source and nguyen", ListCustomersRequest { source_id: cat.fair.id.clone(), query: "nguyen".into(), ..Default::default() }, vec![4]),
            ("root subtree, owner u-1, fair source", ListCustomersRequest { owner_id: "u-1".into(), source_id: cat.fair.id.clone(), ..by_group(&cat.root, true) }, vec![2]),
            ("web source and owner u-2 and NEW", ListCustomersRequest { source_id: cat.web.id.clone(), owner_id: "u-2".into(), relationship_id: new.clone(), ..Default::default() }, vec![]),
            ("web source with deleted", ListCustomersRequest { source_id: cat.web.id.clone(), show_deleted: true, ..Default::default() }, vec![0, 1, 5]),
            ("root group, deleted only", ListCustomersRequest { deleted_only: true, ..by_group(&cat.root, false) }, vec![5]),
        ];
        for (label, request, expected) in cases {
            let got = list_all(&mut customers, ListCustomersRequest { page_size: 2, ..request }).await;
            let want: HashSet<String> = expected.iter().map(|&i| c[i].id.clone()).collect();
            assert_eq!(ids_of(&got), want, "{label}");
        }
    }

    async fn the_list_query_matches_names_ignoring_case_and_accents_and_phones_and_emails(app: TestApp) {
        let cat = seed_catalogue(&app).await;
        let c = &cat.customers;
        let mut customers = app.customers();
        let cases: Vec<(&str, Vec<usize>)> = vec![
            ("nguyen", vec![0, 4]),
            ("NGUYỄN", vec![0, 4]),
            ("Nguyễn Văn", vec![0]),
            ("van", vec![0, 2]),
            ("thi", vec![1, 4]),
            ("0901", vec![0, 1]),
            ("888777", vec![4]),
            ("0901000002", vec![1]),
            ("congty", vec![2]),
            ("a@example.com", vec![0]),
            ("không có ai", vec![]),
        ];
        for (query, expected) in cases {
            let got = list_all(&mut customers, ListCustomersRequest { query: query.into(), page_size: 2, ..Default::default() }).await;
            let want: HashSet<String> = expected.iter().map(|&i| c[i].id.clone()).collect();
            assert_eq!(ids_of(&got), want, "query {query:?}");
        }
    }

    async fn paging_through_a_thousand_customers_yields_each_once_in_every_order(app: TestApp) {
        let mut created = HashSet::new();
        for batch in 0..20 {
            let ids = concurrently(50, |i| {
                let mut client = app.customers();
                let n = batch * 50 + i;
                async move { create_customer(&mut client, named(&format!("Khach {:03}", n % 250))).await.id }
            }).await;
            created.extend(ids);
            app.clock.advance(Duration::minutes(1));
        }
        assert_eq!(created.len(), 1000);
        // Some customers are contacted, which moves them in the last_contact_time order.
        let mut customers = app.customers();
        for id in created.iter().take(20) {
            app.clock.advance(Duration::seconds(1));
            record(&mut customers, id, ContactChannel::Call, None).await.expect("record");
        }
        for order_by in ["create_time desc", "name", "last_contact_time"] {
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let page = customers.list_customers(ListCustomersRequest { order_by: order_by.into(), page_size: 100, page_token: token.clone(), ..Default::default() }).await.expect("list").into_inner();
                assert_eq!(page.total_size, 1000, "{order_by}");
                assert!(page.customers.len() <= 100);
                seen.extend(page.customers);
                if page.next_page_token.is_empty() { break; }
                token = page.next_page_token;
            }
            assert_eq!(seen.len(), 1000, "{order_by}: every customer once");
            assert_eq!(ids_of(&seen), created, "{order_by}");
            let ordered = match order_by {
                "create_time desc" => seen.windows(2).all(|w| key(&w[0].create_time) >= key(&w[1].create_time)),
                "name" => seen.windows(2).all(|w| w[0].name <= w[1].name),
                _ => seen.windows(2).all(|w| {
                    let at = |c: &Customer| if c.last_contact_time.is_some() { key(&c.last_contact_time) } else { key(&c.create_time) };
                    at(&w[0]) <= at(&w[1])
                }),
            };
            assert!(ordered, "{order_by}: out of order");
        }
    }

    async fn list_orders_and_deleted_customers(app: TestApp) {
        let mut customers = app.customers();
        let binh = create_customer(&mut customers, named("Bình")).await;
        app.clock.advance(Duration::hours(1));
        let an = create_customer(&mut customers, named("An")).await;
        app.clock.advance(Duration::hours(1));
        let cuong = create_customer(&mut customers, named("Cường")).await;
        app.clock.advance(Duration::hours(1));
        record(&mut customers, &binh.id, ContactChannel::Call, None).await.expect("record");
        let order = |order_by: &str| ListCustomersRequest { order_by: order_by.into(), ..Default::default() };
        let names = |list: Vec<Customer>| list.into_iter().map(|c| c.name).collect::<Vec<_>>();

        assert_eq!(names(list_all(&mut customers, ListCustomersRequest::default()).await), ["Cường", "An", "Bình"], "newest first by default");
        assert_eq!(names(list_all(&mut customers, order("create_time desc")).await), ["Cường", "An", "Bình"]);
        assert_eq!(names(list_all(&mut customers, order("name")).await), ["An", "Bình", "Cường"]);
        assert_eq!(names(list_all(&mut customers, order("last_contact_time")).await), ["An", "Cường", "Bình"], "longest without contact first");
        let status = expect_code(customers.list_customers(order("phone")).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["order_by"]);

        delete_customer(&mut customers, &an.id).await;
        assert_eq!(ids_of(&list_all(&mut customers, ListCustomersRequest::default()).await), id_set(&[&binh, &cuong]));
        assert_eq!(names(list_all(&mut customers, ListCustomersRequest { show_deleted: true, ..Default::default() }).await), ["Cường", "An", "Bình"]);
        let deleted = list_all(&mut customers, ListCustomersRequest { deleted_only: true, ..Default::default() }).await;
        assert_eq!(ids_of(&deleted), id_set(&[&an]));
        assert!(deleted[0].delete_time.is_some());
    }

    async fn counts_by_relationship_come_in_position_order_and_agree_with_the_list(app: TestApp) {
        let cat = seed_catalogue(&app).await;
        let mut customers = app.customers();
        let all = count(&mut customers, CountCustomersByRelationshipRequest::default()).await;
        assert_eq!(count_codes(&all), expected_counts(&[("NEW", 2), ("HOT", 3)]), "zeros included, deleted not counted");
        assert_eq!(all.counts.iter().map(|c| c.position).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
        assert_eq!(all.counts.iter().map(|c| c.relationship_id.clone()).collect::<Vec<_>>(), cat.rels.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
        assert!(all.counts.iter().all(|c| !c.name.is_empty()));
        assert_eq!(all.total, 5);
        let subtree = count(&mut customers, CountCustomersByRelationshipRequest { group_id: cat.root.id.clone(), include_subgroups: true, ..Default::default() }).await;
        assert_eq!(count_codes(&subtree), expected_counts(&[("NEW", 1), ("HOT", 2)]));
        assert_eq!(subtree.total, 3);

        let filters = vec![
            CountCustomersByRelationshipRequest::default(),
            CountCustomersByRelationshipRequest { group_id: cat.root.id.clone(), ..Default::default() },
            CountCustomersByRelationshipRequest { group_id: cat.root.id.clone(), include_subgroups: true, ..Default::default() },
            CountCustomersByRelationshipRequest { group_id: cat.mid.id.clone(), include_subgroups: true, ..Default::default() },
            CountCustomersByRelationshipRequest { source_id: cat.web.id.clone(), ..Default::default() },
            CountCustomersByRelationshipRequest { source_id: cat.fair.id.clone(), ..Default::default() },
            CountCustomersByRelationshipRequest { owner_id: "u-1".into(), ..Default::default() },
            CountCustomersByRelationshipRequest { owner_id: "u-2".into(), ..Default::default() },
            CountCustomersByRelationshipRequest { query: "nguyen".into(), ..Default::default() },
            CountCustomersByRelationshipRequest { query: "0901".into(), ..Default::default() },
            CountCustomersByRelationshipRequest { owner_id: "u-1".into(), source_id: cat.fair.id.clone(), group_id: cat.root.id.clone(), include_subgroups: true, query: String::new(), ..Default::default() },
        ];
        for request in filters {
            let counted = count(&mut customers, request.clone()).await;
            assert_eq!(counted.counts.len(), 7, "{request:?}");
            assert_eq!(counted.total, counted.counts.iter().map(|c| c.count).sum::<i64>(), "{request:?}");
            assert_eq!(counted.total, total(&mut customers, filter(&request)).await, "total vs list: {request:?}");
            for entry in &counted.counts {
                let listed = total(&mut customers, ListCustomersRequest { relationship_id: entry.relationship_id.clone(), ..filter(&request) }).await;
                assert_eq!(entry.count, listed, "{} under {request:?}", entry.code);
            }
        }

        // A deleted customer leaves the counts; a deleted relationship leaves the bar.
        delete_customer(&mut customers, &cat.customers[1].id).await;
        app.relationships().delete_relationship(DeleteRelationshipRequest { id: rel(&cat.rels, "LOST"), etag: String::new(), reassign_to_id: String::new() }).await.expect("delete LOST");
        let after = count(&mut customers, CountCustomersByRelationshipRequest::default()).await;
        assert_eq!(
            count_codes(&after),
            vec![("NEW".to_owned(), 2), ("APPROACHED".to_owned(), 0), ("HOT".to_owned(), 2), ("POTENTIAL".to_owned(), 0), ("CLOSED".to_owned(), 0), ("DONT_FORGET".to_owned(), 0)]
        );
        assert_eq!(after.total, 4);
    }

    async fn customer_counts_of_groups_sources_and_relationships_follow_the_customers(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (new, hot) = (rel(&rels, "NEW"), rel(&rels, "HOT"));
        let web = new_source(&app, "Website").await;
        let zalo = new_source(&app, "Zalo").await;
        let vip = new_group(&app, "VIP").await;
        let a = create_customer(&mut customers, Customer { source_id: web.id.clone(), group_ids: vec![vip.id.clone()], ..named("A") }).await;
        let b = create_customer(&mut customers, Customer { source_id: web.id.clone(), group_ids: vec![vip.id.clone()], relationship_id: hot.clone(), ..named("B") }).await;
        assert_eq!((group_count(&app, &vip.id).await, source_count(&app, &web.id).await, source_count(&app, &zalo.id).await), (2, 2, 0));
        assert_eq!((relationship_count(&app, &new).await, relationship_count(&app, &hot).await), (1, 1));

        change(&mut customers, &a.id, &hot).await;
        assert_eq!((relationship_count(&app, &new).await, relationship_count(&app, &hot).await), (0, 2));

        delete_customer(&mut customers, &b.id).await;
        assert_eq!((group_count(&app, &vip.id).await, source_count(&app, &web.id).await, relationship_count(&app, &hot).await), (1, 1, 1));
        restore_customer(&mut customers, &b.id).await.expect("restore");
        assert_eq!((group_count(&app, &vip.id).await, source_count(&app, &web.id).await, relationship_count(&app, &hot).await), (2, 2, 2));

        customers.update_customer(update_request(Customer { id: a.id.clone(), source_id: zalo.id.clone(), ..Default::default() }, &["source_id"])).await.expect("move source");
        assert_eq!((source_count(&app, &web.id).await, source_count(&app, &zalo.id).await), (1, 1));
        customers.remove_customers_from_group(RemoveCustomersFromGroupRequest { group_id: vip.id.clone(), customer_ids: vec![a.id.clone()] }).await.expect("remove");
        assert_eq!(group_count(&app, &vip.id).await, 1);
        customers.update_customer(update_request(Customer { id: b.id.clone(), relationship_id: new.clone(), ..Default::default() }, &["relationship_id"])).await.expect("update relationship");
        assert_eq!((relationship_count(&app, &new).await, relationship_count(&app, &hot).await), (1, 1));
    }

    async fn deleting_a_held_relationship_needs_a_target_and_moves_its_customers(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (new, hot, lost) = (rel(&rels, "NEW"), rel(&rels, "HOT"), rel(&rels, "LOST"));
        let a = create_customer(&mut customers, Customer { relationship_id: lost.clone(), ..named("A") }).await;
        let b = create_customer(&mut customers, Customer { relationship_id: lost.clone(), ..named("B") }).await;
        let c = create_customer(&mut customers, named("C")).await;
        let mut relationships_client = app.relationships();

        expect_code(relationships_client.delete_relationship(DeleteRelationshipRequest { id: lost.clone(), etag: String::new(), reassign_to_id: String::new() }).await, Code::FailedPrecondition);
        let still = relationships_client.get_relationship(GetRelationshipRequest { id: lost.clone() }).await.unwrap().into_inner().relationship.unwrap();
        assert!(still.delete_time.is_none(), "nothing deleted");
        assert_eq!(still.customer_count, 2);
        for customer in [&a, &b] {
            assert_eq!(get_customer(&mut customers, &customer.id).await.relationship_id, lost);
            assert_eq!(history(&mut customers, &customer.id).await.len(), 1);
        }

        let deleted = relationships_client.delete_relationship(DeleteRelationshipRequest { id: lost.clone(), etag: String::new(), reassign_to_id: hot.clone() }).await.expect("delete with a target").into_inner();
        assert_eq!(deleted.reassigned_customer_count, 2);
        for customer in [&a, &b] {
            assert_eq!(get_customer(&mut customers, &customer.id).await.relationship_id, hot);
            let last = history(&mut customers, &customer.id).await.pop().unwrap();
            assert_eq!((last.cause(), last.old_relationship_id.as_str(), last.new_relationship_id.as_str()), (RelationshipChangeCause::RelationshipDeleted, lost.as_str(), hot.as_str()));
        }
        assert_eq!(get_customer(&mut customers, &c.id).await.relationship_id, new, "others stay");
        assert_eq!(relationship_count(&app, &hot).await, 2);

        let unused = relationships_client.delete_relationship(DeleteRelationshipRequest { id: rel(&rels, "POTENTIAL"), etag: String::new(), reassign_to_id: String::new() }).await.expect("an unused relationship needs no target").into_inner();
        assert_eq!(unused.reassigned_customer_count, 0);
    }

    async fn the_source_report_counts_customers_created_in_the_range(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (hot, closed) = (rel(&rels, "HOT"), rel(&rels, "CLOSED"));
        let fair = new_source(&app, "Hội chợ").await;
        let web = new_source(&app, "Website").await;
        let zalo = new_source(&app, "Zalo").await;
        let t0 = app.clock.now();
        let from = t0 + Duration::days(1);
        let to = t0 + Duration::days(3);
        let mut add = async |source: &Source, revenue: i64, relationship: Option<&str>| {
            let customer = create_customer(&mut customers, Customer { source_id: source.id.clone(), revenue, ..named("Khách") }).await;
            if let Some(relationship) = relationship {
                change(&mut customers, &customer.id, relationship).await;
            }
            customer
        };
        let none = Source::default();

        // Before the range.
        add(&web, 999, Some(&closed)).await;
        add(&zalo, 111, None).await;
        // At the start of the range (included).
        app.clock.set(from);
        add(&fair, 1_000_000, Some(&closed)).await;
        add(&web, 500_000, None).await;
        add(&none, 200_000, Some(&closed)).await;
        // Inside the range.
        app.clock.set(from + Duration::days(1));
        add(&fair, 3_000_000, Some(&hot)).await;
        add(&fair, 0, Some(&closed)).await;
        add(&web, 250_000, Some(&closed)).await;
        add(&none, 0, None).await;
        let deleted = add(&fair, 7, Some(&closed)).await;
        // At the end of the range (excluded).
        app.clock.set(to);
        add(&fair, 123, Some(&closed)).await;
        delete_customer(&mut customers, &deleted.id).await;

        let report = app.sources().get_source_report(GetSourceReportRequest { create_time_from: Some(ts(from)), create_time_to: Some(ts(to)) }).await.expect("report").into_inner();
        assert_eq!(
            report.rows.iter().map(|r| r.source_id.as_str()).collect::<Vec<_>>(),
            vec![fair.id.as_str(), web.id.as_str(), zalo.id.as_str(), ""],
            "sources in name order, then the no-source row"
        );
        let (r_fair, r_web, r_zalo, r_none) = (&report.rows[0], &report.rows[1], &report.rows[2], &report.rows[3]);
        assert_eq!((r_fair.source_code.as_str(), r_fair.source_name.as_str()), (fair.code.as_str(), "Hội chợ"));
        assert_eq!((r_none.source_code.as_str(), r_none.source_name.as_str()), ("", "No source"));
        check_row(r_fair, 3, 2, 4_000_000, &[("HOT", 1), ("CLOSED", 2)]);
        check_row(r_web, 2, 1, 750_000, &[("NEW", 1), ("CLOSED", 1)]);
        check_row(r_zalo, 0, 0, 0, &[]);
        check_row(r_none, 2, 1, 200_000, &[("NEW", 1), ("CLOSED", 1)]);
        check_row(report.total.as_ref().expect("total"), 7, 4, 4_950_000, &[("NEW", 2), ("HOT", 1), ("CLOSED", 4)]);

        let unbounded = app.sources().get_source_report(GetSourceReportRequest::default()).await.expect("report").into_inner();
        check_row(unbounded.total.as_ref().expect("total"), 10, 6, 4_950_000 + 999 + 111 + 123, &[("NEW", 3), ("HOT", 1), ("CLOSED", 6)]);
    }

    async fn another_tenants_customers_cannot_be_seen_or_touched(app: TestApp) {
        let (a, b) = (new_tenant(), new_tenant());
        let mut customers_a = app.customers_of(&a);
        let mut customers_b = app.customers_of(&b);
        let theirs = create_customer(&mut customers_a, Customer { phone: "0911222333".into(), ..named("Của A") }).await;
        let rels_b = relationships(&mut app.relationships_of(&b)).await;
        let group_b = app.groups_of(&b).create_group(CreateGroupRequest { group: Some(Group { name: "Nhóm B".into(), ..Default::default() }), request_id: String::new() }).await.unwrap().into_inner().group.unwrap();

        expect_code(customers_b.get_customer(GetCustomerRequest { id: theirs.id.clone() }).await, Code::NotFound);
        expect_code(customers_b.update_customer(update_request(Customer { id: theirs.id.clone(), name: "Chiếm".into(), ..Default::default() }, &["name"])).await, Code::NotFound);
        expect_code(customers_b.delete_customer(DeleteCustomerRequest { id: theirs.id.clone(), etag: String::new() }).await, Code::NotFound);
        expect_code(customers_b.change_relationship(change_request(&theirs.id, &rel(&rels_b, "HOT"))).await, Code::NotFound);
        expect_code(record(&mut customers_b, &theirs.id, ContactChannel::Call, None).await, Code::NotFound);
        expect_code(customers_b.add_customers_to_group(AddCustomersToGroupRequest { group_id: group_b.id.clone(), customer_ids: vec![theirs.id.clone()] }).await, Code::NotFound);

        assert_eq!(total(&mut customers_b, ListCustomersRequest { show_deleted: true, ..Default::default() }).await, 0);
        assert_eq!(count(&mut customers_b, CountCustomersByRelationshipRequest::default()).await.total, 0);
        let mine = create_customer(&mut customers_b, Customer { phone: "0911 222 333".into(), ..named("Của B") }).await;
        assert_ne!(mine.id, theirs.id);
        assert_eq!(ids_of(&list_all(&mut customers_b, ListCustomersRequest::default()).await), id_set(&[&mine]));
        assert_eq!(ids_of(&list_all(&mut customers_a, ListCustomersRequest::default()).await), id_set(&[&theirs]));
        assert_eq!(count(&mut customers_a, CountCustomersByRelationshipRequest::default()).await.total, 1);

        let untouched = get_customer(&mut customers_a, &theirs.id).await;
        assert_eq!((untouched.name.as_str(), untouched.relationship_id.as_str(), untouched.etag.as_str()), ("Của A", theirs.relationship_id.as_str(), theirs.etag.as_str()));
        assert!(untouched.delete_time.is_none() && untouched.last_contact_time.is_none() && untouched.group_ids.is_empty());
        assert!(history(&mut customers_a, &theirs.id).await.len() == 1);
    }
}

on_both_databases! {
    async fn a_groups_members_page_alike_through_the_membership_index_and_the_general_query(app: TestApp) {
        // A single-group filter reads the membership table's index; adding
        // include_subgroups (the group has none) takes the general query.
        // Both must give the same customers in the same order.
        let mut customers = app.customers();
        let group = new_group(&app, "Đại lý").await;
        let other = new_group(&app, "Khác").await;
        let rels = relationships(&mut app.relationships()).await;
        let hot = rel(&rels, "HOT");
        let mut in_group = Vec::new();
        for i in 0..30 {
            let mut customer = named(&format!("Thành viên {i:02}"));
            customer.group_ids = if i % 3 == 0 { vec![other.id.clone()] } else { vec![group.id.clone(), other.id.clone()] };
            let created = create_customer(&mut customers, customer).await;
            if i % 4 == 0 {
                change(&mut customers, &created.id, &hot).await;
            }
            if i % 3 != 0 {
                in_group.push(created.id.clone());
            }
            if i % 5 == 0 {
                app.clock.advance(Duration::minutes(1));
            }
        }
        delete_customer(&mut customers, &in_group[1]).await;
        for relationship_id in [String::new(), hot.clone()] {
            let fast = ListCustomersRequest { group_id: group.id.clone(), relationship_id: relationship_id.clone(), page_size: 7, ..Default::default() };
            let general = ListCustomersRequest { include_subgroups: true, ..fast.clone() };
            let via_index: Vec<String> = list_all(&mut customers, fast).await.into_iter().map(|c| c.id).collect();
            let via_query: Vec<String> = list_all(&mut customers, general).await.into_iter().map(|c| c.id).collect();
            assert_eq!(via_index, via_query, "relationship filter `{relationship_id}`");
            assert!(!via_index.contains(&in_group[1]), "deleted customers are left out");
            if relationship_id.is_empty() {
                assert_eq!(via_index.len(), in_group.len() - 1);
            }
        }
    }
}

on_both_databases! {
    async fn a_groups_counters_match_a_recount_after_every_kind_of_write(app: TestApp) {
        // The single-group summary bar and list total come from counters kept
        // by the writes; include_subgroups (the group has none) recounts the
        // rows. After each kind of write both must agree.
        let mut customers = app.customers();
        let group = new_group(&app, "Đếm").await;
        let rels = relationships(&mut app.relationships()).await;
        let (hot, closed, lost) = (rel(&rels, "HOT"), rel(&rels, "CLOSED"), rel(&rels, "LOST"));
        let mut ids = Vec::new();
        for i in 0..8 {
            let mut customer = named(&format!("Đếm {i}"));
            if i % 2 == 0 {
                customer.group_ids = vec![group.id.clone()];
            }
            ids.push(create_customer(&mut customers, customer).await.id);
        }
        let counted = CountCustomersByRelationshipRequest { group_id: group.id.clone(), ..Default::default() };
        let recounted = CountCustomersByRelationshipRequest { include_subgroups: true, ..counted.clone() };
        let check = async |step: &str, customers: &mut Customers| {
            let fast = count(customers, counted.clone()).await;
            let slow = count(customers, recounted.clone()).await;
            assert_eq!(count_codes(&fast), count_codes(&slow), "after {step}");
            assert_eq!(fast.total, slow.total, "after {step}");
            let listed = total(customers, ListCustomersRequest { group_id: group.id.clone(), ..Default::default() }).await;
            assert_eq!(listed, slow.total, "list total after {step}");
            for c in &slow.counts {
                let by_relationship = ListCustomersRequest { group_id: group.id.clone(), relationship_id: c.relationship_id.clone(), ..Default::default() };
                assert_eq!(total(customers, by_relationship).await, c.count, "{} after {step}", c.code);
            }
        };
        check("creates", &mut customers).await;
        change(&mut customers, &ids[0], &hot).await;
        check("a change", &mut customers).await;
        customers.batch_change_relationship(batch_request(&ids, &closed)).await.expect("batch");
        check("a batch", &mut customers).await;
        customers.add_customers_to_group(AddCustomersToGroupRequest { group_id: group.id.clone(), customer_ids: vec![ids[1].clone(), ids[3].clone()] }).await.expect("add");
        check("adding members", &mut customers).await;
        customers.remove_customers_from_group(RemoveCustomersFromGroupRequest { group_id: group.id.clone(), customer_ids: vec![ids[0].clone(), ids[5].clone()] }).await.expect("remove");
        check("removing members", &mut customers).await;
        delete_customer(&mut customers, &ids[2]).await;
        check("a delete", &mut customers).await;
        customers.update_customer(update_request(Customer { id: ids[4].clone(), relationship_id: lost.clone(), ..Default::default() }, &["relationship_id"])).await.expect("update");
        check("an update", &mut customers).await;
        restore_customer(&mut customers, &ids[2]).await.expect("restore");
        check("a restore", &mut customers).await;
        app.relationships().delete_relationship(DeleteRelationshipRequest { id: closed.clone(), etag: String::new(), reassign_to_id: hot.clone() }).await.expect("reassign");
        check("a reassignment", &mut customers).await;
    }

    async fn a_batch_change_spanning_thousands_of_group_counters_keeps_each_right(app: TestApp) {
        // Each customer holds a relationship of its own and is in every group;
        // moving them all to one more relationship changes GROUPS × (CUSTOMERS
        // + 1) = 20,000 per-(group, relationship) counters, 80,000 bound values:
        // more than one statement may bind on SQLite (32,766) or PostgreSQL
        // (65,535), so the counter upserts must go in chunks, and every chunk
        // must land.
        const GROUPS: usize = 250;
        const CUSTOMERS: usize = 79;
        let mut relationship_client = app.relationships();
        let seeded = relationships(&mut relationship_client).await;
        let mut held = crate::fixtures::manual_relationships(&seeded);
        while held.len() <= CUSTOMERS {
            let relationship = Relationship { name: format!("Mức {}", held.len()), ..Default::default() };
            let created = relationship_client.create_relationship(CreateRelationshipRequest { relationship: Some(relationship), request_id: String::new() }).await.expect("create relationship");
            held.push(created.into_inner().relationship.expect("relationship").id);
        }
        let target = held.pop().expect("the target relationship");
        let ids: Vec<String> = at_most(8, CUSTOMERS, |i| {
            let (mut client, relationship_id) = (app.customers(), held[i].clone());
            async move { create_customer(&mut client, Customer { relationship_id, ..named(&format!("Khách {i}")) }).await.id }
        })
        .await;
        let groups = new_groups(&app, "Vùng", GROUPS).await;
        let added = at_most(8, GROUPS, |i| {
            let (mut client, request) = (app.customers(), AddCustomersToGroupRequest { group_id: groups[i].id.clone(), customer_ids: ids.clone() });
            async move { client.add_customers_to_group(request).await.expect("add customers to group").into_inner().added_count }
        })
        .await;
        assert!(added.iter().all(|n| *n == CUSTOMERS as i64), "every customer joined every group");
        let mut customers = app.customers();
        let before = count(&mut customers, CountCustomersByRelationshipRequest { group_id: groups[0].id.clone(), ..Default::default() }).await;
        for entry in &before.counts {
            let want = i64::from(held.contains(&entry.relationship_id));
            assert_eq!(entry.count, want, "{} in a group before the batch", entry.code);
        }

        let moved = customers.batch_change_relationship(batch_request(&ids, &target)).await.expect("batch change relationship").into_inner();
        assert_eq!(moved.changes.len(), CUSTOMERS);

        // Every customer now holds the target: in every group's bar and in the
        // tenant's.
        let check = |what: &str, bar: &CountCustomersByRelationshipResponse| {
            assert_eq!(bar.total, CUSTOMERS as i64, "total of {what}");
            assert_eq!(bar.counts.len(), CUSTOMERS + 2, "entries of {what}");
            for entry in &bar.counts {
                let want = if entry.relationship_id == target { CUSTOMERS as i64 } else { 0 };
                assert_eq!(entry.count, want, "{} in {what}", entry.code);
            }
        };
        let bars = at_most(8, GROUPS, |i| {
            let (mut client, group_id) = (app.customers(), groups[i].id.clone());
            async move { count(&mut client, CountCustomersByRelationshipRequest { group_id, ..Default::default() }).await }
        })
        .await;
        for (group, bar) in groups.iter().zip(&bars) {
            check(&format!("group {}", group.name), bar);
        }
        check("the tenant", &count(&mut customers, CountCustomersByRelationshipRequest::default()).await);
        // The counters agree with a recount of the rows (include_subgroups).
        for group in [&groups[0], &groups[GROUPS / 2], &groups[GROUPS - 1]] {
            let recount = count(&mut customers, CountCustomersByRelationshipRequest { group_id: group.id.clone(), include_subgroups: true, ..Default::default() }).await;
            check(&format!("a recount of {}", group.name), &recount);
        }
        let listed = fixtures::listed_groups(&mut app.groups()).await;
        assert_eq!(listed.len(), GROUPS);
        for group in &listed {
            assert_eq!(group.customer_count, CUSTOMERS as i64, "customer_count of {}", group.name);
        }
        assert_eq!(fixtures::relationship_count(&app, &target).await, CUSTOMERS as i64, "the target's customer_count");
    }
}
