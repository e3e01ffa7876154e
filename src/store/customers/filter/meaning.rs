//! What the names in a filter mean in one tenant at one moment, read once
//! before evaluating it (in SQL or in memory): source and relationship
//! codes to ids (deleted entries included: a customer may still hold
//! one), each `in_group` argument — an id or a code — to the group and its
//! active subgroups (nobody when the group is deleted or unknown), and the
//! time `ago(…)` counts back from.

use std::collections::{BTreeSet, HashMap, HashSet};

use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::{
    domain::filter::{Comparison, Field, Filter, Value, eval::Meaning},
    entity::{customer_group, customer_source, relationship},
    error::AppResult,
    store::{
        catalogs::groups::{active_edges, descendants_in},
        resource::{Resource, in_tenant},
    },
};

/// The names `filter` uses, by what they name.
#[derive(Default)]
struct Names {
    sources: BTreeSet<String>,
    relationships: BTreeSet<String>,
    groups: BTreeSet<String>,
}

fn collect(filter: &Filter, names: &mut Names) {
    match filter {
        Filter::All | Filter::Present(_) => {}
        Filter::And(parts) | Filter::Or(parts) => {
            parts.iter().for_each(|part| collect(part, names));
        }
        Filter::Not(inner) => collect(inner, names),
        Filter::InGroup(group) => {
            names.groups.insert(group.clone());
        }
        Filter::Compare(Comparison {
            field,
            value: Value::Text(code),
            ..
        }) => match field {
            Field::Source => {
                names.sources.insert(code.clone());
            }
            Field::Relationship => {
                names.relationships.insert(code.clone());
            }
            _ => {}
        },
        Filter::Compare(_) => {}
    }
}

/// The meaning of `filter`'s names in `tenant`, evaluated at `now`
/// (microseconds). Reads nothing when the filter names nothing.
pub async fn meaning_of(
    db: &impl ConnectionTrait,
    tenant: &str,
    filter: &Filter,
    now: i64,
) -> AppResult<Meaning> {
    let mut names = Names::default();
    collect(filter, &mut names);
    let mut meaning = Meaning {
        now,
        ..Meaning::default()
    };
    meaning.sources = ids_by_code::<customer_source::Entity>(
        db,
        tenant,
        customer_source::Column::Code,
        names.sources,
    )
    .await?;
    meaning.relationships = ids_by_code::<relationship::Entity>(
        db,
        tenant,
        relationship::Column::Code,
        names.relationships,
    )
    .await?;
    if !names.groups.is_empty() {
        meaning.subtrees = subtrees(db, tenant, names.groups).await?;
    }
    Ok(meaning)
}

/// The ids of the tenant's entries (deleted ones included) whose `code`
/// column holds one of `codes`, by code.
async fn ids_by_code<E: Resource>(
    db: &impl ConnectionTrait,
    tenant: &str,
    code: E::Column,
    codes: BTreeSet<String>,
) -> AppResult<HashMap<String, String>> {
    if codes.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(in_tenant::<E>(tenant)
        .filter(code.is_in(codes))
        .select_only()
        .column(code)
        .column(E::id_col())
        .into_tuple::<(String, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// For each argument of `in_group`: the active group it names by id or
/// code and that group's active descendants; an empty set when it names
/// no active group.
async fn subtrees(
    db: &impl ConnectionTrait,
    tenant: &str,
    arguments: BTreeSet<String>,
) -> AppResult<HashMap<String, HashSet<String>>> {
    let named: Vec<(String, String)> = customer_group::Entity::find()
        .filter(customer_group::Column::TenantId.eq(tenant))
        .filter(customer_group::Column::DeleteTime.is_null())
        .filter(
            Condition::any()
                .add(customer_group::Column::Id.is_in(arguments.iter().cloned()))
                .add(customer_group::Column::Code.is_in(arguments.iter().cloned())),
        )
        .select_only()
        .column(customer_group::Column::Id)
        .column(customer_group::Column::Code)
        .into_tuple()
        .all(db)
        .await?;
    // The tree read once, whatever the number of arguments.
    let edges = active_edges(db, tenant).await?;
    let mut subtrees = HashMap::with_capacity(arguments.len());
    for argument in arguments {
        let mut ids = HashSet::new();
        if let Some((id, _)) = named
            .iter()
            .find(|(id, code)| *id == argument || *code == argument)
        {
            ids.insert(id.clone());
            ids.extend(descendants_in(&edges, id));
        }
        subtrees.insert(argument, ids);
    }
    Ok(subtrees)
}
