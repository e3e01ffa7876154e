//! The rule groups of a tenant as the write path evaluates them: each
//! active group's rule parsed (once per rule text, whichever replica or
//! request saw it first), what the rules' names mean now, and the order to
//! evaluate them in — a rule that refers to other groups after those
//! groups' own rules, so one write settles every membership at once.
//!
//! A rule may refer to other groups (`in_group` takes in the group's
//! subtree), but never to itself through a chain of rules: [`check_rule`]
//! refuses such a rule when it is set, naming the cycle.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::filter::meaning_of;
use crate::{
    domain::filter::{self, Filter, Reads, eval::Meaning},
    entity::customer_group::{Column, Entity},
    entity::tenant,
    error::{AppError, AppResult},
    store::{WriteTx, lock_scope, lock_scope_shared},
};

/// The advisory-lock scope of what a tenant's rules mean: their texts,
/// the groups they name (the tree, deletions) and the codes they name.
/// Every customer write holds it shared from loading the rules to its
/// commit (so it evaluates the rules that are stored when it commits), as
/// does every batch of a background evaluation; a change to what rules
/// mean holds it exclusively, after its catalog's own scope.
const RULES_SCOPE: &str = "group-rules";

/// Holds the tenant's rules as they are until the transaction ends.
pub async fn hold_rules(tx: &impl ConnectionTrait, tenant: &str) -> AppResult<()> {
    lock_scope_shared(tx, tenant, RULES_SCOPE).await
}

/// Waits until no write is following the tenant's rules, and keeps new
/// ones waiting until the transaction ends: for a change to what the rules
/// mean (a rule, the group tree, a code). Bumps the tenant's rules
/// version, so every replica's cached rule set of the tenant is stale.
pub async fn lock_rules(tx: &WriteTx, tenant: &str) -> AppResult<()> {
    lock_scope(tx, tenant, RULES_SCOPE).await?;
    tx.rules_changed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::RulesVersion,
            Expr::col(tenant::Column::RulesVersion).add(1),
        )
        .filter(tenant::Column::Id.eq(tenant))
        .exec(tx)
        .await?;
    Ok(())
}

/// Each tenant's rule set as last loaded, with the rules version it was
/// loaded at; shared by a store's clones.
#[derive(Clone, Default)]
pub struct RuleSets(Arc<Mutex<HashMap<String, Versioned>>>);

/// A rule set and the rules version it was loaded at.
type Versioned = (i64, Arc<RuleSet>);

impl RuleSets {
    /// Tenants kept; past it the cache starts again empty.
    const KEPT: usize = 10_000;

    fn get(&self, tenant: &str, version: i64) -> Option<Arc<RuleSet>> {
        let sets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sets.get(tenant)
            .filter(|(v, _)| *v == version)
            .map(|(_, set)| set.clone())
    }

    fn put(&self, tenant: &str, version: i64, set: Arc<RuleSet>) {
        let mut sets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if sets.len() >= Self::KEPT {
            sets.clear();
        }
        sets.insert(tenant.to_owned(), (version, set));
    }
}

/// Parsed rules kept, by text; cleared when it grows past this.
const PARSED_KEPT: usize = 10_000;

/// One rule group.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// The group.
    pub id: String,
    /// Its code (to name it in errors).
    pub code: String,
    /// Its rule.
    pub filter: Arc<Filter>,
    /// What the rule reads of a customer.
    pub reads: Reads,
}

/// A tenant's active rule groups, in evaluation order, with what their
/// names mean at one moment.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Dependencies first.
    pub groups: Vec<RuleGroup>,
    /// The names of every rule, resolved once.
    pub meaning: Meaning,
}

impl RuleSet {
    /// The tenant's active rule groups, as of `now`: the cached set when
    /// the tenant's rules version says it is current (one read), else read
    /// and cached. The caller holds the rules steady ([`hold_rules`]).
    pub async fn load(tx: &WriteTx, tenant: &str, now: i64) -> AppResult<Self> {
        let version: Option<i64> = tenant::Entity::find_by_id(tenant.to_owned())
            .select_only()
            .column(tenant::Column::RulesVersion)
            .into_tuple()
            .one(tx)
            .await?;
        let Some(version) = version else {
            return Ok(Self::default());
        };
        let changing = tx.rules_changed.load(std::sync::atomic::Ordering::Relaxed);
        let set = match tx.rule_sets.get(tenant, version).filter(|_| !changing) {
            Some(set) => set,
            None => {
                let rows = stored_rules(tx, tenant).await?;
                let set = Arc::new(Self::of(tx, tenant, now, rows).await?);
                // Not what this transaction is changing: it may roll back.
                if !changing {
                    tx.rule_sets.put(tenant, version, set.clone());
                }
                set
            }
        };
        let mut set = RuleSet::clone(&set);
        set.meaning.now = now;
        Ok(set)
    }

    /// A rule set of `rows` (id, code, rule text), ordered; with a cycle,
    /// in the order found so far and then by id (a cycle made by moving
    /// groups; setting a rule refuses one).
    async fn of(
        db: &impl ConnectionTrait,
        tenant: &str,
        now: i64,
        rows: Vec<(String, String, String)>,
    ) -> AppResult<Self> {
        if rows.is_empty() {
            return Ok(Self::default());
        }
        let (groups, meaning) = rule_groups(db, tenant, now, rows, None).await?;
        let (ordered, _) = order(groups, &meaning);
        Ok(Self {
            groups: ordered,
            meaning,
        })
    }

    /// Whether the tenant has no active rule group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The rule group `id`, when it is one.
    pub fn get(&self, id: &str) -> Option<&RuleGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// What any of the rules reads.
    pub fn reads(&self) -> Reads {
        self.groups
            .iter()
            .fold(Reads::NONE, |reads, g| reads.with(g.reads))
    }
}

/// (id, code, rule) of the tenant's active groups that have a rule, by id.
async fn stored_rules(
    db: &impl ConnectionTrait,
    tenant: &str,
) -> AppResult<Vec<(String, String, String)>> {
    Ok(Entity::find()
        .filter(Column::TenantId.eq(tenant))
        .filter(Column::DeleteTime.is_null())
        .filter(Column::Rule.ne(""))
        .select_only()
        .column(Column::Id)
        .column(Column::Code)
        .column(Column::Rule)
        .into_tuple()
        .all(db)
        .await?)
}

/// The rule groups of `rows` (id, code, rule text; one of them given
/// already parsed), and what all their names mean at `now`.
async fn rule_groups(
    db: &impl ConnectionTrait,
    tenant: &str,
    now: i64,
    rows: Vec<(String, String, String)>,
    parsed_already: Option<(&str, Filter)>,
) -> AppResult<(Vec<RuleGroup>, Meaning)> {
    let mut groups = Vec::with_capacity(rows.len());
    for (id, code, text) in rows {
        let filter = match &parsed_already {
            Some((given, filter)) if *given == id => Arc::new(filter.clone()),
            _ => parsed(&text)?,
        };
        groups.push(RuleGroup {
            id,
            code,
            reads: filter.reads(),
            filter,
        });
    }
    let all = Filter::And(groups.iter().map(|g| (*g.filter).clone()).collect());
    let meaning = meaning_of(db, tenant, &all, now).await?;
    Ok((groups, meaning))
}

/// The stored rule `text` parsed, once per text whoever asks; INTERNAL if
/// it does not parse (rules are checked when set).
pub(super) fn parsed(text: &str) -> AppResult<Arc<Filter>> {
    static PARSED: OnceLock<Mutex<HashMap<String, Arc<Filter>>>> = OnceLock::new();
    let cache = PARSED.get_or_init(Mutex::default);
    if let Some(found) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(text) {
        return Ok(found.clone());
    }
    let filter = Arc::new(
        filter::parse(text)
            .map_err(|e| AppError::Internal(format!("a stored rule does not parse: {e}")))?,
    );
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= PARSED_KEPT {
        cache.clear();
    }
    cache.insert(text.to_owned(), filter.clone());
    Ok(filter)
}

/// The groups each rule group's result depends on: the groups its rule
/// names, `in_group` ones with their active subgroups.
fn dependencies(group: &RuleGroup, meaning: &Meaning) -> HashSet<String> {
    let mut found = HashSet::new();
    for named in group.filter.groups_named() {
        match meaning.subtrees.get(named) {
            Some(subtree) => found.extend(subtree.iter().cloned()),
            // `group_ids:"ID"` names one group by id.
            None => {
                found.insert(named.to_owned());
            }
        }
    }
    found
}

/// `groups` with every rule group after the rule groups it depends on; and
/// a cycle, when there is one (its groups in order, the first repeated at
/// the end).
fn order(groups: Vec<RuleGroup>, meaning: &Meaning) -> (Vec<RuleGroup>, Option<Vec<String>>) {
    let ids: HashSet<String> = groups.iter().map(|g| g.id.clone()).collect();
    // Only dependencies on rule groups order anything.
    let mut waits: BTreeMap<String, HashSet<String>> = groups
        .iter()
        .map(|g| {
            let on: HashSet<String> = dependencies(g, meaning)
                .into_iter()
                .filter(|d| ids.contains(d))
                .collect();
            (g.id.clone(), on)
        })
        .collect();
    let mut by_id: BTreeMap<String, RuleGroup> =
        groups.into_iter().map(|g| (g.id.clone(), g)).collect();
    let mut ordered = Vec::with_capacity(by_id.len());
    loop {
        let ready: Vec<String> = waits
            .iter()
            .filter(|(_, on)| on.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for id in ready {
            waits.remove(&id);
            for on in waits.values_mut() {
                on.remove(&id);
            }
            ordered.extend(by_id.remove(&id));
        }
    }
    let cycle = cycle_in(&waits);
    ordered.extend(by_id.into_values());
    (ordered, cycle)
}

/// A cycle among `waits` (each left group waits on at least one other left
/// group, so following any wait leads back round).
fn cycle_in(waits: &BTreeMap<String, HashSet<String>>) -> Option<Vec<String>> {
    let start = waits.keys().next()?.clone();
    let mut path = vec![start.clone()];
    let mut current = start;
    loop {
        let mut next: Vec<&String> = waits.get(&current)?.iter().collect();
        next.sort();
        let next = (*next.first()?).clone();
        if let Some(at) = path.iter().position(|p| *p == next) {
            let mut cycle = path.split_off(at);
            cycle.push(next);
            return Some(cycle);
        }
        path.push(next.clone());
        current = next;
    }
}

/// INVALID_ARGUMENT on `field` when the tenant's stored rules refer to
/// themselves through a chain of rules (after a group moved or was
/// restored into a subtree some rule takes in).
pub async fn ensure_acyclic(
    db: &impl ConnectionTrait,
    tenant: &str,
    now: i64,
    field: &str,
) -> AppResult<()> {
    let rows = stored_rules(db, tenant).await?;
    refuse_cycle(db, tenant, now, rows, None, field).await
}

/// Checks a rule about to be set on group `group_id` (or on a new group,
/// `None`): every group it names exists in the tenant (deleted ones match
/// nobody until restored), and no chain of rules leads from the group back
/// to itself. INVALID_ARGUMENT on `field` otherwise; the rule parsed when
/// it passes.
pub async fn check_rule(
    db: &impl ConnectionTrait,
    tenant: &str,
    group_id: Option<&str>,
    rule: &str,
    field: &str,
    now: i64,
) -> AppResult<Filter> {
    let filter = filter::parse_field(rule, field)?;
    let named = filter.groups_named();
    if !named.is_empty() {
        let found: Vec<(String, String)> = Entity::find()
            .filter(Column::TenantId.eq(tenant))
            .filter(
                Condition::any()
                    .add(Column::Id.is_in(named.iter().copied()))
                    .add(Column::Code.is_in(named.iter().copied())),
            )
            .select_only()
            .column(Column::Id)
            .column(Column::Code)
            .into_tuple()
            .all(db)
            .await?;
        if let Some(unknown) = named
            .iter()
            .find(|n| !found.iter().any(|(id, code)| id == *n || code == *n))
        {
            return Err(AppError::invalid(
                field,
                format!("refers to group `{unknown}`, which the tenant does not have"),
            ));
        }
    }
    let Some(group_id) = group_id else {
        // A new group: no rule can refer to it yet.
        return Ok(filter);
    };
    let mut rows: Vec<(String, String, String)> = stored_rules(db, tenant)
        .await?
        .into_iter()
        .filter(|(id, _, _)| id != group_id)
        .collect();
    let code: Option<String> = Entity::find_by_id(group_id.to_owned())
        .select_only()
        .column(Column::Code)
        .into_tuple()
        .one(db)
        .await?;
    rows.push((
        group_id.to_owned(),
        code.unwrap_or_default(),
        rule.to_owned(),
    ));
    refuse_cycle(
        db,
        tenant,
        now,
        rows,
        Some((group_id, filter.clone())),
        field,
    )
    .await?;
    Ok(filter)
}

/// INVALID_ARGUMENT on `field` naming a cycle among the rules `rows` (id,
/// code, text), one of them given already parsed.
async fn refuse_cycle(
    db: &impl ConnectionTrait,
    tenant: &str,
    now: i64,
    rows: Vec<(String, String, String)>,
    parsed_already: Option<(&str, Filter)>,
    field: &str,
) -> AppResult<()> {
    let (groups, meaning) = rule_groups(db, tenant, now, rows, parsed_already).await?;
    let codes: HashMap<String, String> = groups
        .iter()
        .map(|g| (g.id.clone(), g.code.clone()))
        .collect();
    if let (_, Some(cycle)) = order(groups, &meaning) {
        let named: Vec<&str> = cycle
            .iter()
            .map(|id| codes.get(id).map_or(id.as_str(), String::as_str))
            .collect();
        return Err(AppError::invalid(
            field,
            format!(
                "would make the rules refer to themselves: {}",
                named.join(" → ")
            ),
        ));
    }
    Ok(())
}
