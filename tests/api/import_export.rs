//! ImportCustomers and ExportCustomers over gRPC: every mode and match
//! key, every kind of bad row failing alone while the good rows commit,
//! dry runs, resuming by request id, the IMPORT cause in both change
//! streams, exports that a watch continues without a gap, and tenants kept
//! apart.

use std::collections::{BTreeMap, BTreeSet};

use crm_classify::pb::{
    CreateRelationshipRequest, Customer, DeleteSourceRequest, ExportCustomersRequest,
    ImportCustomersRequest, ImportMatchKey, ImportMode, ImportOptions, ImportOutcome, ImportRow,
    ImportRowBatch, ImportRowResult, ImportSummary, ListCustomersRequest, ListGroupMembersRequest,
    MembershipCause, Relationship, RelationshipKind, WatchGroupMembershipChangesRequest,
    WatchRelationshipChangesRequest, import_customers_request::Payload,
    watch_group_membership_changes_response::Event as MembershipEvent,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::fixtures::{
    Customers, change, create_customer, get_customer, import_requests, import_with, list_pages,
    named, new_group, new_source, read_through, rel, relationships, stored,
};
use crate::helpers::{TestApp, new_tenant, violated_fields};
use crate::on_both_databases;

/// A row with a name and phone.
fn row(number: i64, name: &str, phone: &str) -> ImportRow {
    ImportRow {
        row_number: number,
        name: Some(name.to_owned()),
        phone: (!phone.is_empty()).then(|| phone.to_owned()),
        ..Default::default()
    }
}

fn options(mode: ImportMode, match_on: ImportMatchKey) -> ImportOptions {
    ImportOptions {
        mode: mode as i32,
        match_on: match_on as i32,
        ..Default::default()
    }
}

fn creating() -> ImportOptions {
    options(ImportMode::Create, ImportMatchKey::Unspecified)
}

async fn import(
    app: &TestApp,
    options: ImportOptions,
    batches: Vec<Vec<ImportRow>>,
) -> (Vec<ImportRowResult>, ImportSummary) {
    import_with(&mut app.customers(), options, batches)
        .await
        .expect("import")
}

fn outcome(result: &ImportRowResult) -> ImportOutcome {
    ImportOutcome::try_from(result.outcome).expect("a known outcome")
}

/// The failed row's status code, message and violated fields.
fn failure(result: &ImportRowResult) -> (Code, String, Vec<String>) {
    assert_eq!(outcome(result), ImportOutcome::Failed, "{result:?}");
    let error = result.error.clone().expect("a failed row has an error");
    let status = Status::with_details(
        Code::from(error.code),
        error.message.clone(),
        error.encode_to_vec().into(),
    );
    let fields = if status.code() == Code::InvalidArgument {
        violated_fields(&status)
    } else {
        Vec::new()
    };
    (status.code(), error.message, fields)
}

/// Every active customer of the client's tenant, in pages of 1000.
async fn every_customer(client: &mut Customers) -> Vec<Customer> {
    let request = ListCustomersRequest {
        page_size: 1000,
        ..Default::default()
    };
    list_pages(client, request)
        .await
        .into_iter()
        .flat_map(|page| page.customers)
        .collect()
}

/// Every active customer of the client's tenant, by phone.
async fn by_phone(client: &mut Customers) -> BTreeMap<String, Customer> {
    every_customer(client)
        .await
        .into_iter()
        .map(|c| (c.phone.clone(), c))
        .collect()
}

on_both_databases! {
    async fn create_mode_creates_every_good_row_with_its_classification(app: TestApp) {
        let group = new_group(&app, "Khách VIP").await;
        let source = new_source(&app, "Hội chợ").await;
        let rels = relationships(&mut app.relationships()).await;
        let mut first = row(2, "Nguyễn Văn An", "0912 000 001");
        first.email = Some("An@Example.vn".into());
        first.groups = vec![group.code.clone()];
        first.source = Some(source.code.clone());
        first.relationship = Some("HOT".into());
        first.province = Some("Đà Nẵng".into());
        first.revenue = Some(5_000_000);
        first.attributes = BTreeMap::from([("ma_so_thue".into(), "0101".into())]);
        let mut second = row(3, "Trần Thị Bình", "0912000002");
        second.groups = vec![group.id.clone()];
        second.source = Some(source.id.clone());
        let (results, summary) = import(&app, creating(), vec![vec![first, second]]).await;
        assert_eq!(summary.rows, 2);
        assert_eq!(summary.created, 2, "{results:?}");
        assert_eq!(results.iter().map(|r| r.row_number).collect::<Vec<_>>(), [2, 3]);
        let an = get_customer(&mut app.customers(), &results[0].customer_id).await;
        assert_eq!(an.name, "Nguyễn Văn An");
        assert_eq!(an.phone, "0912000001");
        assert_eq!(an.email, "an@example.vn");
        assert_eq!(an.group_ids, std::slice::from_ref(&group.id));
        assert_eq!(an.source_id, source.id);
        assert_eq!(an.relationship_id, rel(&rels, "HOT"));
        assert_eq!(an.province, "Đà Nẵng");
        assert_eq!(an.revenue, 5_000_000);
        assert_eq!(an.attributes.get("ma_so_thue").map(String::as_str), Some("0101"));
        let binh = get_customer(&mut app.customers(), &results[1].customer_id).await;
        assert_eq!(binh.relationship_id, rel(&rels, "NEW"), "the tenant's default");
        assert_eq!(binh.group_ids, [group.id]);
        assert_eq!(stored(&mut app.customers()).await, 2);
    }

    async fn every_kind_of_bad_row_fails_alone_and_the_good_rows_commit(app: TestApp) {
        let source = new_source(&app, "Nguồn cũ").await;
        app.sources()
            .delete_source(DeleteSourceRequest { id: source.id.clone(), ..Default::default() })
            .await
            .expect("delete source");
        let automatic = automatic_relationship(&app).await;
        let taken = create_customer(&mut app.customers(), Customer {
            phone: "0988000000".into(),
            ..named("Đã có")
        })
        .await;
        let mut rows = vec![row(2, "Tốt Một", "0988000001")];
        rows.push(ImportRow { name: None, ..row(3, "", "0988000002") });
        rows.push(ImportRow { email: Some("khong-phai-email".into()), ..row(4, "Sai Email", "") });
        rows.push(ImportRow { groups: vec!["NHOM_KHONG_CO".into()], ..row(5, "Nhóm Lạ", "") });
        rows.push(ImportRow { source: Some(source.code.clone()), ..row(6, "Nguồn Xoá", "") });
        rows.push(ImportRow { relationship: Some(automatic.clone()), ..row(7, "Tự Động", "") });
        rows.push(row(8, "Trùng Số", "0988 000 000"));
        rows.push(row(9, "Tốt Hai", "0988000009"));
        rows.push(row(10, "Trùng Trong Tệp", "0988000001"));
        let (results, summary) = import(&app, creating(), vec![rows]).await;
        assert_eq!(summary.created, 2, "{results:?}");
        assert_eq!(summary.failed, 7);
        let by_row: BTreeMap<i64, &ImportRowResult> =
            results.iter().map(|r| (r.row_number, r)).collect();
        for good in [2, 9] {
            assert_eq!(outcome(by_row[&good]), ImportOutcome::Created);
        }
        let (code, _, fields) = failure(by_row[&3]);
        assert_eq!((code, fields), (Code::InvalidArgument, vec!["name".to_owned()]));
        let (code, _, fields) = failure(by_row[&4]);
        assert_eq!((code, fields), (Code::InvalidArgument, vec!["email".to_owned()]));
        let (code, message, _) = failure(by_row[&5]);
        assert_eq!(code, Code::NotFound);
        assert!(message.contains("NHOM_KHONG_CO"), "{message}");
        let (code, _, _) = failure(by_row[&6]);
        assert_eq!(code, Code::FailedPrecondition);
        let (code, message, _) = failure(by_row[&7]);
        assert_eq!(code, Code::FailedPrecondition);
        assert!(message.contains("automatic"), "{message}");
        let (code, message, _) = failure(by_row[&8]);
        assert_eq!(code, Code::AlreadyExists);
        assert!(message.contains(&taken.id), "{message}");
        let (code, message, _) = failure(by_row[&10]);
        assert_eq!(code, Code::AlreadyExists);
        assert!(message.contains("row 2 of this import"), "names the first row: {message}");
        let phones: BTreeSet<String> = by_phone(&mut app.customers()).await.into_keys().collect();
        assert_eq!(
            phones,
            BTreeSet::from(["0988000000".into(), "0988000001".into(), "0988000009".into(), "".into()])
                .into_iter()
                .filter(|p: &String| !p.is_empty())
                .collect(),
        );
        assert_eq!(stored(&mut app.customers()).await, 3);
    }

    async fn a_duplicate_in_a_later_batch_names_its_first_row(app: TestApp) {
        let batches = vec![
            vec![row(2, "Một", "0911000001"), row(3, "Hai", "0911000002")],
            vec![row(4, "Ba", "0911000002")],
        ];
        let (results, _) = import(&app, creating(), batches).await;
        let (code, message, _) = failure(&results[2]);
        assert_eq!(code, Code::AlreadyExists);
        assert!(message.contains("row 3 of this import"), "{message}");
    }

    async fn upsert_on_phone_updates_creates_and_leaves_unchanged(app: TestApp) {
        let vip = new_group(&app, "VIP").await;
        let rels = relationships(&mut app.relationships()).await;
        let kept = create_customer(&mut app.customers(), Customer {
            phone: "0900000001".into(),
            province: "Huế".into(),
            ..named("Lê Văn Cũ")
        })
        .await;
        let same = create_customer(&mut app.customers(), Customer {
            phone: "0900000002".into(),
            ..named("Không Đổi")
        })
        .await;
        let mut update = row(2, "Lê Văn Mới", "0900 000 001");
        update.relationship = Some("POTENTIAL".into());
        update.groups = vec![vip.code.clone()];
        let unchanged = ImportRow { name: None, ..row(3, "", "0900000002") };
        let created = row(4, "Người Mới", "0900000003");
        // The same phone twice: the second row updates what the first made.
        let again = ImportRow { company: Some("ACME".into()), name: None, ..row(5, "", "0900000003") };
        let upsert = options(ImportMode::Upsert, ImportMatchKey::Phone);
        let (results, summary) = import(&app, upsert, vec![vec![update, unchanged, created, again]]).await;
        let outcomes: Vec<ImportOutcome> = results.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            [ImportOutcome::Updated, ImportOutcome::Unchanged, ImportOutcome::Created, ImportOutcome::Updated],
            "{results:?}"
        );
        assert_eq!((summary.created, summary.updated, summary.unchanged), (1, 2, 1));
        assert_eq!(results[0].customer_id, kept.id);
        assert_eq!(results[1].customer_id, same.id);
        assert_eq!(results[2].customer_id, results[3].customer_id);
        let updated = get_customer(&mut app.customers(), &kept.id).await;
        assert_eq!(updated.name, "Lê Văn Mới");
        assert_eq!(updated.province, "Huế", "an unset field is left as it is");
        assert_eq!(updated.relationship_id, rel(&rels, "POTENTIAL"));
        assert_eq!(updated.group_ids, [vip.id]);
        let made = get_customer(&mut app.customers(), &results[2].customer_id).await;
        assert_eq!((made.name.as_str(), made.company.as_str()), ("Người Mới", "ACME"));
        assert_eq!(stored(&mut app.customers()).await, 3);
    }

    async fn update_matches_on_email_and_id_and_fails_rows_that_match_nobody(app: TestApp) {
        let by_email = create_customer(&mut app.customers(), Customer {
            email: "chi@example.vn".into(),
            ..named("Chi")
        })
        .await;
        let by_id = create_customer(&mut app.customers(), named("Dũng")).await;
        let on_email = options(ImportMode::Update, ImportMatchKey::Email);
        let rows = vec![
            ImportRow { email: Some("CHI@example.vn".into()), company: Some("Công ty A".into()), ..Default::default() },
            ImportRow { email: Some("khong-co@example.vn".into()), company: Some("B".into()), ..Default::default() },
            ImportRow { company: Some("C".into()), ..Default::default() },
        ];
        let rows = rows.into_iter().zip(2..).map(|(r, n)| ImportRow { row_number: n, ..r }).collect();
        let (results, _) = import(&app, on_email, vec![rows]).await;
        assert_eq!(outcome(&results[0]), ImportOutcome::Updated);
        assert_eq!(results[0].customer_id, by_email.id);
        assert_eq!(failure(&results[1]).0, Code::NotFound);
        let (code, _, fields) = failure(&results[2]);
        assert_eq!((code, fields), (Code::InvalidArgument, vec!["email".to_owned()]));
        assert_eq!(get_customer(&mut app.customers(), &by_email.id).await.company, "Công ty A");

        let on_id = options(ImportMode::Update, ImportMatchKey::Id);
        let rows = vec![
            ImportRow { row_number: 1, id: by_id.id.clone(), owner_id: Some("sale-1".into()), ..Default::default() },
            ImportRow { row_number: 2, id: crate::fixtures::unknown_id(), owner_id: Some("x".into()), ..Default::default() },
        ];
        let (results, summary) = import(&app, on_id, vec![rows]).await;
        assert_eq!(outcome(&results[0]), ImportOutcome::Updated);
        assert_eq!(failure(&results[1]).0, Code::NotFound);
        assert_eq!((summary.updated, summary.failed, summary.created), (1, 1, 0));
        assert_eq!(get_customer(&mut app.customers(), &by_id.id).await.owner_id, "sale-1");
        assert_eq!(stored(&mut app.customers()).await, 2, "UPDATE creates nobody");
    }

    async fn a_dry_run_reports_every_outcome_and_writes_nothing(app: TestApp) {
        let existing = create_customer(&mut app.customers(), Customer {
            phone: "0977000001".into(),
            ..named("Có Sẵn")
        })
        .await;
        // Batches of two, so repeats meet rows of earlier batches too.
        let batches = |p: &str| vec![
            vec![
                ImportRow { province: Some("Hà Nội".into()), name: None, ..row(2, "", &format!("{p}01")) },
                row(3, "Mới", &format!("{p}02")),
            ],
            vec![row(4, "", &format!("{p}03")), row(5, "Trùng", &format!("{p}02"))],
            vec![ImportRow { email: Some(format!("moi{p}@example.vn")), ..row(6, "Sáu", &format!("{p}06")) }],
            vec![ImportRow { email: Some(format!("MOI{p}@example.vn")), ..row(7, "Bảy", &format!("{p}07")) }],
        ];
        for (mode, p) in [(ImportMode::Upsert, "09770000"), (ImportMode::Create, "09660000")] {
            let batches = || batches(p);
            let request_id = format!("dry-then-real-{mode:?}");
            let mut dry = options(mode, ImportMatchKey::Phone);
            dry.dry_run = true;
            dry.request_id = request_id.clone();
            let before = by_phone(&mut app.customers()).await;
            let (dry_results, dry_summary) = import(&app, dry, batches()).await;
            assert_eq!(by_phone(&mut app.customers()).await, before, "a dry run writes nothing");
            let real = ImportOptions { request_id, ..options(mode, ImportMatchKey::Phone) };
            let (results, summary) = import(&app, real, batches()).await;
            assert_eq!(dry_summary, summary, "{mode:?}: the dry run foresaw the real run: {dry_results:?} {results:?}");
            let outcomes = |r: &[ImportRowResult]| r.iter().map(|r| (r.row_number, outcome(r))).collect::<Vec<_>>();
            assert_eq!(outcomes(&dry_results), outcomes(&results), "{mode:?}");
            let codes = |r: &[ImportRowResult]| r.iter().filter_map(|r| r.error.as_ref().map(|e| e.code)).collect::<Vec<_>>();
            assert_eq!(codes(&dry_results), codes(&results), "{mode:?}");
            assert_eq!(summary.replayed, 0, "the dry run applied nothing to replay");
            if mode == ImportMode::Upsert {
                assert_eq!(dry_results[0].customer_id, existing.id);
                assert_eq!(dry_results[1].customer_id, "", "a dry run creates no id");
                assert_eq!((summary.created, summary.updated, summary.failed), (2, 2, 2), "{results:?}");
            } else {
                assert_eq!((summary.created, summary.failed), (2, 4), "{results:?}");
                let (_, message, _) = failure(&dry_results[3]);
                assert!(message.contains("row 3 of this import"), "{message}");
            }
        }
    }

    async fn a_cut_import_resumed_with_its_request_id_creates_no_duplicates(app: TestApp) {
        let mut opts = creating();
        opts.request_id = "nhap-lan-1".into();
        let batch = |from: i64| (from..from + 5).map(|n| row(n, &format!("Khách {n}"), &format!("09330000{n:02}"))).collect::<Vec<_>>();
        // Send the options and one batch, read its results, then go away.
        let (sender, receiver) = mpsc::channel(4);
        for request in import_requests(opts.clone(), vec![batch(1)]) {
            sender.send(request).await.expect("queue");
        }
        let mut responses = app
            .customers()
            .import_customers(ReceiverStream::new(receiver))
            .await
            .expect("import")
            .into_inner();
        let first = responses.message().await.expect("results").expect("a message");
        assert_eq!(first.results.len(), 5);
        drop(responses);
        drop(sender);
        assert_eq!(stored(&mut app.customers()).await, 5, "acknowledged rows stay");

        let (results, summary) = import(&app, opts, vec![batch(1), batch(6)]).await;
        assert_eq!(summary.replayed, 5, "{results:?}");
        assert_eq!(summary.created, 10, "replayed rows count in their outcome");
        for (result, first) in results.iter().zip(&first.results) {
            assert!(result.replayed);
            assert_eq!(result.customer_id, first.customer_id);
        }
        assert!(results[5..].iter().all(|r| !r.replayed && outcome(r) == ImportOutcome::Created));
        assert_eq!(stored(&mut app.customers()).await, 10, "no duplicates");

        // The same request id with other options is refused.
        let mut other = creating();
        other.request_id = "nhap-lan-1".into();
        other.reason = "khác".into();
        let err = import_with(&mut app.customers(), other, vec![batch(1)]).await.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&err), ["request_id"]);
    }

    async fn imported_moves_and_joins_are_streamed_with_cause_import(app: TestApp) {
        let group = new_group(&app, "Hội thảo").await;
        let rels = relationships(&mut app.relationships()).await;
        let existing = create_customer(&mut app.customers(), Customer { phone: "0944000001".into(), ..named("Cũ") }).await;
        // A member already, so the membership log has a position to watch
        // from (a watch from 0 starts after the latest change).
        create_customer(&mut app.customers(), Customer { group_ids: vec![group.id.clone()], ..named("Thành viên") }).await;
        let start = app.customers().list_customers(ListCustomersRequest::default()).await.expect("list").into_inner().watch_from_sequence;
        let members_from = app.groups().list_group_members(ListGroupMembersRequest { group_id: group.id.clone(), ..Default::default() })
            .await.expect("members").into_inner().watch_from_sequence;
        let mut moved = row(2, "Cũ", "0944000001");
        moved.relationship = Some("HOT".into());
        moved.groups = vec![group.code.clone()];
        let mut created = row(3, "Mới", "0944000002");
        created.groups = vec![group.code.clone()];
        let mut opts = options(ImportMode::Upsert, ImportMatchKey::Phone);
        opts.reason = "nhập từ Excel".into();
        let (results, _) = import(&app, opts, vec![vec![moved, created]]).await;
        let new_id = results[1].customer_id.clone();

        let mut events = app.relationships().watch_relationship_changes(WatchRelationshipChangesRequest {
            after_sequence: start,
            ..Default::default()
        }).await.expect("watch").into_inner();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let (changes, _) = read_through(&mut events, start + 2, deadline).await;
        let seen: BTreeSet<(String, String, i32, String)> = changes.iter()
            .map(|c| (c.customer_id.clone(), c.new_relationship_id.clone(), c.cause, c.reason.clone()))
            .collect();
        let import_cause = crm_classify::pb::RelationshipChangeCause::Import as i32;
        assert_eq!(seen, BTreeSet::from([
            (existing.id.clone(), rel(&rels, "HOT"), import_cause, "nhập từ Excel".to_owned()),
            (new_id.clone(), rel(&rels, "NEW"), import_cause, "nhập từ Excel".to_owned()),
        ]));

        let mut memberships = app.groups().watch_group_membership_changes(WatchGroupMembershipChangesRequest {
            after_sequence: members_from,
            group_ids: vec![group.id.clone()],
            ..Default::default()
        }).await.expect("watch memberships").into_inner();
        let mut joined = BTreeSet::new();
        while joined.len() < 2 {
            let message = tokio::time::timeout_at(deadline, memberships.message()).await
                .expect("membership changes in time").expect("stream").expect("open");
            if let Some(MembershipEvent::Change(change)) = message.event {
                assert_eq!(change.cause, MembershipCause::Import as i32, "{change:?}");
                joined.insert(change.customer_id);
            }
        }
        assert_eq!(joined, BTreeSet::from([existing.id, new_id]));
    }

    async fn bad_streams_are_refused_with_their_field(app: TestApp) {
        let mut client = app.customers();
        let only_rows = vec![ImportCustomersRequest { payload: Some(Payload::Rows(ImportRowBatch { rows: vec![row(1, "A", "")] })) }];
        let err = client.import_customers(tokio_stream::iter(only_rows)).await.map(|_| ()).err();
        let err = match err {
            Some(err) => err,
            None => panic!("an import without options must fail"),
        };
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&err), ["options"]);

        let no_match = options(ImportMode::Upsert, ImportMatchKey::Unspecified);
        let err = import_with(&mut client, no_match, vec![]).await.expect_err("refused");
        assert_eq!(violated_fields(&err), ["options.match_on"]);
        let no_mode = options(ImportMode::Unspecified, ImportMatchKey::Phone);
        let err = import_with(&mut client, no_mode, vec![]).await.expect_err("refused");
        assert_eq!(violated_fields(&err), ["options.mode"]);

        let too_many: Vec<ImportRow> = (1..=1001).map(|n| row(n, "X", "")).collect();
        let err = import_with(&mut client, creating(), vec![too_many]).await.expect_err("refused");
        assert_eq!(violated_fields(&err), ["rows.rows"]);
        assert_eq!(stored(&mut client).await, 0, "nothing of the refused batch was written");

        // Row numbers must rise: a repeat fails alone.
        let rows = vec![row(5, "A", ""), row(5, "B", ""), row(4, "C", ""), row(6, "D", "")];
        let (results, summary) = import(&app, creating(), vec![rows]).await;
        assert_eq!((summary.created, summary.failed), (2, 2), "{results:?}");
        assert_eq!(failure(&results[1]).2, ["row_number"]);
        assert_eq!(failure(&results[2]).2, ["row_number"]);

        // Control characters fail the row, not the batch.
        let rows = vec![row(1, "Tốt", ""), row(2, "Xấu\u{0}", "")];
        let (results, _) = import(&app, creating(), vec![rows]).await;
        assert_eq!(outcome(&results[0]), ImportOutcome::Created);
        assert_eq!(failure(&results[1]).0, Code::InvalidArgument);
    }

    async fn an_export_then_a_watch_misses_nothing_under_concurrent_writers(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let rows: Vec<ImportRow> = (1..=300).map(|n| row(n, &format!("Khách {n}"), &format!("0955{n:06}"))).collect();
        let (results, _) = import(&app, creating(), vec![rows[..150].to_vec(), rows[150..].to_vec()]).await;
        let ids: Vec<String> = results.iter().map(|r| r.customer_id.clone()).collect();
        let targets = [rel(&rels, "HOT"), rel(&rels, "POTENTIAL"), rel(&rels, "CLOSED")];
        let writers = {
            let (ids, targets) = (ids.clone(), targets.clone());
            let client = app.customers();
            tokio::spawn(async move {
                let mut client = client;
                for (i, id) in ids.iter().enumerate().take(200) {
                    change(&mut client, id, &targets[i % 3]).await;
                }
            })
        };
        let mut exported = BTreeMap::new();
        let mut stream = app.customers().export_customers(ExportCustomersRequest::default()).await.expect("export").into_inner();
        let first = stream.message().await.expect("first").expect("a first message");
        assert!(first.customers.is_empty());
        assert_eq!(first.total_size, 300);
        let from = first.watch_from_sequence;
        while let Some(page) = stream.message().await.expect("page") {
            assert_eq!(page.watch_from_sequence, 0, "only the first message carries it");
            for c in page.customers {
                assert!(exported.insert(c.id.clone(), c.relationship_id).is_none(), "exported twice");
            }
        }
        assert_eq!(exported.len(), 300);
        writers.await.expect("writers");
        let mut events = app.relationships().watch_relationship_changes(WatchRelationshipChangesRequest {
            after_sequence: from,
            ..Default::default()
        }).await.expect("watch").into_inner();
        let now = app.customers().list_customers(ListCustomersRequest::default()).await.expect("list").into_inner().watch_from_sequence;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let (changes, _) = read_through(&mut events, now, deadline).await;
        for c in changes {
            if let Some(held) = exported.get_mut(&c.customer_id) {
                assert_eq!(*held, c.old_relationship_id, "a change continues the exported state");
                *held = c.new_relationship_id;
            }
        }
        let actual: BTreeMap<String, String> = every_customer(&mut app.customers())
            .await.into_iter().map(|c| (c.id, c.relationship_id)).collect();
        assert_eq!(exported, actual, "export + watch = the current state");
    }

    async fn an_export_shows_only_its_tenant_in_its_order_and_filter(app: TestApp) {
        let other = new_tenant();
        let mut theirs = app.customers_of(&other);
        create_customer(&mut theirs, named("Của Người Khác")).await;
        for name in ["Cường", "An", "Bình"] {
            create_customer(&mut app.customers(), Customer { province: "Huế".into(), ..named(name) }).await;
        }
        create_customer(&mut app.customers(), named("Dương")).await;
        let request = ExportCustomersRequest { order_by: "name".into(), filter: "province = \"Huế\"".into(), ..Default::default() };
        let mut stream = app.customers().export_customers(request).await.expect("export").into_inner();
        let mut names = Vec::new();
        let mut total = None;
        while let Some(page) = stream.message().await.expect("page") {
            total.get_or_insert(page.total_size);
            names.extend(page.customers.into_iter().map(|c| c.name));
        }
        assert_eq!(names, ["An", "Bình", "Cường"]);
        assert_eq!(total, Some(3));
        let bad = ExportCustomersRequest { filter: "province = ".into(), ..Default::default() };
        let err = app.customers().export_customers(bad).await.map(|_| ()).expect_err("a bad filter");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&err), ["filter"]);
    }

    async fn a_large_import_keeps_counters_equal_to_a_recount(app: TestApp) {
        let vip = new_group(&app, "Nhóm lớn").await;
        let rows: Vec<ImportRow> = (1..=2500).map(|n| ImportRow {
            relationship: Some(["HOT", "NEW", "POTENTIAL"][(n % 3) as usize].into()),
            groups: if n % 2 == 0 { vec![vip.code.clone()] } else { vec![] },
            ..row(n, &format!("Khách {n}"), &format!("0966{n:06}"))
        }).collect();
        let batches: Vec<Vec<ImportRow>> = rows.chunks(1000).map(<[ImportRow]>::to_vec).collect();
        let (_, summary) = import(&app, creating(), batches).await;
        assert_eq!(summary.created, 2500);
        let counts = app.customers().count_customers_by_relationship(crm_classify::pb::CountCustomersByRelationshipRequest::default())
            .await.expect("count").into_inner();
        assert_eq!(counts.total, 2500);
        let listed = every_customer(&mut app.customers()).await;
        let mut recount: BTreeMap<String, i64> = BTreeMap::new();
        for c in &listed {
            *recount.entry(c.relationship_id.clone()).or_default() += 1;
        }
        for count in counts.counts {
            assert_eq!(count.count, recount.get(&count.relationship_id).copied().unwrap_or(0));
        }
        assert_eq!(crate::fixtures::group_count(&app, &vip.id).await, 1250);

        // Every row again, changing every customer: batches of many edits.
        let rels = relationships(&mut app.relationships()).await;
        let codes = ["POTENTIAL", "HOT", "NEW"];
        let again: Vec<ImportRow> = (1..=2500).map(|n| ImportRow {
            name: None,
            province: Some(format!("Tỉnh {}", n % 7)),
            relationship: Some(codes[(n % 3) as usize].into()),
            ..row(n, "", &format!("0966{n:06}"))
        }).collect();
        let batches: Vec<Vec<ImportRow>> = again.chunks(1000).map(<[ImportRow]>::to_vec).collect();
        let (_, summary) = import(&app, options(ImportMode::Upsert, ImportMatchKey::Phone), batches).await;
        assert_eq!((summary.updated, summary.created), (2500, 0));
        let listed = every_customer(&mut app.customers()).await;
        assert_eq!(listed.len(), 2500);
        let mut recount: BTreeMap<String, i64> = BTreeMap::new();
        for c in &listed {
            let n: i64 = c.phone[4..].parse().expect("the row number in the phone");
            assert_eq!(c.province, format!("Tỉnh {}", n % 7), "{c:?}");
            assert_eq!(c.relationship_id, rel(&rels, codes[(n % 3) as usize]), "{c:?}");
            assert_eq!(c.name, format!("Khách {n}"), "an unset name is kept");
            assert_eq!(c.etag, "r3", "an edit and a move: two revisions");
            *recount.entry(c.relationship_id.clone()).or_default() += 1;
        }
        let counts = app.customers().count_customers_by_relationship(crm_classify::pb::CountCustomersByRelationshipRequest::default())
            .await.expect("count").into_inner();
        for count in counts.counts {
            assert_eq!(count.count, recount.get(&count.relationship_id).copied().unwrap_or(0));
        }
    }
}

/// A new automatic relationship's code.
async fn automatic_relationship(app: &TestApp) -> String {
    app.relationships()
        .create_relationship(CreateRelationshipRequest {
            relationship: Some(Relationship {
                name: "Lâu không liên lạc".into(),
                code: "LAU_KHONG_LIEN_LAC".into(),
                kind: RelationshipKind::AutomaticInactivity as i32,
                inactivity_days: 30,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create the automatic relationship")
        .into_inner()
        .relationship
        .expect("relationship")
        .code
}
