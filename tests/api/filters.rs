//! The `filter` of ListCustomers and CountCustomersByRelationship: what the
//! contract's examples select, Vietnamese text with and without accents,
//! `in_group` over a subtree, `ago()` on the server's clock, mistakes with
//! their offsets, limits, page tokens bound to the filter, and values that
//! look like SQL staying data.

use std::collections::BTreeMap;

use chrono::Duration as Span;
use crm_classify::clock::Clock;
use crm_classify::pb::{
    AddCustomersToGroupRequest, CountCustomersByRelationshipRequest, Customer, DeleteGroupRequest,
    Group, ListCustomersRequest, RestoreGroupRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::{
    change, create_customer, create_group, delete_customer, record_contact, rel, relationships,
};
use crate::helpers::{TestApp, expect_code, violated_fields};
use crate::on_both_databases;

/// Names of the active customers `filter` selects, sorted.
async fn names(app: &TestApp, filter: &str) -> Vec<String> {
    let response = app
        .customers()
        .list_customers(ListCustomersRequest {
            filter: filter.into(),
            order_by: "name".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{filter:?}: {e:?}"))
        .into_inner();
    assert_eq!(
        response.total_size as usize,
        response.customers.len(),
        "{filter:?}"
    );
    let mut names: Vec<String> = response.customers.into_iter().map(|c| c.name).collect();
    names.sort();
    names
}

/// The INVALID_ARGUMENT message on `filter` for `filter`.
async fn mistake(app: &TestApp, filter: &str) -> String {
    let status = expect_code(
        app.customers()
            .list_customers(ListCustomersRequest {
                filter: filter.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["filter"], "{filter:?}");
    let counted = expect_code(
        app.customers()
            .count_customers_by_relationship(CountCustomersByRelationshipRequest {
                filter: filter.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&counted), ["filter"], "{filter:?}");
    let details = status.get_details_bad_request().expect("details");
    details.field_violations[0].description.clone()
}

/// Every customer (in order) and the total of the list `request` pages
/// through, three at a time.
async fn paged(app: &TestApp, request: ListCustomersRequest) -> (Vec<String>, Vec<i64>) {
    let mut ids = Vec::new();
    let mut totals = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .customers()
            .list_customers(ListCustomersRequest {
                page_size: 3,
                page_token: token,
                ..request.clone()
            })
            .await
            .unwrap_or_else(|e| panic!("{request:?}: {e:?}"))
            .into_inner();
        ids.extend(page.customers.into_iter().map(|c| c.id));
        totals.push(page.total_size);
        if page.next_page_token.is_empty() {
            return (ids, totals);
        }
        token = page.next_page_token;
    }
}

fn customer(name: &str, province: &str, revenue: i64) -> Customer {
    Customer {
        name: name.into(),
        province: province.into(),
        revenue,
        ..Default::default()
    }
}

on_both_databases! {
    async fn filters_select_by_every_kind_of_field(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let mut customers = app.customers();
        let an = create_customer(&mut customers, Customer {
            company: "Công ty TNHH Thương mại Sông Hàn".into(),
            phone: "0912 345 678".into(),
            email: "An.Nguyen@Example.vn".into(),
            owner_id: "u-7".into(),
            attributes: BTreeMap::from([("tier".into(), "Vàng".into())]),
            ..customer("Nguyễn Văn An", "Đà Nẵng", 60_000_000)
        }).await;
        app.clock.advance(Span::days(1));
        let binh = create_customer(&mut customers, Customer {
            owner_id: "u-8".into(),
            email: "binh@example.vn".into(),
            ..customer("Trần Thị Bình", "Da Nang", 40_000_000)
        }).await;
        app.clock.advance(Span::days(1));
        create_customer(&mut customers, customer("Lê Văn Cường", "Hà Nội", 90_000_000)).await;
        let gone = create_customer(&mut customers, customer("Nguyễn Đã Xoá", "Đà Nẵng", 70_000_000)).await;
        delete_customer(&mut customers, &gone.id).await;
        change(&mut customers, &an.id, &rel(&rels, "HOT")).await;
        change(&mut customers, &binh.id, &rel(&rels, "HOT")).await;

        for (filter, expected) in [
            // Case, accents and punctuation do not matter; words do.
            (r#"province = "da nang""#, vec!["Nguyễn Văn An", "Trần Thị Bình"]),
            (r#"province = "ĐÀ NẴNG""#, vec!["Nguyễn Văn An", "Trần Thị Bình"]),
            (r#"province = "Đà""#, vec![]),
            (r#"name = "nguyen van an""#, vec!["Nguyễn Văn An"]),
            (r#"name = "Nguy*""#, vec!["Nguyễn Văn An"]),
            (r#"name = nguy*"#, vec!["Nguyễn Văn An"]),
            (r#"name:"văn""#, vec!["Lê Văn Cường", "Nguyễn Văn An"]),
            (r#"name:"van an""#, vec!["Nguyễn Văn An"]),
            (r#"name:"an van""#, vec![]),
            (r#"name:"va""#, vec![]),
            (r#"company:"thuong mai""#, vec!["Nguyễn Văn An"]),
            // The contract's example: Hot customers in Đà Nẵng with revenue
            // over 50 million.
            (r#"relationship = "HOT" AND province = "Đà Nẵng" AND revenue > 50000000"#, vec!["Nguyễn Văn An"]),
            (r#"relationship = HOT revenue >= 40000000"#, vec!["Nguyễn Văn An", "Trần Thị Bình"]),
            (r#"relationship != HOT"#, vec!["Lê Văn Cường"]),
            // Phone compared normalised, email lower-cased.
            (r#"phone = "0912-345-678""#, vec!["Nguyễn Văn An"]),
            (r#"email = "AN.NGUYEN@EXAMPLE.VN""#, vec!["Nguyễn Văn An"]),
            (r#"owner_id = "u-8" OR owner_id = "u-7""#, vec!["Nguyễn Văn An", "Trần Thị Bình"]),
            (r#"attributes.tier = vang"#, vec!["Nguyễn Văn An"]),
            (r#"attributes.tier != vang"#, vec!["Lê Văn Cường", "Trần Thị Bình"]),
            (r#"attributes.tier:*"#, vec!["Nguyễn Văn An"]),
            (r#"NOT email:*"#, vec!["Lê Văn Cường"]),
            (r#"-email:*"#, vec!["Lê Văn Cường"]),
            // AIP-160: OR binds tighter than AND.
            (r#"province = "ha noi" OR owner_id = "u-7" revenue < 70000000"#, vec!["Nguyễn Văn An"]),
            (r#"(province = "ha noi" OR owner_id = "u-7") AND revenue > 0"#, vec!["Lê Văn Cường", "Nguyễn Văn An"]),
            (r#"NOT (province = "ha noi" OR owner_id = "u-7")"#, vec!["Trần Thị Bình"]),
            (&format!(r#"create_time > "{}""#, chrono::DateTime::from_timestamp(an.create_time.as_ref().unwrap().seconds, 0).unwrap().to_rfc3339()), vec!["Lê Văn Cường", "Trần Thị Bình"]),
            ("", vec!["Lê Văn Cường", "Nguyễn Văn An", "Trần Thị Bình"]),
        ] {
            assert_eq!(names(&app, filter).await, expected, "{filter:?}");
        }

        // The summary bar of a filter counts the same customers.
        let counted = app.customers().count_customers_by_relationship(CountCustomersByRelationshipRequest {
            filter: r#"province = "da nang""#.into(),
            ..Default::default()
        }).await.expect("count").into_inner();
        assert_eq!(counted.total, 2);
        let hot = counted.counts.iter().find(|c| c.code == "HOT").expect("HOT");
        assert_eq!(hot.count, 2);
        // And the fields of old combine with it by AND.
        let both = app.customers().list_customers(ListCustomersRequest {
            owner_id: "u-8".into(),
            filter: r#"province = "da nang""#.into(),
            ..Default::default()
        }).await.expect("list").into_inner();
        assert_eq!(both.customers.len(), 1);
        assert_eq!(both.customers[0].id, binh.id);
        assert_eq!(both.total_size, 1);
        // Deleted customers only when asked for.
        let deleted = app.customers().list_customers(ListCustomersRequest {
            deleted_only: true,
            filter: r#"province = "da nang""#.into(),
            ..Default::default()
        }).await.expect("list").into_inner();
        assert_eq!(deleted.customers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [gone.id.as_str()]);
    }

    async fn in_group_covers_the_active_subtree(app: TestApp) {
        let mut groups = app.groups();
        let group = |code: &str, parent: &str| Group { code: code.into(), name: code.into(), parent_id: parent.into(), ..Default::default() };
        let vip = create_group(&mut groups, group("VIP", "")).await;
        let north = create_group(&mut groups, group("VIP_NORTH", &vip.id)).await;
        let hanoi = create_group(&mut groups, group("VIP_HANOI", &north.id)).await;
        let mut customers = app.customers();
        let mut members = Vec::new();
        for (name, group_id) in [("Top", &vip.id), ("North", &north.id), ("Hanoi", &hanoi.id)] {
            let c = create_customer(&mut customers, customer(name, "", 0)).await;
            customers.add_customers_to_group(AddCustomersToGroupRequest { group_id: group_id.clone(), customer_ids: vec![c.id.clone()] }).await.expect("add");
            members.push(c);
        }
        create_customer(&mut customers, customer("Outside", "", 0)).await;

        assert_eq!(names(&app, r#"in_group("VIP")"#).await, ["Hanoi", "North", "Top"]);
        assert_eq!(names(&app, &format!(r#"in_group("{}")"#, vip.id)).await, ["Hanoi", "North", "Top"]);
        assert_eq!(names(&app, r#"in_group("VIP_NORTH")"#).await, ["Hanoi", "North"]);
        assert_eq!(names(&app, &format!(r#"group_ids:"{}""#, vip.id)).await, ["Top"]);
        assert_eq!(names(&app, r#"NOT in_group("VIP")"#).await, ["Outside"]);
        assert_eq!(names(&app, r#"group_ids:*"#).await, ["Hanoi", "North", "Top"]);
        assert_eq!(names(&app, r#"in_group("NOBODY")"#).await, Vec::<String>::new());

        // A deleted subgroup leaves the subtree (with its own subgroups);
        // a deleted group matches nobody until it is restored.
        groups.delete_group(DeleteGroupRequest { id: north.id.clone(), cascade: true, ..Default::default() }).await.expect("delete");
        assert_eq!(names(&app, r#"in_group("VIP")"#).await, ["Top"]);
        assert_eq!(names(&app, r#"in_group("VIP_NORTH")"#).await, Vec::<String>::new());
        assert_eq!(names(&app, &format!(r#"group_ids:"{}""#, north.id)).await, Vec::<String>::new());
        groups.restore_group(RestoreGroupRequest { id: north.id.clone(), ..Default::default() }).await.expect("restore");
        assert_eq!(names(&app, r#"in_group("VIP")"#).await, ["Hanoi", "North", "Top"]);
    }

    async fn ago_counts_back_from_the_servers_clock(app: TestApp) {
        let mut customers = app.customers();
        let old = create_customer(&mut customers, customer("Old", "", 0)).await;
        let recent = create_customer(&mut customers, customer("Recent", "", 0)).await;
        create_customer(&mut customers, customer("Never", "", 0)).await;
        record_contact(&mut customers, &old.id, Some(app.clock.now() - Span::days(40))).await;
        record_contact(&mut customers, &recent.id, Some(app.clock.now() - Span::days(10))).await;

        let stale = r#"last_contact_time < ago("30d")"#;
        assert_eq!(names(&app, stale).await, ["Old"]);
        assert_eq!(names(&app, r#"NOT last_contact_time:*"#).await, ["Never"]);
        // Never contacted: no time comparison holds, and != is NOT =.
        assert_eq!(names(&app, r#"last_contact_time >= ago("30d")"#).await, ["Recent"]);
        assert_eq!(names(&app, r#"NOT last_contact_time < ago("30d")"#).await, ["Never", "Recent"]);
        app.clock.advance(Span::days(21));
        assert_eq!(names(&app, stale).await, ["Old", "Recent"]);
        assert_eq!(names(&app, r#"create_time < ago("20d")"#).await, ["Never", "Old", "Recent"]);
        assert_eq!(names(&app, r#"create_time < ago("22d")"#).await, Vec::<String>::new());
    }

    async fn mistakes_are_invalid_argument_with_their_offset(app: TestApp) {
        let unknown = mistake(&app, "revenu > 5").await;
        assert!(unknown.starts_with("unknown field `revenu`; fields are name,"), "{unknown}");
        assert!(unknown.ends_with(" at 0"), "{unknown}");
        let timestamp = mistake(&app, r#"province = "Đà Nẵng" AND create_time > yesterday"#).await;
        assert!(timestamp.starts_with("expected a timestamp"), "{timestamp}");
        assert!(timestamp.ends_with(" at 39"), "{timestamp}");
        assert_eq!(mistake(&app, "(name = a").await, "expected `)` at 9");
        assert!(mistake(&app, "revenue : 5").await.starts_with("`revenue` takes =, !=, <"));
        assert!(mistake(&app, r#"in_group("VIP") = x"#).await.contains("stands alone"));
        assert!(mistake(&app, r#"last_contact_time < ago("soon")"#).await.starts_with("expected a duration"));
        assert!(mistake(&app, "attributes.Tier = x").await.starts_with("expected an attribute key"));
        // Limits: length, comparisons, nesting.
        assert!(mistake(&app, &format!("name = \"{}\"", "a".repeat(2_000))).await.contains("at most 2000"));
        let many = vec!["revenue > 1"; 51].join(" AND ");
        assert!(mistake(&app, &many).await.contains("at most 50"));
        let deep = format!("{}name = a{}", "(".repeat(9), ")".repeat(9));
        assert!(mistake(&app, &deep).await.contains("deeper than 8"));
        // The largest allowed filters are answered.
        let fifty = vec!["revenue > 1"; 50].join(" AND ");
        assert_eq!(names(&app, &fifty).await, Vec::<String>::new());
        let eight = format!("{}name = a{}", "(".repeat(8), ")".repeat(8));
        assert_eq!(names(&app, &eight).await, Vec::<String>::new());
    }

    async fn page_tokens_are_bound_to_the_filter(app: TestApp) {
        let mut customers = app.customers();
        for i in 0..7 {
            let province = if i % 2 == 0 { "Đà Nẵng" } else { "Huế" };
            create_customer(&mut customers, customer(&format!("Khách {i}"), province, i)).await;
        }
        let filter = r#"province = "da nang""#.to_owned();
        let request = |token: String, filter: String| ListCustomersRequest { filter, page_size: 3, page_token: token, ..Default::default() };
        let first = customers.list_customers(request(String::new(), filter.clone())).await.expect("page 1").into_inner();
        assert_eq!(first.total_size, 4);
        assert_eq!(first.customers.len(), 3);
        // Another filter with this token: refused.
        let status = expect_code(customers.list_customers(request(first.next_page_token.clone(), r#"province = hue"#.into())).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["page_token"]);
        assert_eq!(crate::helpers::violation_reasons(&status), ["PAGE_TOKEN_INVALID"]);
        // A filter that does not parse, and one over the limits, say so.
        let status = expect_code(customers.list_customers(request(String::new(), "revenu > 5".into())).await, Code::InvalidArgument);
        assert_eq!(crate::helpers::violation_reasons(&status), ["FILTER_SYNTAX"]);
        let long = "name = a OR ".repeat(60) + "name = a";
        let status = expect_code(customers.list_customers(request(String::new(), long)).await, Code::InvalidArgument);
        assert_eq!(crate::helpers::violation_reasons(&status), ["FILTER_TOO_COMPLEX"]);
        // The same filter: the rest, with the same total.
        let second = customers.list_customers(request(first.next_page_token, filter)).await.expect("page 2").into_inner();
        assert_eq!(second.total_size, 4);
        assert_eq!(second.customers.len(), 1);
        assert!(second.next_page_token.is_empty());
    }

    async fn values_that_look_like_sql_are_data(app: TestApp) {
        let mut customers = app.customers();
        let sneaky = "x' OR '1'='1";
        create_customer(&mut customers, Customer {
            attributes: BTreeMap::from([("note".into(), "'; DROP TABLE customers; --".into())]),
            ..customer(sneaky, "", 0)
        }).await;
        create_customer(&mut customers, customer("Plain", "", 0)).await;
        for filter in [
            r#"name = "x' OR '1'='1""#.to_owned(),
            r#"attributes.note = "'; DROP TABLE customers; --""#.to_owned(),
            r#"attributes.note:"drop table""#.to_owned(),
        ] {
            assert_eq!(names(&app, &filter).await, [sneaky], "{filter:?}");
        }
        for filter in [
            r#"name = "' OR 1=1 --""#,
            r#"owner_id = "' OR ''='""#,
            r#"source_id = "x') OR ('a'='a""#,
            r#"email = "a@b.c' OR 'x'='x""#,
            r#"name = "%""#,
            r#"name = "P_ain""#,
            r#"name:"%""#,
            r#"relationship = "HOT' OR '1'='1""#,
        ] {
            assert_eq!(names(&app, filter).await, Vec::<String>::new(), "{filter:?}");
        }
        assert_eq!(names(&app, "").await, ["Plain", sneaky]);
    }

    async fn relationship_and_owner_lists_read_their_index_and_agree_with_the_general_path(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let mut customers = app.customers();
        let mut middle = None;
        for i in 0..24 {
            app.clock.advance(Span::hours(5));
            let c = create_customer(&mut customers, Customer {
                owner_id: ["u-1", "u-2", ""][i % 3].into(),
                ..customer(&format!("Khách {i}"), "", i as i64)
            }).await;
            if i % 2 == 0 {
                change(&mut customers, &c.id, &rel(&rels, "HOT")).await;
            }
            if i % 7 == 3 {
                delete_customer(&mut customers, &c.id).await;
            }
            if i == 12 {
                middle = c.create_time;
            }
        }
        let middle = middle.expect("a middle time");
        let middle = chrono::DateTime::from_timestamp(middle.seconds, middle.nanos as u32).unwrap().to_rfc3339();
        let hot = rel(&rels, "HOT");
        let mut compared = 0;
        for relationship in ["HOT", "NEW"] {
            for owner in ["u-1", "u-2", ""] {
                for bounds in ["".to_owned(), format!(r#"AND create_time >= "{middle}""#), format!(r#"AND create_time < "{middle}" AND create_time > ago("1000d")"#)] {
                    let fast = format!(r#"relationship = {relationship} AND owner_id = "{owner}" {bounds}"#);
                    // A comparison every customer passes sends the same
                    // question down the general path.
                    let general = format!("{fast} AND revenue >= 0");
                    let (fast_ids, fast_totals) = paged(&app, ListCustomersRequest { filter: fast.clone(), ..Default::default() }).await;
                    let (general_ids, general_totals) = paged(&app, ListCustomersRequest { filter: general, ..Default::default() }).await;
                    assert_eq!(fast_ids, general_ids, "{fast}");
                    assert_eq!(fast_totals, general_totals, "{fast}");
                    assert!(fast_totals.iter().all(|t| *t == fast_ids.len() as i64), "{fast}: {fast_totals:?}");
                    compared += usize::from(!fast_ids.is_empty());
                }
            }
        }
        assert!(compared >= 12, "only {compared} of the lists had customers");
        // The older fields ask the same question.
        let (legacy, _) = paged(&app, ListCustomersRequest { relationship_id: hot.clone(), owner_id: "u-2".into(), ..Default::default() }).await;
        let (filtered, _) = paged(&app, ListCustomersRequest { filter: r#"relationship = HOT owner_id = "u-2" revenue >= 0"#.into(), ..Default::default() }).await;
        assert_eq!(legacy, filtered);
        assert!(!legacy.is_empty());
        // An unknown relationship code: nobody; an unknown id by the older
        // field: NOT_FOUND, as before.
        assert_eq!(names(&app, r#"relationship = NOPE owner_id = "u-1""#).await, Vec::<String>::new());
        let status = expect_code(app.customers().list_customers(ListCustomersRequest { relationship_id: crate::fixtures::unknown_id(), owner_id: "u-1".into(), ..Default::default() }).await, Code::NotFound);
        assert!(status.message().contains("relationship"), "{status:?}");
    }
}
