//! The customer-record cache never serves a stale record.
//!
//! GetCustomer and the single-group ListCustomers path (`group_id` set, no
//! subgroups, default order) read customer records from an in-process cache.
//! Each test here first reads a customer (filling the cache), then changes it
//! through the API with one kind of write (update, relationship change,
//! membership, group delete/restore, contact, relationship delete with
//! reassignment, customer delete/restore) and checks that the next reads show
//! the new state. It also checks that a cached record is never served to
//! another tenant, that a write under concurrent reads leaves the last written
//! state in the cache, and, on PostgreSQL, that a write through one server
//! reaches the cache of another server on the same database, and that a
//! server whose invalidation listener went silently deaf (its network flow
//! dropped without a reset) stops serving what it cached.

use std::{
    collections::BTreeSet,
    future::pending,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crm_classify::pb::{
    AddCustomersToGroupRequest, BatchChangeRelationshipRequest, ChangeRelationshipRequest,
    ContactChannel, Customer, DeleteCustomerRequest, DeleteGroupRequest, DeleteRelationshipRequest,
    GetCustomerRequest, Group, ListCustomersRequest, RecordContactRequest,
    RemoveCustomersFromGroupRequest, RestoreCustomerRequest, RestoreGroupRequest,
    UpdateCustomerRequest,
};
use prost_types::FieldMask;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::Notify,
    task::{JoinHandle, JoinSet},
    time::timeout,
};
use tonic::Code;

use crate::fixtures::{
    self, Customers, create_customer, get_customer, named, new_group, rel, relationships,
    update_request,
};
use crate::helpers::{Backend, TestApp, expect_code, new_tenant, postgres_database_url};
use crate::on_both_databases;

fn in_groups(name: &str, groups: &[&Group]) -> Customer {
    Customer {
        group_ids: groups.iter().map(|g| g.id.clone()).collect(),
        ..named(name)
    }
}

/// Moves a customer to `relationship_id`; returns the changed customer.
async fn change(client: &mut Customers, customer_id: &str, relationship_id: &str) -> Customer {
    fixtures::change(client, customer_id, relationship_id)
        .await
        .customer
        .expect("customer")
}

/// Renames customer `id` to `name` (an update of the `name` path).
async fn rename(client: &mut Customers, id: &str, name: &str) -> Customer {
    let customer = Customer {
        id: id.to_owned(),
        ..named(name)
    };
    client
        .update_customer(update_request(customer, &["name"]))
        .await
        .expect("update customer")
        .into_inner()
        .customer
        .expect("customer")
}

/// The customers of exactly one group (no subgroups, default order), only
/// those holding `relationship_id` when it is not empty: the list path that
/// reads from the record cache.
async fn group_list(
    client: &mut Customers,
    group_id: &str,
    relationship_id: &str,
) -> Vec<Customer> {
    client
        .list_customers(ListCustomersRequest {
            group_id: group_id.to_owned(),
            include_subgroups: false,
            relationship_id: relationship_id.to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list customers of a group")
        .into_inner()
        .customers
}

/// Customer `id` as the single-group list of `group_id` shows it, if it does.
async fn listed_in(client: &mut Customers, group_id: &str, id: &str) -> Option<Customer> {
    group_list(client, group_id, "")
        .await
        .into_iter()
        .find(|c| c.id == id)
}

fn group_set(customer: &Customer) -> BTreeSet<String> {
    customer.group_ids.iter().cloned().collect()
}

fn set_of(groups: &[&Group]) -> BTreeSet<String> {
    groups.iter().map(|g| g.id.clone()).collect()
}

/// How long a write through one replica may take to reach another's
/// cache before a test fails: many times the few milliseconds it takes.
const REACHES_ANOTHER_REPLICA_WITHIN: Duration = Duration::from_secs(20);

/// Polls GetCustomer through `client` every 20 ms until `done` holds and
/// returns that customer; fails the test, saying what it waited for
/// (`what`) and what it read last, when `done` does not hold within
/// [`REACHES_ANOTHER_REPLICA_WITHIN`].
async fn poll_until(
    client: &mut Customers,
    id: &str,
    what: &str,
    done: impl Fn(&Customer) -> bool,
) -> Customer {
    let deadline = Instant::now() + REACHES_ANOTHER_REPLICA_WITHIN;
    loop {
        let customer = get_customer(client, id).await;
        if done(&customer) {
            return customer;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {REACHES_ANOTHER_REPLICA_WITHIN:?}; the last read gave {customer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_databases! {
    async fn update_customer_is_seen_by_the_next_get_and_group_list(app: TestApp) {
        let mut customers = app.customers();
        let group = new_group(&app, "Khách VIP").await;
        let created = create_customer(&mut customers, Customer { phone: "0901 111 222".into(), ..in_groups("Nguyễn Văn An", &[&group]) }).await;
        let before = get_customer(&mut customers, &created.id).await;
        assert_eq!((before.name.as_str(), before.phone.as_str()), ("Nguyễn Văn An", "0901111222"));
        let listed = listed_in(&mut customers, &group.id, &created.id).await.expect("listed in its group");
        assert_eq!(listed.name, "Nguyễn Văn An");

        let updated = customers
            .update_customer(UpdateCustomerRequest {
                customer: Some(Customer { id: created.id.clone(), phone: "0912.333.444".into(), ..named("Trần Thị Bình") }),
                update_mask: Some(FieldMask { paths: vec!["name".into(), "phone".into()] }),
                reason: String::new(),
            })
            .await
            .expect("update customer")
            .into_inner()
            .customer
            .expect("customer");
        assert_ne!(updated.etag, before.etag, "an update changes the etag");

        let after = get_customer(&mut customers, &created.id).await;
        assert_eq!(after.name, "Trần Thị Bình", "Get shows the new name");
        assert_eq!(after.phone, "0912333444", "Get shows the new phone");
        assert_eq!(after.etag, updated.etag, "Get shows the new etag");
        assert_ne!(after.etag, before.etag);
        let listed = listed_in(&mut customers, &group.id, &created.id).await.expect("still listed in its group");
        assert_eq!((listed.name.as_str(), listed.phone.as_str()), ("Trần Thị Bình", "0912333444"), "the group list shows the new values");
        assert_eq!(listed.etag, updated.etag);

        // A second update after the cache was filled again.
        let renamed = rename(&mut customers, &created.id, "Lê Văn Cường").await;
        let after = get_customer(&mut customers, &created.id).await;
        assert_eq!(after.name, "Lê Văn Cường");
        assert_eq!(after.etag, renamed.etag);
    }

    async fn relationship_changes_are_seen_by_the_next_get_and_group_list(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (new, hot, potential) = (rel(&rels, "NEW"), rel(&rels, "HOT"), rel(&rels, "POTENTIAL"));
        let group = new_group(&app, "Hà Nội").await;
        let one = create_customer(&mut customers, in_groups("Một", &[&group])).await;
        let before = get_customer(&mut customers, &one.id).await;
        assert_eq!(before.relationship_id, new);
        assert_eq!(group_list(&mut customers, &group.id, &new).await.len(), 1);

        let changed = change(&mut customers, &one.id, &hot).await;
        let after = get_customer(&mut customers, &one.id).await;
        assert_eq!(after.relationship_id, hot, "Get shows the new relationship");
        assert_eq!(after.etag, changed.etag);
        assert_ne!(after.etag, before.etag);
        let hot_members = group_list(&mut customers, &group.id, &hot).await;
        assert_eq!(hot_members.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![one.id.as_str()]);
        assert_eq!(hot_members[0].relationship_id, hot);
        assert!(group_list(&mut customers, &group.id, &new).await.is_empty(), "no longer listed under NEW");
        assert_eq!(listed_in(&mut customers, &group.id, &one.id).await.expect("listed").relationship_id, hot);

        // BatchChangeRelationship of two customers whose records are cached.
        let two = create_customer(&mut customers, in_groups("Hai", &[&group])).await;
        let three = create_customer(&mut customers, in_groups("Ba", &[&group])).await;
        for id in [&one.id, &two.id, &three.id] {
            get_customer(&mut customers, id).await;
        }
        assert_eq!(group_list(&mut customers, &group.id, "").await.len(), 3);
        let batch = customers
            .batch_change_relationship(BatchChangeRelationshipRequest {
                customer_ids: vec![two.id.clone(), three.id.clone()],
                relationship_id: potential.clone(),
                reason: String::new(),
            })
            .await
            .expect("batch change relationship")
            .into_inner();
        assert_eq!(batch.changes.len(), 2);
        for id in [&two.id, &three.id] {
            assert_eq!(get_customer(&mut customers, id).await.relationship_id, potential, "Get shows the batch's relationship");
        }
        assert_eq!(get_customer(&mut customers, &one.id).await.relationship_id, hot, "the customer left out keeps its relationship");
        let listed = group_list(&mut customers, &group.id, "").await;
        assert_eq!(listed.len(), 3);
        for c in &listed {
            let expected = if c.id == one.id { &hot } else { &potential };
            assert_eq!(&c.relationship_id, expected, "group list: {}", c.name);
        }
        let potentials: BTreeSet<String> = group_list(&mut customers, &group.id, &potential).await.into_iter().map(|c| c.id).collect();
        assert_eq!(potentials, BTreeSet::from([two.id.clone(), three.id.clone()]));
        assert!(group_list(&mut customers, &group.id, &new).await.is_empty());
    }

    async fn membership_changes_are_seen_by_the_next_get_and_group_list(app: TestApp) {
        let mut customers = app.customers();
        let home = new_group(&app, "Miền Bắc").await;
        let extra = new_group(&app, "Khách sỉ").await;
        let c = create_customer(&mut customers, in_groups("Phạm Dũng", &[&home])).await;
        assert_eq!(group_set(&get_customer(&mut customers, &c.id).await), set_of(&[&home]));
        assert_eq!(group_set(&listed_in(&mut customers, &home.id, &c.id).await.expect("listed in home")), set_of(&[&home]));
        assert!(listed_in(&mut customers, &extra.id, &c.id).await.is_none());

        let added = customers
            .add_customers_to_group(AddCustomersToGroupRequest { group_id: extra.id.clone(), customer_ids: vec![c.id.clone()] })
            .await
            .expect("add to group")
            .into_inner();
        assert_eq!(added.added_count, 1);
        assert_eq!(group_set(&get_customer(&mut customers, &c.id).await), set_of(&[&home, &extra]), "Get shows the added group");
        let in_extra = listed_in(&mut customers, &extra.id, &c.id).await.expect("listed in the added group");
        assert_eq!(group_set(&in_extra), set_of(&[&home, &extra]));
        let in_home = listed_in(&mut customers, &home.id, &c.id).await.expect("still listed in home");
        assert_eq!(group_set(&in_home), set_of(&[&home, &extra]), "the other group's list shows the added group");

        let removed = customers
            .remove_customers_from_group(RemoveCustomersFromGroupRequest { group_id: extra.id.clone(), customer_ids: vec![c.id.clone()] })
            .await
            .expect("remove from group")
            .into_inner();
        assert_eq!(removed.removed_count, 1);
        assert_eq!(group_set(&get_customer(&mut customers, &c.id).await), set_of(&[&home]), "Get no longer shows the removed group");
        assert!(listed_in(&mut customers, &extra.id, &c.id).await.is_none(), "no longer listed in the removed group");
        let in_home = listed_in(&mut customers, &home.id, &c.id).await.expect("still listed in home");
        assert_eq!(group_set(&in_home), set_of(&[&home]), "the other group's list no longer shows the removed group");
    }

    async fn deleting_and_restoring_a_group_is_seen_by_the_next_get(app: TestApp) {
        let mut customers = app.customers();
        let stays = new_group(&app, "Đà Nẵng").await;
        let goes = new_group(&app, "Hội chợ 2026").await;
        let c = create_customer(&mut customers, in_groups("Võ Thị Hoa", &[&stays, &goes])).await;
        assert_eq!(group_set(&get_customer(&mut customers, &c.id).await), set_of(&[&stays, &goes]));
        assert_eq!(group_set(&listed_in(&mut customers, &stays.id, &c.id).await.expect("listed")), set_of(&[&stays, &goes]));

        app.groups()
            .delete_group(DeleteGroupRequest { id: goes.id.clone(), etag: String::new(), cascade: false })
            .await
            .expect("delete group");
        assert_eq!(group_set(&get_customer(&mut customers, &c.id).await), set_of(&[&stays]), "Get no longer lists the deleted group");
        assert_eq!(
            group_set(&listed_in(&mut customers, &stays.id, &c.id).await.expect("still listed")),
            set_of(&[&stays]),
            "the other group's list no longer shows the deleted group"
        );

        app.groups()
            .restore_group(RestoreGroupRequest { id: goes.id.clone(), etag: String::new() })
            .await
            .expect("restore group");
        assert_eq!(group_set(&get_customer(&mut customers, &c.id).await), set_of(&[&stays, &goes]), "Get lists the restored group again");
        assert_eq!(group_set(&listed_in(&mut customers, &stays.id, &c.id).await.expect("still listed")), set_of(&[&stays, &goes]));
        assert_eq!(group_set(&listed_in(&mut customers, &goes.id, &c.id).await.expect("listed in the restored group")), set_of(&[&stays, &goes]));
    }

    async fn a_recorded_contact_is_seen_by_the_next_get_and_group_list(app: TestApp) {
        let mut customers = app.customers();
        let group = new_group(&app, "Gọi lại").await;
        let c = create_customer(&mut customers, in_groups("Hoàng Minh", &[&group])).await;
        let before = get_customer(&mut customers, &c.id).await;
        assert!(before.last_contact_time.is_none());
        assert!(listed_in(&mut customers, &group.id, &c.id).await.expect("listed").last_contact_time.is_none());

        app.clock.advance(chrono::Duration::hours(2));
        let recorded = customers
            .record_contact(RecordContactRequest { customer_id: c.id.clone(), channel: ContactChannel::Call.into(), note: "hẹn tuần sau".into(), contact_time: None })
            .await
            .expect("record contact")
            .into_inner();
        let contact_time = recorded.contact.expect("contact").contact_time.expect("contact_time");
        let after = get_customer(&mut customers, &c.id).await;
        assert_eq!(after.last_contact_time, Some(contact_time), "Get shows the contact");
        assert_eq!(after.etag, recorded.customer.expect("customer").etag);
        let listed = listed_in(&mut customers, &group.id, &c.id).await.expect("listed");
        assert_eq!(listed.last_contact_time, Some(contact_time), "the group list shows the contact");
    }

    async fn deleting_a_relationship_with_reassignment_is_seen_by_the_next_get(app: TestApp) {
        let mut customers = app.customers();
        let rels = relationships(&mut app.relationships()).await;
        let (hot, closed) = (rel(&rels, "HOT"), rel(&rels, "CLOSED"));
        let group = new_group(&app, "Dự án").await;
        let c = create_customer(&mut customers, Customer { relationship_id: hot.clone(), ..in_groups("Đỗ Quang", &[&group]) }).await;
        let before = get_customer(&mut customers, &c.id).await;
        assert_eq!(before.relationship_id, hot);
        assert_eq!(group_list(&mut customers, &group.id, &hot).await.len(), 1);

        let deleted = app
            .relationships()
            .delete_relationship(DeleteRelationshipRequest { id: hot.clone(), etag: String::new(), reassign_to_id: closed.clone() })
            .await
            .expect("delete relationship")
            .into_inner();
        assert_eq!(deleted.reassigned_customer_count, 1);
        let after = get_customer(&mut customers, &c.id).await;
        assert_eq!(after.relationship_id, closed, "Get shows the reassigned relationship");
        assert_ne!(after.etag, before.etag);
        let listed = group_list(&mut customers, &group.id, &closed).await;
        assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![c.id.as_str()]);
        assert_eq!(listed[0].relationship_id, closed);
        assert_eq!(listed_in(&mut customers, &group.id, &c.id).await.expect("listed").relationship_id, closed);
    }

    async fn deleting_and_restoring_a_customer_is_seen_by_the_next_get(app: TestApp) {
        let mut customers = app.customers();
        let group = new_group(&app, "Tạm ngưng").await;
        let c = create_customer(&mut customers, in_groups("Bùi Lan", &[&group])).await;
        let before = get_customer(&mut customers, &c.id).await;
        assert!(before.delete_time.is_none());
        assert!(listed_in(&mut customers, &group.id, &c.id).await.is_some());

        let deleted = customers
            .delete_customer(DeleteCustomerRequest { id: c.id.clone(), etag: String::new() })
            .await
            .expect("delete customer")
            .into_inner()
            .customer
            .expect("customer");
        let after = get_customer(&mut customers, &c.id).await;
        assert!(after.delete_time.is_some(), "Get shows the deletion");
        assert_eq!(after.delete_time, deleted.delete_time);
        assert_eq!(after.etag, deleted.etag);
        assert!(listed_in(&mut customers, &group.id, &c.id).await.is_none(), "a deleted customer leaves the group list");

        let restored = customers
            .restore_customer(RestoreCustomerRequest { id: c.id.clone(), etag: String::new() })
            .await
            .expect("restore customer")
            .into_inner()
            .customer
            .expect("customer");
        let after = get_customer(&mut customers, &c.id).await;
        assert!(after.delete_time.is_none(), "Get shows the restore");
        assert_eq!(after.etag, restored.etag);
        let listed = listed_in(&mut customers, &group.id, &c.id).await.expect("back in the group list");
        assert!(listed.delete_time.is_none());
    }

    async fn a_cached_record_is_never_served_to_another_tenant(app: TestApp) {
        let mut mine = app.customers();
        let group = new_group(&app, "Riêng").await;
        let c = create_customer(&mut mine, in_groups("Khách riêng", &[&group])).await;
        assert_eq!(get_customer(&mut mine, &c.id).await.name, "Khách riêng");
        assert!(listed_in(&mut mine, &group.id, &c.id).await.is_some());

        let other = new_tenant();
        let mut theirs = app.customers_of(&other);
        for _ in 0..3 {
            expect_code(theirs.get_customer(GetCustomerRequest { id: c.id.clone() }).await, Code::NotFound);
        }
        // The other tenant's misses neither hide nor replace the record.
        assert_eq!(get_customer(&mut mine, &c.id).await.name, "Khách riêng");
        expect_code(theirs.get_customer(GetCustomerRequest { id: c.id.clone() }).await, Code::NotFound);
        expect_code(
            theirs.change_relationship(ChangeRelationshipRequest { customer_id: c.id.clone(), relationship_id: rel(&relationships(&mut app.relationships()).await, "HOT"), reason: String::new(), etag: String::new() }).await,
            Code::NotFound,
        );
    }

    async fn the_last_write_wins_over_concurrent_reads(app: TestApp) {
        let rels = relationships(&mut app.relationships()).await;
        let targets = [rel(&rels, "APPROACHED"), rel(&rels, "HOT")];
        let group = new_group(&app, "Đua").await;
        let c = create_customer(&mut app.customers(), in_groups("Khách đua", &[&group])).await;
        let initial = get_customer(&mut app.customers(), &c.id).await;

        // The etags of the writes acknowledged so far, in order.
        let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
        let writing = Arc::new(AtomicBool::new(true));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (mut client, id, writing, acknowledged) = (app.customers(), c.id.clone(), writing.clone(), acknowledged.clone());
            readers.push(tokio::spawn(async move {
                // (writes acknowledged before the read began, etag read)
                let mut seen = Vec::new();
                while writing.load(Ordering::Acquire) {
                    let before = acknowledged.lock().unwrap().len();
                    seen.push((before, get_customer(&mut client, &id).await.etag));
                }
                seen
            }));
        }
        let writer = {
            let (mut client, id, targets, acknowledged) = (app.customers(), c.id.clone(), targets.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..30 {
                    let customer = change(&mut client, &id, &targets[i % 2]).await;
                    acknowledged.lock().unwrap().push(customer.etag.clone());
                    written.push(customer);
                }
                written
            })
        };
        let written = writer.await.expect("writer");
        writing.store(false, Ordering::Release);

        // Version 0 is the created customer, version i + 1 write i's result.
        let mut versions = vec![(initial.etag.clone(), initial.relationship_id.clone())];
        versions.extend(written.iter().map(|w| (w.etag.clone(), w.relationship_id.clone())));
        let version_of = |etag: &str| versions.iter().position(|(e, _)| e == etag);
        let mut reads = 0;
        for reader in readers {
            for (before, etag) in reader.await.expect("reader") {
                let version = version_of(&etag).unwrap_or_else(|| panic!("a read saw etag {etag}, which no write produced"));
                assert!(version >= before, "a read begun after write {before} was acknowledged saw the older version {version}");
                reads += 1;
            }
        }
        assert!(reads > 0, "the readers ran");

        let last = written.last().expect("30 writes");
        let expected = &targets[29 % 2];
        assert_eq!(&last.relationship_id, expected);
        let mut customers = app.customers();
        for _ in 0..5 {
            let now = get_customer(&mut customers, &c.id).await;
            assert_eq!(&now.relationship_id, expected, "Get shows the last written relationship");
            assert_eq!(now.etag, last.etag, "Get shows the last written version");
        }
        let listed = group_list(&mut customers, &group.id, expected).await;
        assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![c.id.as_str()]);
        assert_eq!(listed[0].etag, last.etag);
        assert!(group_list(&mut customers, &group.id, &targets[0]).await.is_empty());
    }
}

/// Two servers on one PostgreSQL database: a write through either reaches the
/// other's record cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_reaches_the_other_replicas_cache() {
    let Some(url) = postgres_database_url() else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    // Each through a proxy that never goes silent, which tells when the
    // replica listens: from then on its cache is on.
    let (proxy_a, proxy_b) = (
        SilentProxy::start(&url).await,
        SilentProxy::start(&url).await,
    );
    let a = TestApp::spawn_on_url(Backend::Postgres, proxy_a.url.clone()).await;
    let mut b = TestApp::spawn_on_url(Backend::Postgres, proxy_b.url.clone()).await;
    b.tenant = a.tenant.clone();
    proxy_a.wait_for_listener().await;
    proxy_b.wait_for_listener().await;

    let rels = relationships(&mut a.relationships()).await;
    let (new, hot, closed) = (rel(&rels, "NEW"), rel(&rels, "HOT"), rel(&rels, "CLOSED"));
    let (mut via_a, mut via_b) = (a.customers(), b.customers());
    let c = create_customer(&mut via_a, named("Khách hai máy")).await;
    let seen_by_b = get_customer(&mut via_b, &c.id).await;
    assert_eq!(seen_by_b.relationship_id, new);
    assert_eq!(get_customer(&mut via_b, &c.id).await.etag, seen_by_b.etag);

    // Written through A, read through B.
    change(&mut via_a, &c.id, &hot).await;
    let renamed = rename(&mut via_a, &c.id, "Đổi tên qua A").await;
    let seen = poll_until(&mut via_b, &c.id, "A's rename through B", |x| {
        x.etag == renamed.etag
    })
    .await;
    assert_eq!(seen.relationship_id, hot, "B shows A's relationship change");
    assert_eq!(seen.name, "Đổi tên qua A", "B shows A's update");
    assert_eq!(seen.etag, renamed.etag);

    // Written through B, read through A (whose cache holds the record).
    assert_eq!(get_customer(&mut via_a, &c.id).await.etag, renamed.etag);
    let changed = change(&mut via_b, &c.id, &closed).await;
    let seen = poll_until(&mut via_a, &c.id, "B's change through A", |x| {
        x.etag == changed.etag
    })
    .await;
    assert_eq!(
        seen.relationship_id, closed,
        "A shows B's relationship change"
    );
    assert_eq!(seen.name, "Đổi tên qua A");
    assert_eq!(seen.etag, changed.etag);
}

/// A TCP proxy in front of PostgreSQL whose flows can go silent: a silent
/// flow forwards no byte in either direction, yet closes neither socket. To
/// both ends that is a network flow that died without a word. Its tasks end
/// when it is dropped.
pub(crate) struct SilentProxy {
    /// The database URL that goes through the proxy.
    url: String,
    state: Arc<ProxyState>,
    accepting: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    /// Every flow is silent, new ones too.
    all_silent: AtomicBool,
    flows: Mutex<Vec<Arc<Flow>>>,
    /// Told whenever a flow starts, or sees its listener registered or
    /// answered.
    changed: Notify,
}

/// One client connection and its upstream connection.
#[derive(Default)]
struct Flow {
    /// The client sent LISTEN on it: it carries an invalidation listener.
    listening: AtomicBool,
    /// The server answered since the client sent LISTEN: the listener is
    /// registered, and the replica turns its cache on.
    heard: AtomicBool,
    silent: AtomicBool,
}

impl ProxyState {
    fn is_silent(&self, flow: &Flow) -> bool {
        self.all_silent.load(Ordering::SeqCst) || flow.silent.load(Ordering::SeqCst)
    }

    /// Waits until `ready` holds of the flows, looking again each time one
    /// changes; whether it did within `limit`.
    async fn wait_for(&self, limit: Duration, ready: impl Fn(&[Arc<Flow>]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before looking, so no change between the look and
            // the wait is missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if ready(&self.flows.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
}

impl SilentProxy {
    /// Starts a proxy on 127.0.0.1 to the server of the PostgreSQL `url`.
    async fn start(url: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        // postgres://USER@HOST:PORT/DATABASE?…: HOST:PORT is replaced.
        let scheme_end = url.find("://").expect("a URL") + 3;
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let host_start = rest[..authority_end].rfind('@').map_or(0, |i| i + 1);
        let host_port = &rest[host_start..authority_end];
        let upstream = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:5432")
        };
        let through = format!(
            "{}127.0.0.1:{port}{}",
            &url[..scheme_end + host_start],
            &rest[authority_end..]
        );
        let state = Arc::new(ProxyState::default());
        let accepting = tokio::spawn(accept(listener, upstream, state.clone()));
        Self {
            url: through,
            state,
            accepting,
        }
    }

    /// Waits (at most 30 s, then fails the test) until a flow that is not
    /// silent carries a listener the server answered: the replica behind
    /// the proxy hears invalidations, and its cache is on (it turns it on
    /// as it reads that answer, well before its next call is served).
    async fn wait_for_listener(&self) {
        let state = &self.state;
        let heard = state
            .wait_for(Duration::from_secs(30), |flows| {
                flows
                    .iter()
                    .any(|f| f.heard.load(Ordering::SeqCst) && !state.is_silent(f))
            })
            .await;
        assert!(
            heard,
            "the replica behind the proxy did not listen within 30 s"
        );
    }

    /// Waits (at most `limit`) until something happens on the proxy: a
    /// flow starts, a listener registers or is answered, or the replica
    /// sends something into the silence (a probe of its listener, a
    /// reconnection, a read). Whether something did.
    async fn next_change(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.state.changed.notified())
            .await
            .is_ok()
    }

    /// Silences every flow, for good, and every flow opened from now on.
    fn silence_everything(&self) {
        self.state.all_silent.store(true, Ordering::SeqCst);
    }

    /// Silences, for good, the flows that carry a listener now (waiting up
    /// to 5 s for one); returns how many. Other flows, and flows opened from
    /// now on, keep forwarding.
    pub(crate) async fn silence_listeners(&self) -> usize {
        let listening = |f: &Arc<Flow>| f.listening.load(Ordering::SeqCst);
        self.state
            .wait_for(Duration::from_secs(5), |flows| flows.iter().any(listening))
            .await;
        let flows = self.state.flows.lock().unwrap();
        flows
            .iter()
            .filter(|f| listening(f))
            .inspect(|f| f.silent.store(true, Ordering::SeqCst))
            .count()
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every
        // pipe and so closes every socket.
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, upstream: String, state: Arc<ProxyState>) {
    let mut pipes = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        while pipes.try_join_next().is_some() {}
        let flow = Arc::new(Flow::default());
        state.flows.lock().unwrap().push(flow.clone());
        state.changed.notify_waiters();
        let (client_read, client_write) = client.into_split();
        if state.all_silent.load(Ordering::SeqCst) {
            // Nobody answers: hold the connection and swallow what comes.
            let state = state.clone();
            pipes.spawn(async move {
                let _keep_open = client_write;
                swallow(client_read, state).await;
            });
            continue;
        }
        let Ok(server) = TcpStream::connect(&upstream).await else {
            continue;
        };
        let (server_read, server_write) = server.into_split();
        let (to_server, to_client) = (
            Pipe {
                flow: flow.clone(),
                state: state.clone(),
                from_client: true,
            },
            Pipe {
                flow,
                state: state.clone(),
                from_client: false,
            },
        );
        pipes.spawn(to_server.run(client_read, server_write));
        pipes.spawn(to_client.run(server_read, client_write));
    }
}

/// Reads and drops whatever `from` sends, telling `state` of each piece;
/// never closes it.
async fn swallow(mut from: OwnedReadHalf, state: Arc<ProxyState>) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        state.changed.notify_waiters();
    }
    pending::<()>().await
}

/// One direction of a flow.
struct Pipe {
    flow: Arc<Flow>,
    state: Arc<ProxyState>,
    from_client: bool,
}

impl Pipe {
    /// Copies `from` to `to` until either ends; once the flow is silent it
    /// swallows what `from` sends and closes nothing.
    async fn run(self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            // 0: the end went away (or failed).
            let n: usize = from.read(&mut buffer).await.unwrap_or_default();
            if self.from_client {
                // A listener's connection goes back to the pool after an
                // UNLISTEN.
                let sent = |text: &[u8]| buffer[..n].windows(text.len()).any(|w| w == text);
                if sent(b"UNLISTEN") {
                    self.flow.listening.store(false, Ordering::SeqCst);
                    self.flow.heard.store(false, Ordering::SeqCst);
                } else if sent(b"LISTEN \"") {
                    self.flow.listening.store(true, Ordering::SeqCst);
                    self.state.changed.notify_waiters();
                }
            }
            if self.state.is_silent(&self.flow) {
                // Keep `to` open whatever `from` does.
                let _keep_open = to;
                if n > 0 {
                    self.state.changed.notify_waiters();
                    swallow(from, self.state.clone()).await;
                }
                return pending().await;
            }
            if n == 0 || to.write_all(&buffer[..n]).await.is_err() {
                return;
            }
            if !self.from_client
                && self.flow.listening.load(Ordering::SeqCst)
                && !self.flow.heard.swap(true, Ordering::SeqCst)
            {
                self.state.changed.notify_waiters();
            }
        }
    }
}

/// Servers A (straight to PostgreSQL) and B (through a proxy of its own)
/// on one database, both serving one tenant, and a customer created through
/// A whose record B has cached. `None` when PostgreSQL is not configured.
pub(crate) async fn a_replica_behind_a_proxy() -> Option<(TestApp, SilentProxy, TestApp, Customer)>
{
    let url = postgres_database_url()?;
    let a = TestApp::spawn(Backend::Postgres)
        .await
        .expect("PostgreSQL is configured");
    let proxy = SilentProxy::start(&url).await;
    let mut b = timeout(
        Duration::from_secs(30),
        TestApp::spawn_on_url(Backend::Postgres, proxy.url.clone()),
    )
    .await
    .expect("B starts through the proxy");
    b.tenant = a.tenant.clone();
    proxy.wait_for_listener().await;
    let c = create_customer(&mut a.customers(), named("Khách mất liên lạc")).await;
    let cached = timeout(
        Duration::from_secs(10),
        get_customer(&mut b.customers(), &c.id),
    )
    .await
    .expect("B answers while the proxy forwards");
    assert_eq!(cached.etag, c.etag);
    Some((a, proxy, b, cached))
}

/// How long a replica may take to notice that its listener went deaf and
/// switch its cache off before a test fails: ten times the second or so it
/// takes (a probe sent after 500 ms without a notice, given 500 ms to come
/// back).
const DEAF_NOTICED_WITHIN: Duration = Duration::from_secs(20);

/// How long a replica cut off from its database may take to answer a read
/// before a test fails: six times the 5 s its pool waits for a connection
/// before it fails the call as UNAVAILABLE.
const CUT_OFF_READ_ANSWERED_WITHIN: Duration = Duration::from_secs(30);

/// Everything between server B and PostgreSQL goes silent: its invalidation
/// listener hears nothing more, and neither do its other connections. B must
/// notice (its listener probes itself after a short quiet) and stop serving
/// the records it cached, so a change written through A is not hidden behind
/// B's cached copy for longer than that. Until it notices B may serve the
/// copy; then every read must be answered with the change or fail as
/// UNAVAILABLE (its database is out of reach), never hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_stops_serving_its_cache() {
    let Some((a, proxy, b, cached)) = a_replica_behind_a_proxy().await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let hot = rel(&relationships(&mut a.relationships()).await, "HOT");
    assert_ne!(cached.relationship_id, hot);

    proxy.silence_everything();
    let changed = change(&mut a.customers(), &cached.id, &hot).await;

    let cut_off = Instant::now();
    let mut stale_reads = 0;
    loop {
        let request = GetCustomerRequest {
            id: cached.id.clone(),
        };
        let read = timeout(CUT_OFF_READ_ANSWERED_WITHIN, b.customers().get_customer(request))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "B, cut off from its database, neither answered nor failed a read within {CUT_OFF_READ_ANSWERED_WITHIN:?}"
                )
            });
        match read {
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::Unavailable,
                    "B, cut off from its database, failed a read with {status:?}"
                );
                break;
            }
            Ok(response) => {
                let seen = response.into_inner().customer.expect("customer");
                if seen.etag == changed.etag {
                    assert_eq!(seen.relationship_id, hot);
                    break;
                }
                assert_eq!(seen.etag, cached.etag, "B served a version no write made");
                stale_reads += 1;
                assert!(
                    cut_off.elapsed() < DEAF_NOTICED_WITHIN,
                    "B still served the record it cached {:?} after it was cut off ({stale_reads} reads)",
                    cut_off.elapsed()
                );
                // Read again once B sends something more towards its
                // database: its listener's probe, then (the probe lost, its
                // cache off) its attempt to listen again.
                proxy
                    .next_change(DEAF_NOTICED_WITHIN.saturating_sub(cut_off.elapsed()))
                    .await;
            }
        }
    }
    drop(b);
    drop(proxy);
}

/// Only the flow of server B's invalidation listener goes silent; its other
/// connections keep working. B must notice within a second or so, switch its
/// cache off and listen again on a new connection, its cache starting empty,
/// so the next read after A's change shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_listener_alone_goes_deaf_stops_serving_its_cache() {
    let Some((a, proxy, b, cached)) = a_replica_behind_a_proxy().await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let hot = rel(&relationships(&mut a.relationships()).await, "HOT");
    assert_ne!(cached.relationship_id, hot);

    assert_eq!(
        proxy.silence_listeners().await,
        1,
        "B listens on one connection"
    );
    timeout(DEAF_NOTICED_WITHIN, proxy.wait_for_listener())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "B did not listen again within {DEAF_NOTICED_WITHIN:?} of its listener going deaf"
            )
        });
    let changed = change(&mut a.customers(), &cached.id, &hot).await;

    let seen = timeout(
        Duration::from_secs(8),
        get_customer(&mut b.customers(), &cached.id),
    )
    .await
    .expect("B answers: only its listener's flow is silent");
    assert_ne!(
        seen.etag, cached.etag,
        "B served the record it cached before its listener went deaf"
    );
    assert_eq!(seen.relationship_id, hot);
    assert_eq!(seen.etag, changed.etag);
    drop(b);
    drop(proxy);
}
