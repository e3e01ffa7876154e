//! Reports: every figure compared with a brute-force count over the rows
//! the test made through the API.

use std::collections::{BTreeMap, BTreeSet};

use crm_classify::pb::{Customer, DeleteGroupRequest, GetGroupOverlapRequest};
use tonic::Code;

use crate::fixtures::{create_customer, delete_customer, named, new_group, unknown_id};
use crate::helpers::{expect_code, violated_fields};
use crate::on_both_databases;

on_both_databases! {
    async fn group_overlap_equals_a_count_of_the_memberships(app: TestApp) {
        let groups = [
            new_group(&app, "Khách VIP").await.id,
            new_group(&app, "Hội chợ 2026").await.id,
            new_group(&app, "Đà Nẵng").await.id,
            new_group(&app, "Sẽ xoá").await.id,
            new_group(&app, "Trống").await.id,
        ];
        // Customer i is in group g when bit g of (i * 7 + 3) % 16 is set:
        // every pair shares some customers, none shares all.
        let mut members: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for i in 0..48usize {
            let bits = (i * 7 + 3) % 16;
            let in_groups: Vec<usize> = (0..4).filter(|g| bits & (1 << g) != 0).collect();
            let customer = create_customer(&mut app.customers(), Customer {
                group_ids: in_groups.iter().map(|&g| groups[g].clone()).collect(),
                ..named(&format!("Khách {i}"))
            })
            .await;
            // Every fifth customer is deleted: no longer counted.
            if i % 5 == 0 {
                delete_customer(&mut app.customers(), &customer.id).await;
                continue;
            }
            for g in in_groups {
                members.entry(g).or_default().insert(customer.id.clone());
            }
        }
        // A deleted group keeps its memberships for its restore.
        app.groups()
            .delete_group(DeleteGroupRequest { id: groups[3].clone(), ..Default::default() })
            .await
            .expect("delete group");
        let report = app
            .customers()
            .get_group_overlap(GetGroupOverlapRequest { group_ids: groups.to_vec() })
            .await
            .expect("overlap")
            .into_inner();
        let of = |g: usize| members.get(&g).cloned().unwrap_or_default();
        let sizes: Vec<(String, i64)> = report.groups.iter().map(|s| (s.group_id.clone(), s.customers)).collect();
        let expected: Vec<(String, i64)> = (0..5).map(|g| (groups[g].clone(), of(g).len() as i64)).collect();
        assert_eq!(sizes, expected);
        assert_eq!(report.pairs.len(), 10, "every pair once");
        let mut k = 0;
        for a in 0..5 {
            for b in a + 1..5 {
                let pair = &report.pairs[k];
                k += 1;
                assert_eq!((&pair.group_id_a, &pair.group_id_b), (&groups[a], &groups[b]));
                let both = of(a).intersection(&of(b)).count() as i64;
                let either = of(a).union(&of(b)).count() as i64;
                assert_eq!((pair.both, pair.either), (both, either), "groups {a} and {b}");
                let ratio = if either == 0 { 0.0 } else { both as f64 / either as f64 };
                assert!((pair.overlap_ratio - ratio).abs() < 1e-12, "{pair:?}");
                if a < 4 && b < 4 {
                    assert!(both > 0 && both < either, "the pattern makes every pair overlap in part: {pair:?}");
                }
            }
        }
    }

    async fn group_overlap_refuses_bad_group_lists(app: TestApp) {
        let a = new_group(&app, "A").await.id;
        let b = new_group(&app, "B").await.id;
        let ask = |ids: Vec<String>| {
            let mut client = app.customers();
            async move { client.get_group_overlap(GetGroupOverlapRequest { group_ids: ids }).await }
        };
        for ids in [vec![a.clone()], (0..21).map(|_| unknown_id()).collect()] {
            let status = expect_code(ask(ids).await, Code::InvalidArgument);
            assert_eq!(violated_fields(&status), ["group_ids"]);
        }
        let status = expect_code(ask(vec![a.clone(), b.clone(), a.clone()]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[2]"]);
        let status = expect_code(ask(vec![a.clone(), "not-an-id".into()]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[1]"]);
        let status = expect_code(ask(vec![a.clone(), unknown_id()]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[1]"]);
        // Another tenant's group is unknown here.
        let theirs = crate::fixtures::create_group(
            &mut app.groups_of(&crate::helpers::new_tenant()),
            crm_classify::pb::Group { name: "Của người khác".into(), ..Default::default() },
        )
        .await
        .id;
        let status = expect_code(ask(vec![theirs, a]).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["group_ids[0]"]);
    }
}
