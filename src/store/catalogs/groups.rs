//! Customer groups: the tenant's group tree, with moves that can never make a
//! cycle, cascading soft delete, and restore of what a cascade took along.
//!
//! Every tree write of a tenant holds the tenant's tree lock for its whole
//! transaction, so two concurrent moves (A under B, B under A) are checked one
//! after the other and the second sees the first: no cycle can be committed.

use std::collections::{HashMap, VecDeque};

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use crate::store::{
    Store, WriteTx,
    catalogs::{self as catalog, CatalogActive, CreateEntry},
    customers::{
        self,
        evaluation::{self, start_reading},
        group_rules::{check_rule, ensure_acyclic, lock_rules},
    },
    lock_scope,
    resource::{self, Revisable, in_tenant},
};
use crate::{
    domain::{
        catalog::{EntryPatch, GroupPatch, IdempotencyKey, NewEntry, NewGroup, Target},
        filter::Reads,
        membership::{EvaluationState, MembershipCause},
        paging::{DeletedFilter, Page, PageRequest},
        tenant::TenantId,
        text,
    },
    entity::customer_group::{ActiveModel, Column, Entity, Model},
    error::{AppError, AppResult},
};

const TREE_SCOPE: &str = "group-tree";
/// The request field a group's rule arrives in.
const RULE_FIELD: &str = "group.rule";
/// Completes the message of a name taken among a group's siblings.
const SIBLINGS_WORDS: &str = " under the same parent";
/// Deeper than any real tree; stops a walk over corrupt data.
const MAX_DEPTH: usize = 10_000;

/// Rows sharing `parent` as their parent.
fn siblings_of(parent: Option<&str>) -> Condition {
    match parent {
        Some(p) => Condition::all().add(Column::ParentId.eq(p)),
        None => Condition::all().add(Column::ParentId.is_null()),
    }
}

/// The parent a group is placed under must exist and be active.
async fn ensure_usable_parent(
    tx: &impl ConnectionTrait,
    tenant: &str,
    parent_id: &str,
) -> AppResult<()> {
    let parent = resource::find::<Entity>(tx, tenant, parent_id).await?;
    resource::ensure_active::<Entity>(&parent, "placing groups under it")
}

/// INVALID_ARGUMENT when `group_id` is `new_parent` or one of its ancestors.
async fn ensure_no_cycle(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    new_parent: &str,
) -> AppResult<()> {
    let mut current = Some(new_parent.to_owned());
    for _ in 0..MAX_DEPTH {
        let Some(id) = current else {
            return Ok(());
        };
        if id == group_id {
            return Err(AppError::invalid(
                "group.parent_id",
                format!(
                    "moving group `{group_id}` under `{new_parent}` would make a cycle: `{new_parent}` is the group itself or one of its descendants"
                ),
            ));
        }
        current = in_tenant::<Entity>(tenant)
            .filter(Column::Id.eq(&id))
            .select_only()
            .column(Column::ParentId)
            .into_tuple::<Option<String>>()
            .one(tx)
            .await?
            .flatten();
    }
    Err(AppError::Internal(format!(
        "group tree of tenant {tenant} is deeper than {MAX_DEPTH}"
    )))
}

/// Active descendants of `root`, nearest first.
pub async fn active_descendants(
    tx: &impl ConnectionTrait,
    tenant: &str,
    root: &str,
) -> AppResult<Vec<String>> {
    let edges: Vec<(String, Option<String>)> = active_edges(tx, tenant).await?;
    Ok(descendants_in(&edges, root))
}

/// Every active group of the tenant with its parent.
pub async fn active_edges(
    db: &impl ConnectionTrait,
    tenant: &str,
) -> AppResult<Vec<(String, Option<String>)>> {
    Ok(in_tenant::<Entity>(tenant)
        .filter(Column::DeleteTime.is_null())
        .select_only()
        .column(Column::Id)
        .column(Column::ParentId)
        .into_tuple()
        .all(db)
        .await?)
}

/// The descendants of `root` among `edges` (id, parent), nearest first.
pub fn descendants_in(edges: &[(String, Option<String>)], root: &str) -> Vec<String> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, parent) in edges {
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(id);
        }
    }
    let mut found = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        for child in children.remove(id).unwrap_or_default() {
            found.push(child.to_owned());
            queue.push_back(child);
        }
    }
    found
}

/// Sets delete state and bumps the revision of `ids`.
async fn mark(
    tx: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
    delete_time: Option<i64>,
    deleted_with: Option<&str>,
    now: i64,
) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    Entity::update_many()
        .col_expr(Column::DeleteTime, Expr::value(delete_time))
        .col_expr(
            Column::DeletedWith,
            Expr::value(deleted_with.map(str::to_owned)),
        )
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .filter(Column::TenantId.eq(tenant))
        .filter(Column::Id.is_in(ids.iter().cloned()))
        .exec(tx)
        .await?;
    Ok(())
}

impl CreateEntry for Entity {
    const SCOPE: &'static str = TREE_SCOPE;
    const OPERATION: &'static str = "CreateGroup";
    type Input = NewGroup;

    fn entry(input: &NewGroup) -> &NewEntry {
        &input.entry
    }

    fn name_scope(input: &NewGroup) -> (Condition, &'static str) {
        (siblings_of(input.parent_id.as_deref()), SIBLINGS_WORDS)
    }

    async fn check(tx: &WriteTx, tenant: &str, input: &NewGroup) -> AppResult<()> {
        match &input.parent_id {
            Some(parent) => ensure_usable_parent(tx, tenant, parent).await,
            None => Ok(()),
        }
    }

    async fn insert_row(
        tx: &WriteTx,
        tenant: &str,
        id: &str,
        input: NewGroup,
        row: ActiveModel,
        now: i64,
    ) -> AppResult<Model> {
        let rule = input.rule;
        let inserted = ActiveModel {
            parent_id: Set(input.parent_id),
            deleted_with: Set(None),
            rule: Set(rule.clone()),
            ..row
        }
        .insert(tx)
        .await?;
        if rule.is_empty() {
            return Ok(inserted);
        }
        // Checked once the group is in the tree: a rule naming its parent's
        // subtree names the group itself.
        check_rule(tx, tenant, Some(id), &rule, RULE_FIELD, now).await?;
        evaluation::start(tx, tenant, id, MembershipCause::RuleChanged).await?;
        resource::find::<Entity>(tx, tenant, id).await
    }
}

impl Store {
    /// Creates a group.
    pub async fn create_group(
        &self,
        tenant: &TenantId,
        input: &NewGroup,
        key: Option<&IdempotencyKey>,
    ) -> AppResult<Model> {
        let group = self.create_entry::<Entity>(tenant, input, key).await?;
        self.evaluations().notify_one();
        Ok(group)
    }

    /// One group, deleted or not.
    pub async fn get_group(&self, tenant: &TenantId, id: &str) -> AppResult<Model> {
        resource::find::<Entity>(self.db(), tenant.as_str(), id).await
    }

    /// Groups ordered by name, then id; only `parent`'s children when given.
    pub async fn list_groups(
        &self,
        tenant: &TenantId,
        parent: Option<&str>,
        deleted: DeletedFilter,
        page: &PageRequest,
    ) -> AppResult<Page<Model>> {
        let tenant = tenant.as_str();
        let mut query = resource::with_deleted_filter(in_tenant::<Entity>(tenant), deleted);
        if let Some(parent) = parent {
            resource::find::<Entity>(self.db(), tenant, parent).await?;
            query = query.filter(Column::ParentId.eq(parent));
        }
        resource::list_by_name(self.db(), query, page).await
    }

    /// Applies `patch` to a group.
    pub async fn update_group(
        &self,
        tenant: &TenantId,
        target: &Target,
        patch: &GroupPatch,
    ) -> AppResult<Model> {
        let now = self.now();
        let tenant = tenant.as_str();
        let input = (target.clone(), patch.clone(), tenant.to_owned());
        self.write(input, move |tx, (target, patch, tenant)| {
            Box::pin(async move {
                lock_scope(tx, tenant, TREE_SCOPE).await?;
                lock_rules(tx, tenant).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
                resource::ensure_active::<Entity>(&row, "changing it")?;

                let parent = patch
                    .parent_id
                    .clone()
                    .unwrap_or_else(|| row.parent_id.clone());
                let moved = parent != row.parent_id;
                if moved && let Some(new_parent) = &parent {
                    ensure_no_cycle(tx, tenant, &row.id, new_parent).await?;
                    ensure_usable_parent(tx, tenant, new_parent).await?;
                }
                let name = patch.entry.name.clone().unwrap_or_else(|| row.name.clone());
                if moved || text::name_key(&name) != row.name_key {
                    catalog::ensure_name_free::<Entity>(
                        tx,
                        tenant,
                        &name,
                        siblings_of(parent.as_deref()),
                        SIBLINGS_WORDS,
                        Some(&row.id),
                    )
                    .await?;
                }
                if let Some(code) = &patch.entry.code {
                    catalog::ensure_code_free::<Entity>(tx, tenant, code, Some(&row.id)).await?;
                }
                let rule = patch.rule.clone().filter(|r| *r != row.rule);
                let recoded = patch.entry.code.as_ref().is_some_and(|c| *c != row.code);

                let revision = row.revision + 1;
                let id = row.id.clone();
                let mut active: ActiveModel = row.into();
                active.apply_entry(&EntryPatch {
                    name: Some(name),
                    ..patch.entry.clone()
                });
                active.parent_id = Set(parent);
                active.bump(revision, now);
                if let Some(rule) = &rule {
                    active.rule = Set(rule.clone());
                }
                active.update(tx).await?;
                match rule.as_deref() {
                    None => {}
                    Some("") => {
                        customers::write::rule_cleared(tx, tenant, &id).await?;
                        Entity::update_many()
                            .col_expr(
                                Column::EvaluationState,
                                Expr::value(EvaluationState::Current.as_str()),
                            )
                            .col_expr(Column::EvaluateTime, Expr::value(Option::<i64>::None))
                            .filter(Column::TenantId.eq(tenant))
                            .filter(Column::Id.eq(&id))
                            .exec(tx)
                            .await?;
                    }
                    Some(rule) => {
                        check_rule(tx, tenant, Some(&id), rule, RULE_FIELD, now).await?;
                        evaluation::start(tx, tenant, &id, MembershipCause::RuleChanged).await?;
                    }
                }
                if moved {
                    // Rules taking in a subtree may now take in another.
                    ensure_acyclic(tx, tenant, now, "group.parent_id").await?;
                }
                if moved || recoded {
                    // Rules naming the group by its old code now name none.
                    start_reading(tx, tenant, Reads::GROUPS, MembershipCause::RuleChanged, now)
                        .await?;
                }
                resource::find::<Entity>(tx, tenant, &id).await
            })
        })
        .await
        .inspect(|_| self.evaluations().notify_one())
    }

    /// Soft-deletes a group; with `cascade` its active subtree too. Returns
    /// the group and the ids of the descendants deleted with it.
    pub async fn delete_group(
        &self,
        tenant: &TenantId,
        target: &Target,
        cascade: bool,
    ) -> AppResult<(Model, Vec<String>)> {
        let now = self.now();
        let tenant = tenant.as_str();
        let input = (target.clone(), tenant.to_owned());
        self.write(input, move |tx, (target, tenant)| {
            Box::pin(async move {
                lock_scope(tx, tenant, TREE_SCOPE).await?;
                lock_rules(tx, tenant).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
                resource::ensure_not_yet_deleted::<Entity>(&row)?;
                let descendants = active_descendants(tx, tenant, &row.id).await?;
                if !descendants.is_empty() && !cascade {
                    return Err(AppError::precondition(
                        "HAS_ACTIVE_CHILDREN",
                        &row.id,
                        format!(
                            "group `{}` has {} active subgroup(s); delete them first or set cascade",
                            row.id,
                            descendants.len()
                        ),
                    ));
                }
                mark(tx, tenant, &descendants, Some(now), Some(&row.id), now).await?;
                mark(tx, tenant, std::slice::from_ref(&row.id), Some(now), None, now).await?;
                customers::write::groups_changed(tx).await?;
                // Rules naming these groups now match nobody through them.
                start_reading(tx, tenant, Reads::GROUPS, MembershipCause::RuleChanged, now)
                    .await?;
                let group = resource::find::<Entity>(tx, tenant, &row.id).await?;
                Ok((group, descendants))
            })
        })
        .await
        .inspect(|_| self.evaluations().notify_one())
    }

    /// Restores a deleted group and the descendants its cascading delete took
    /// along. Returns the group and the ids of the restored descendants.
    pub async fn restore_group(
        &self,
        tenant: &TenantId,
        target: &Target,
    ) -> AppResult<(Model, Vec<String>)> {
        let now = self.now();
        let tenant = tenant.as_str();
        let input = (target.clone(), tenant.to_owned());
        self.write(input, move |tx, (target, tenant)| {
            Box::pin(async move {
                lock_scope(tx, tenant, TREE_SCOPE).await?;
                lock_rules(tx, tenant).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
                resource::ensure_deleted::<Entity>(&row)?;
                if let Some(parent_id) = &row.parent_id {
                    let parent = resource::find::<Entity>(tx, tenant, parent_id).await?;
                    if parent.delete_time.is_some() {
                        return Err(AppError::precondition(
                            "PARENT_DELETED",
                            parent_id,
                            format!("the parent group `{parent_id}` is deleted; restore it first"),
                        ));
                    }
                }
                let taken_along = in_tenant::<Entity>(tenant)
                    .filter(Column::DeletedWith.eq(&row.id))
                    .filter(Column::DeleteTime.is_not_null())
                    .all(tx)
                    .await?;
                for group in std::iter::once(&row).chain(&taken_along) {
                    catalog::ensure_name_free::<Entity>(
                        tx,
                        tenant,
                        &group.name,
                        siblings_of(group.parent_id.as_deref()),
                        SIBLINGS_WORDS,
                        None,
                    )
                    .await?;
                }
                let restored: Vec<String> = taken_along.into_iter().map(|g| g.id).collect();
                mark(tx, tenant, &restored, None, None, now).await?;
                mark(tx, tenant, std::slice::from_ref(&row.id), None, None, now).await?;
                customers::write::groups_changed(tx).await?;
                // The restored groups' rules missed the writes made while
                // they were deleted; rules naming them match through them
                // again.
                for id in std::iter::once(&row.id).chain(&restored) {
                    let group = resource::find::<Entity>(tx, tenant, id).await?;
                    if !group.rule.is_empty() {
                        evaluation::start(tx, tenant, id, MembershipCause::RuleChanged).await?;
                    }
                }
                ensure_acyclic(tx, tenant, now, "id").await?;
                start_reading(tx, tenant, Reads::GROUPS, MembershipCause::RuleChanged, now).await?;
                let group = resource::find::<Entity>(tx, tenant, &row.id).await?;
                Ok((group, restored))
            })
        })
        .await
        .inspect(|_| self.evaluations().notify_one())
    }
}
