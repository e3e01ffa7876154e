//! Hostile input (issue 19): NUL in any string, text past its limit,
//! revenue at the edge of int64, values of a megabyte echoed back, metadata
//! sent twice. Each is refused as INVALID_ARGUMENT naming the field (or
//! answered without INTERNAL), writes nothing, and leaves the server
//! answering.

use crm_classify::{
    domain::customer::{QUERY_MAX_CHARS, REVENUE_MAX, SHORT_TEXT_MAX},
    entity::{customer, customer_group, tenant},
    pb::{
        self, CountCustomersByRelationshipRequest, CreateGroupRequest, Customer,
        DeleteCustomerRequest, GetCustomerRequest, GetSourceReportRequest, Group,
        ListCustomersRequest, WatchRelationshipChangesRequest,
        group_service_client::GroupServiceClient,
    },
};
use prost_reflect::DynamicMessage;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use tonic::{Code, Request, metadata::MetadataValue};

use crate::fixtures::{
    create_customer, create_request, get_customer, named, new_source, stored, total, update_request,
};
use crate::helpers::{TestApp, expect_code, new_tenant, still_answers, violated_fields};
use crate::on_both_databases;
use crate::requests::{assert_small, call, methods, text_slots};

/// Text with a NUL in the middle.
const WITH_NUL: &str = "a\u{0}b";

/// Rows the test tenant has: its tenant row, customers and groups.
async fn rows_of_tenant(app: &TestApp, tenant_id: &str) -> [u64; 3] {
    let db = app.database().await;
    [
        tenant::Entity::find_by_id(tenant_id.to_owned())
            .count(&db)
            .await
            .expect("count tenants"),
        customer::Entity::find()
            .filter(customer::Column::TenantId.eq(tenant_id))
            .count(&db)
            .await
            .expect("count customers"),
        customer_group::Entity::find()
            .filter(customer_group::Column::TenantId.eq(tenant_id))
            .count(&db)
            .await
            .expect("count groups"),
    ]
}

on_both_databases! {
    async fn a_nul_in_any_string_of_any_request_is_refused_before_anything_is_written(app: TestApp) {
        let mut checked = Vec::new();
        for method in methods() {
            for slot in text_slots(&method.input()) {
                let mut request = DynamicMessage::new(method.input());
                let field = slot.put(&mut request, WITH_NUL);
                let what = format!("{} {field}", method.name());
                let status = call(&app, &method, request)
                    .await
                    .expect_err(&format!("{what}: a NUL was accepted"));
                assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
                assert!(
                    violated_fields(&status).contains(&field),
                    "{what}: {:?}",
                    violated_fields(&status)
                );
                checked.push(what);
            }
        }
        // The walk reached the fields the issue names, nested ones included.
        for expected in [
            "ListCustomers query",
            "ListCustomers owner_id",
            "CreateCustomer customer.owner_id",
            "CreateCustomer customer.group_ids[0]",
            "CreateCustomer customer.attributes",
            "UpdateGroup update_mask.paths[0]",
            "WatchRelationshipChanges owner_ids[0]",
            "DeleteSource etag",
        ] {
            assert!(checked.iter().any(|c| c == expected), "{expected} not checked");
        }
        // Not even the tenant was provisioned.
        assert_eq!(rows_of_tenant(&app, &app.tenant).await, [0, 0, 0]);
        still_answers(&app).await;
    }

    async fn search_text_and_owner_filters_have_a_length_limit(app: TestApp) {
        let mut customers = app.customers();
        create_customer(&mut customers, named("An")).await;
        let long_query = "a".repeat(60_000);
        let long_owner = "u".repeat(SHORT_TEXT_MAX + 1);
        for (request, field) in [
            (ListCustomersRequest { query: long_query.clone(), ..Default::default() }, "query"),
            (ListCustomersRequest { owner_id: long_owner.clone(), ..Default::default() }, "owner_id"),
        ] {
            let status = expect_code(customers.list_customers(request).await, Code::InvalidArgument);
            assert_eq!(violated_fields(&status), vec![field]);
        }
        for (request, field) in [
            (CountCustomersByRelationshipRequest { query: long_query.clone(), ..Default::default() }, "query"),
            (CountCustomersByRelationshipRequest { owner_id: long_owner.clone(), ..Default::default() }, "owner_id"),
        ] {
            let status = expect_code(
                customers.count_customers_by_relationship(request).await,
                Code::InvalidArgument,
            );
            assert_eq!(violated_fields(&status), vec![field]);
        }
        let status = expect_code(
            app.relationships()
                .watch_relationship_changes(WatchRelationshipChangesRequest {
                    owner_ids: vec![long_owner],
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["owner_ids[0]"]);

        // At the limit, in characters that take several bytes: answered.
        let at_limit = ListCustomersRequest { query: "ạ".repeat(QUERY_MAX_CHARS), ..Default::default() };
        assert_eq!(total(&mut customers, at_limit).await, 0);
        assert_eq!(stored(&mut customers).await, 1);
        still_answers(&app).await;
    }

    async fn revenue_beyond_its_range_is_refused_and_never_written(app: TestApp) {
        let mut customers = app.customers();
        let status = expect_code(
            customers
                .create_customer(create_request(Customer { revenue: REVENUE_MAX + 1, ..named("Big") }))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["customer.revenue"]);
        assert_eq!(stored(&mut customers).await, 0);

        let an = create_customer(&mut customers, Customer { revenue: REVENUE_MAX, ..named("An") }).await;
        let status = expect_code(
            customers
                .update_customer(update_request(Customer { revenue: i64::MAX, ..an.clone() }, &["revenue"]))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["customer.revenue"]);
        let unchanged = get_customer(&mut customers, &an.id).await;
        assert_eq!((unchanged.revenue, unchanged.etag), (REVENUE_MAX, an.etag));
        still_answers(&app).await;
    }

    async fn the_source_report_sums_revenue_exactly_and_never_overflows(app: TestApp) {
        let mut customers = app.customers();
        let web = new_source(&app, "Web").await;
        for name in ["An", "Bình"] {
            let customer = Customer { revenue: REVENUE_MAX, source_id: web.id.clone(), ..named(name) };
            create_customer(&mut customers, customer).await;
        }
        let web_revenue = |report: pb::GetSourceReportResponse| {
            let row = report.rows.into_iter().find(|r| r.source_id == web.id).expect("the source's row");
            (row.revenue, report.total.expect("total").revenue)
        };
        let report = || async {
            app.sources()
                .get_source_report(GetSourceReportRequest::default())
                .await
                .expect("source report")
                .into_inner()
        };
        assert_eq!(web_revenue(report().await), (2 * REVENUE_MAX, 2 * REVENUE_MAX));

        // Values no request may write any more (stored before the bound, or
        // by hand) cannot break the report: sums past int64 saturate, and
        // the sum stays exact where it fits.
        let db = app.database().await;
        let set_revenue = |name: &'static str, revenue: i64| {
            customer::Entity::update_many()
                .col_expr(customer::Column::Revenue, Expr::val(revenue))
                .filter(customer::Column::TenantId.eq(app.tenant.clone()))
                .filter(customer::Column::Name.eq(name))
        };
        set_revenue("An", i64::MAX).exec(&db).await.expect("store revenue");
        set_revenue("Bình", i64::MAX).exec(&db).await.expect("store revenue");
        assert_eq!(web_revenue(report().await), (i64::MAX, i64::MAX));
        set_revenue("Bình", i64::MIN).exec(&db).await.expect("store revenue");
        assert_eq!(web_revenue(report().await), (-1, -1));
        still_answers(&app).await;
    }

    async fn a_value_of_a_megabyte_is_echoed_only_in_part(app: TestApp) {
        let mut customers = app.customers();
        let huge = "x".repeat(1 << 20);
        let status = expect_code(
            customers.get_customer(GetCustomerRequest { id: huge.clone() }).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), vec!["id"]);
        assert!(status.message().contains("(1048576 bytes)"), "{}", status.message());
        assert_small(&status);

        // A hundred bad ids of 10 KB each: a few named, the rest counted.
        let many = Customer { group_ids: vec!["y".repeat(10_000); 100], ..named("Many") };
        let status = expect_code(customers.create_customer(create_request(many)).await, Code::InvalidArgument);
        assert!(violated_fields(&status).contains(&"customer.group_ids[0]".to_owned()));
        assert!(status.message().contains("more)"), "{}", status.message());
        assert_small(&status);
        assert_eq!(stored(&mut customers).await, 0);

        // A stale etag of a megabyte: ABORTED, and the customer stays.
        let an = create_customer(&mut customers, named("An")).await;
        let status = expect_code(
            customers.delete_customer(DeleteCustomerRequest { id: an.id.clone(), etag: huge }).await,
            Code::Aborted,
        );
        assert_small(&status);
        assert_eq!(get_customer(&mut customers, &an.id).await.delete_time, None);
        still_answers(&app).await;
    }

    async fn a_tenant_or_actor_sent_twice_is_refused(app: TestApp) {
        let other = new_tenant();
        let create = || {
            Request::new(CreateGroupRequest {
                group: Some(Group { name: "VIP".into(), ..Default::default() }),
                ..Default::default()
            })
        };
        let value = |text: &str| MetadataValue::try_from(text).expect("metadata value");
        let mut client = GroupServiceClient::new(app.channel.clone());

        let mut request = create();
        request.metadata_mut().append("x-tenant-id", value(&app.tenant));
        request.metadata_mut().append("x-tenant-id", value(&other));
        let status = expect_code(client.create_group(request).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["x-tenant-id"]);

        let mut request = create();
        request.metadata_mut().append("x-tenant-id", value(&app.tenant));
        request.metadata_mut().append("x-actor-id", value("alice"));
        request.metadata_mut().append("x-actor-id", value("mallory"));
        let status = expect_code(client.create_group(request).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["x-actor-id"]);

        for tenant in [&app.tenant, &other] {
            assert_eq!(rows_of_tenant(&app, tenant).await, [0, 0, 0], "{tenant}");
        }
        still_answers(&app).await;
    }
}
