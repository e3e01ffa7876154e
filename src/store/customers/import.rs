//! Importing customers: each batch of rows in one transaction, each row
//! checked as the CreateCustomer or UpdateCustomer it stands for would be
//! (the same checks of `rules`, the same write path), a failed row left
//! out while the others commit.
//!
//! A batch is applied in *segments*: the rows up to the first one that
//! depends on an earlier row of the batch (it matches, or reuses a phone or
//! email of, a customer an earlier row created or changed) are checked
//! against one read of the stored state and written by one call of the
//! write path; the next segment reads the state again, the earlier
//! segments' writes included. So rows act exactly as if applied one after
//! the other, and a file without such repeats is one segment a batch.
//!
//! Every applied row is remembered in `imported_rows` under the import's
//! id (its request id, or one made up): a repeat of the import reports
//! those rows with their first outcome instead of applying them again, and
//! a later row whose phone or email an earlier row took names that row.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};

use super::{
    create::taken,
    records::{lock_customers, new_row, profile_of, with_groups},
    rules::{check_assignable_relationship, check_group_assignable, check_source_assignable},
    write::{self, Change, Move},
};
use crate::{
    domain::{
        change::{Cause, Origin},
        customer::{ATTRIBUTES_MAX, MAX_GROUPS_ON_CREATE, Profile},
        ids,
        import::{ImportOptions, ImportRow, MatchKey, Mode, Named, Outcome, RowFields, RowResult},
        membership::MembershipCause,
        tenant::RequestContext,
    },
    entity::{customer, customer_group, customer_source, imported_row, relationship},
    error::{AppError, AppResult},
    store::{Store, WriteTx, idempotency, lock_scope, resource::Resource},
};

/// The operation an import's request id is kept under.
const OPERATION: &str = "ImportCustomers";

/// An import under way: its options and the id its rows are remembered by.
#[derive(Debug, Clone)]
pub struct Import {
    /// The options.
    pub options: ImportOptions,
    /// The request id, or a made-up one.
    id: String,
    /// A dry run's memory of the phones and emails its earlier batches
    /// would have given new customers, with their rows (nothing was
    /// written, so the stored state cannot tell a later batch). It grows
    /// with the rows a dry run would create; a real import keeps nothing.
    dry_created: Option<Arc<Mutex<HashMap<String, i64>>>>,
}

impl Import {
    /// The row of an earlier batch of this dry run that would have created
    /// a customer with the phone or email `value`.
    fn dry_creator(&self, value: &str) -> Option<i64> {
        let memory = self.dry_created.as_ref()?;
        memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(value)
            .copied()
    }
}

impl Store {
    /// Starts an import: claims its request id (a repeat with other options
    /// is INVALID_ARGUMENT). A dry run claims nothing.
    pub async fn start_import(
        &self,
        ctx: &RequestContext,
        options: ImportOptions,
    ) -> AppResult<Import> {
        let key = options.key.clone().filter(|_| !options.dry_run);
        let Some(key) = key else {
            return Ok(Import {
                dry_created: options.dry_run.then(Arc::default),
                options,
                id: format!("auto:{}", ids::new_id()),
            });
        };
        let now = self.now();
        let input = (ctx.tenant.as_str().to_owned(), key.clone());
        self.write(input, move |tx, (tenant, key)| {
            Box::pin(async move {
                match idempotency::claim(tx, tenant, OPERATION, Some(key), now).await? {
                    idempotency::Claim::Fresh => {
                        idempotency::remember(tx, tenant, OPERATION, Some(key), "", &(), now).await
                    }
                    idempotency::Claim::Replay(_) => Ok(()),
                }
            })
        })
        .await?;
        Ok(Import {
            id: key.request_id.clone(),
            options,
            dry_created: None,
        })
    }

    /// Applies one batch of rows of `import` (with a dry run: checks them
    /// and writes nothing); returns each row's result in row order, after
    /// the commit.
    pub async fn import_rows(
        &self,
        ctx: &RequestContext,
        import: &Import,
        rows: Vec<ImportRow>,
    ) -> AppResult<Vec<RowResult>> {
        let now = self.now();
        let input = (ctx.clone(), import.clone(), rows, now);
        if let Some(memory) = &import.dry_created {
            let results = self.rehearse(input, batch_op).await?;
            let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
            for (number, created) in results
                .iter()
                .flat_map(|r| r.dry_created.iter().map(move |value| (r.number, value)))
            {
                memory.entry(created.clone()).or_insert(number);
            }
            Ok(results)
        } else {
            let results = self.write(input, batch_op).await?;
            // A row reported from an earlier run counted then.
            for result in results.iter().filter(|r| !r.replayed) {
                self.metrics()
                    .imported_row(result.outcome.as_ref().ok().map(|(o, _)| *o));
            }
            Ok(results)
        }
    }

    /// Forgets the rows of imports older than the request-id retention
    /// (24 hours); returns how many.
    pub async fn forget_old_imports(&self) -> AppResult<u64> {
        let cutoff = self.now() - idempotency::RETENTION_MICROS;
        let deleted = imported_row::Entity::delete_many()
            .filter(imported_row::Column::CreateTime.lt(cutoff))
            .exec(self.db())
            .await?;
        Ok(deleted.rows_affected)
    }
}

/// A relationship, source or group a row names, as stored.
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    delete_time: Option<i64>,
    /// Relationships only: the stored kind.
    kind: String,
}

/// The relationships, sources and groups a batch names, by id and by code.
#[derive(Default)]
struct Catalog {
    relationships: HashMap<Named, Entry>,
    default_relationship: Option<Entry>,
    sources: HashMap<Named, Entry>,
    groups: HashMap<Named, Entry>,
}

/// The ids and codes among `names`.
fn split(names: &HashSet<&Named>) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut codes = Vec::new();
    for name in names {
        match name {
            Named::Id(id) => ids.push(id.clone()),
            Named::Code(code) => codes.push(code.clone()),
        }
    }
    (ids, codes)
}

/// Files a stored entry under its id and its code.
fn file(into: &mut HashMap<Named, Entry>, code: String, entry: Entry) {
    into.insert(Named::Code(code), entry.clone());
    into.insert(Named::Id(entry.id.clone()), entry);
}

/// The rows of `E` (sources or groups) among `names`, under their ids and
/// codes (`code` is the table's code column).
async fn entries<E: Resource>(
    tx: &impl ConnectionTrait,
    tenant: &str,
    code: E::Column,
    names: &HashSet<&Named>,
) -> AppResult<HashMap<Named, Entry>> {
    let mut entries = HashMap::new();
    let (ids, codes) = split(names);
    if ids.is_empty() && codes.is_empty() {
        return Ok(entries);
    }
    let found: Vec<(String, String, Option<i64>)> = E::find()
        .filter(E::tenant_col().eq(tenant))
        .filter(
            sea_orm::Condition::any()
                .add(E::id_col().is_in(ids))
                .add(code.is_in(codes)),
        )
        .select_only()
        .columns([E::id_col(), code, E::delete_time_col()])
        .into_tuple()
        .all(tx)
        .await?;
    for (id, code, delete_time) in found {
        let kind = String::new();
        let entry = Entry {
            id,
            delete_time,
            kind,
        };
        file(&mut entries, code, entry);
    }
    Ok(entries)
}

impl Catalog {
    async fn load(
        tx: &impl ConnectionTrait,
        tenant: &str,
        options: &ImportOptions,
        rows: &[&RowFields],
    ) -> AppResult<Self> {
        let mut relationships: HashSet<&Named> = HashSet::new();
        let mut sources: HashSet<&Named> = HashSet::new();
        let mut groups: HashSet<&Named> = options.default_groups.iter().collect();
        relationships.extend(&options.default_relationship);
        sources.extend(&options.default_source);
        for row in rows {
            relationships.extend(&row.relationship);
            sources.extend(row.source.iter().flatten());
            groups.extend(&row.groups);
        }
        let mut catalog = Self::default();

        use relationship::Column as R;
        let (ids, codes) = split(&relationships);
        let found: Vec<(String, String, Option<i64>, String, bool)> = relationship::Entity::find()
            .filter(R::TenantId.eq(tenant))
            .filter(
                sea_orm::Condition::any()
                    .add(R::IsDefault.eq(true))
                    .add(R::Id.is_in(ids))
                    .add(R::Code.is_in(codes)),
            )
            .select_only()
            .columns([R::Id, R::Code, R::DeleteTime, R::Kind, R::IsDefault])
            .into_tuple()
            .all(tx)
            .await?;
        for (id, code, delete_time, kind, is_default) in found {
            let entry = Entry {
                id,
                delete_time,
                kind,
            };
            if is_default {
                catalog.default_relationship = Some(entry.clone());
            }
            file(&mut catalog.relationships, code, entry);
        }

        catalog.sources =
            entries::<customer_source::Entity>(tx, tenant, customer_source::Column::Code, &sources)
                .await?;
        catalog.groups =
            entries::<customer_group::Entity>(tx, tenant, customer_group::Column::Code, &groups)
                .await?;
        Ok(catalog)
    }

    /// The relationship customers may be given by hand.
    fn relationship(&self, name: &Named) -> AppResult<String> {
        let entry = self
            .relationships
            .get(name)
            .ok_or_else(|| AppError::not_found("relationship", name.as_str()))?;
        check_assignable_relationship(&entry.id, entry.delete_time, &entry.kind)?;
        Ok(entry.id.clone())
    }

    /// The source customers may be given.
    fn source(&self, name: &Named) -> AppResult<String> {
        let entry = self
            .sources
            .get(name)
            .ok_or_else(|| AppError::not_found("source", name.as_str()))?;
        check_source_assignable(&entry.id, entry.delete_time)?;
        Ok(entry.id.clone())
    }

    /// The groups (row's, then the defaults) customers may join, without
    /// repeats.
    fn groups(&self, row: &[Named], defaults: &[Named]) -> AppResult<Vec<String>> {
        let mut ids: Vec<String> = Vec::new();
        for name in row.iter().chain(defaults) {
            let entry = self
                .groups
                .get(name)
                .ok_or_else(|| AppError::not_found("group", name.as_str()))?;
            check_group_assignable(&entry.id, entry.delete_time)?;
            if !ids.contains(&entry.id) {
                ids.push(entry.id.clone());
            }
        }
        Ok(ids)
    }
}

/// What a row that passed its checks writes.
enum Plan {
    Create {
        index: usize,
        row: customer::Model,
        groups: Vec<String>,
    },
    Update {
        index: usize,
        row: customer::Model,
        /// The new profile, when it differs (boxed: a profile is large).
        profile: Option<Box<Profile>>,
        moved: Option<Move>,
        joins: Vec<String>,
    },
}

impl Plan {
    fn index(&self) -> usize {
        match self {
            Self::Create { index, .. } | Self::Update { index, .. } => *index,
        }
    }

    fn outcome(&self) -> (Outcome, &str) {
        match self {
            Self::Create { row, .. } => (Outcome::Created, &row.id),
            Self::Update {
                row,
                profile,
                moved,
                joins,
                ..
            } => {
                let changed = profile.is_some() || moved.is_some() || !joins.is_empty();
                let outcome = if changed {
                    Outcome::Updated
                } else {
                    Outcome::Unchanged
                };
                (outcome, &row.id)
            }
        }
    }
}

/// The rows `rows[start..]` still to decide, with the stored state they
/// are checked against: the customers they match (locked, with their
/// groups) and who holds the phones and emails they set.
struct Stored {
    /// Match-key value → customer id.
    matches: HashMap<String, String>,
    /// Matched customers by id, with their active groups.
    customers: HashMap<String, (customer::Model, Vec<String>)>,
    phones: HashMap<String, String>,
    emails: HashMap<String, String>,
}

/// The match-key value of a row, if it has one.
fn key_of(fields: &RowFields, key: MatchKey) -> Option<&str> {
    let value = match key {
        MatchKey::Phone => fields.phone.as_deref(),
        MatchKey::Email => fields.email.as_deref(),
        MatchKey::Id => fields.id.as_deref(),
    };
    value.filter(|v| !v.is_empty())
}

async fn read_stored(
    tx: &WriteTx,
    tenant: &str,
    options: &ImportOptions,
    rows: &[&RowFields],
) -> AppResult<Stored> {
    let mut matches = HashMap::new();
    if let (Mode::Upsert | Mode::Update, Some(key)) = (options.mode, options.match_on) {
        let values: HashSet<String> = rows
            .iter()
            .filter_map(|f| key_of(f, key))
            .map(str::to_owned)
            .collect();
        if !values.is_empty() {
            use customer::Column as C;
            let (column, indexed) = match key {
                MatchKey::Phone => (C::Phone, Some("phone <> ''")),
                MatchKey::Email => (C::Email, Some("email <> ''")),
                MatchKey::Id => (C::Id, None),
            };
            let mut query = customer::Entity::find()
                .filter(C::TenantId.eq(tenant))
                .filter(column.is_in(values));
            if let Some(indexed) = indexed {
                // Deleted customers keep their phone and email: only an
                // active one is matched (the partial unique index's).
                query = query
                    .filter(Expr::cust(indexed))
                    .filter(C::DeleteTime.is_null());
            }
            let found: Vec<(String, String)> = query
                .select_only()
                .column(column)
                .column(C::Id)
                .into_tuple()
                .all(tx)
                .await?;
            matches.extend(found);
        }
    }
    let mut ids: Vec<String> = matches
        .values()
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    ids.sort();
    let locked = lock_customers(tx, tenant, &ids).await?;
    let customers = with_groups(tx, tenant, locked.into_values().collect())
        .await?
        .into_iter()
        .map(|record| (record.row.id.clone(), (record.row, record.group_ids)))
        .collect();
    let phones = rows
        .iter()
        .filter_map(|f| f.phone.clone())
        .collect::<HashSet<_>>();
    let emails = rows
        .iter()
        .filter_map(|f| f.email.clone())
        .collect::<HashSet<_>>();
    let (phones, emails) = taken(tx, tenant, phones, emails).await?;
    Ok(Stored {
        matches,
        customers,
        phones,
        emails,
    })
}

/// What the rows planned so far in a segment touched: a later row that
/// meets any of it needs the segment written first.
#[derive(Default)]
struct Touched {
    customers: HashSet<String>,
    /// Phones and emails (old and new) of the customers planned.
    values: HashSet<String>,
}

impl Touched {
    fn add(&mut self, plan: &Plan) {
        let (row, profile) = match plan {
            Plan::Create { row, .. } => (row, None),
            Plan::Update { row, profile, .. } => (row, profile.as_ref()),
        };
        self.customers.insert(row.id.clone());
        for value in [&row.phone, &row.email]
            .into_iter()
            .chain(profile.into_iter().flat_map(|p| [&p.phone, &p.email]))
        {
            if !value.is_empty() {
                self.values.insert(value.clone());
            }
        }
    }

    /// Whether the row depends on what the segment planned.
    fn met_by(&self, fields: &RowFields, matched: Option<&str>) -> bool {
        matched.is_some_and(|id| self.customers.contains(id))
            || [&fields.phone, &fields.email]
                .into_iter()
                .flatten()
                .any(|value| self.values.contains(value))
    }
}

/// What a batch's transaction runs.
type BatchInput = (RequestContext, Import, Vec<ImportRow>, i64);

fn batch_op<'c>(
    tx: &'c WriteTx,
    (ctx, import, rows, now): &'c BatchInput,
) -> futures::future::BoxFuture<'c, AppResult<Vec<RowResult>>> {
    Box::pin(import_batch(tx, ctx, import, rows, *now))
}

/// Applies one batch: replays, then segment after segment.
async fn import_batch(
    tx: &WriteTx,
    ctx: &RequestContext,
    import: &Import,
    rows: &[ImportRow],
    now: i64,
) -> AppResult<Vec<RowResult>> {
    let tenant = ctx.tenant.as_str();
    let mut results: Vec<Option<RowResult>> = vec![None; rows.len()];
    for (index, row) in rows.iter().enumerate() {
        if let Err(err) = &row.fields {
            results[index] = Some(RowResult {
                number: row.number,
                outcome: Err(err.clone()),
                replayed: false,
                dry_created: Vec::new(),
            });
        }
    }
    // Runs of one import take turns batch by batch, so a repeat running
    // beside the first sees every row the first committed.
    lock_scope(tx, tenant, &format!("import:{}", import.id)).await?;
    let index_of: HashMap<i64, usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| row.fields.is_ok())
        .map(|(index, row)| (row.number, index))
        .collect();
    for (number, outcome, customer_id) in applied_before(tx, tenant, &import.id, rows).await? {
        if let Some(&index) = index_of.get(&number) {
            results[index] = Some(RowResult {
                number,
                outcome: Ok((outcome, customer_id)),
                replayed: true,
                dry_created: Vec::new(),
            });
        }
    }
    let pending: Vec<&RowFields> = rows
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .filter_map(|(row, _)| row.fields.as_ref().ok())
        .collect();
    let catalog = Catalog::load(tx, tenant, &import.options, &pending).await?;
    let mut made_by: HashMap<String, i64> = HashMap::new();
    let mut start = 0;
    while start < rows.len() {
        start = segment(
            tx,
            ctx,
            import,
            &catalog,
            rows,
            start,
            &mut results,
            &mut made_by,
            now,
        )
        .await?;
    }
    Ok(results
        .into_iter()
        .zip(rows)
        .map(|(result, row)| {
            result.unwrap_or_else(|| RowResult {
                number: row.number,
                outcome: Err(AppError::Internal("an import row went missing".into())),
                replayed: false,
                dry_created: Vec::new(),
            })
        })
        .collect())
}

/// The rows of `rows` an earlier run of the import applied: number,
/// outcome, customer.
async fn applied_before(
    tx: &WriteTx,
    tenant: &str,
    import_id: &str,
    rows: &[ImportRow],
) -> AppResult<Vec<(i64, Outcome, String)>> {
    // Row numbers rise through an import, so the batch's are one range of
    // the primary key (a list of them let PostgreSQL read every row of the
    // import so far and filter, which made an import's batches slower and
    // slower); numbers in the range that are not the batch's match no row.
    let valid = || rows.iter().filter(|r| r.fields.is_ok()).map(|r| r.number);
    let (Some(first), Some(last)) = (valid().min(), valid().max()) else {
        return Ok(Vec::new());
    };
    let found: Vec<(i64, String, String)> = imported_row::Entity::find()
        .filter(imported_row::Column::TenantId.eq(tenant))
        .filter(imported_row::Column::ImportId.eq(import_id))
        .filter(imported_row::Column::RowNumber.between(first, last))
        .select_only()
        .columns([
            imported_row::Column::RowNumber,
            imported_row::Column::Outcome,
            imported_row::Column::CustomerId,
        ])
        .into_tuple()
        .all(tx)
        .await?;
    found
        .into_iter()
        .map(|(number, outcome, customer)| {
            let outcome = Outcome::from_stored(&outcome).ok_or_else(|| {
                AppError::Internal(format!("imported row with outcome {outcome}"))
            })?;
            Ok((number, outcome, customer))
        })
        .collect()
}

/// Decides and writes the rows from `start` up to the first that depends
/// on one before it; returns where the next segment starts.
#[allow(clippy::too_many_arguments)]
async fn segment(
    tx: &WriteTx,
    ctx: &RequestContext,
    import: &Import,
    catalog: &Catalog,
    rows: &[ImportRow],
    start: usize,
    results: &mut [Option<RowResult>],
    made_by: &mut HashMap<String, i64>,
    now: i64,
) -> AppResult<usize> {
    let tenant = ctx.tenant.as_str();
    let options = &import.options;
    let open: Vec<usize> = (start..rows.len())
        .filter(|&i| results[i].is_none())
        .collect();
    let fields: Vec<&RowFields> = open
        .iter()
        .filter_map(|&i| rows[i].fields.as_ref().ok())
        .collect();
    let stored = read_stored(tx, tenant, options, &fields).await?;
    let mut plans: Vec<Plan> = Vec::new();
    let mut touched = Touched::default();
    let mut end = rows.len();
    for &index in &open {
        let Ok(fields) = &rows[index].fields else {
            continue;
        };
        let matched = options
            .match_on
            .and_then(|key| key_of(fields, key))
            .and_then(|value| stored.matches.get(value))
            .map(String::as_str);
        if touched.met_by(fields, matched) {
            end = index;
            break;
        }
        if let Some(result) = dry_repeat(import, fields, rows[index].number) {
            results[index] = Some(result);
            continue;
        }
        let planned = match (options.mode, matched) {
            (Mode::Create, _) | (Mode::Upsert, None) => {
                plan_create(tenant, options, catalog, fields, index, now)
            }
            (Mode::Update, None) => Err(no_match(options, fields)),
            (Mode::Upsert | Mode::Update, Some(id)) => match stored.customers.get(id) {
                Some((row, groups)) => plan_update(options, catalog, fields, row, groups, index),
                None => Err(AppError::not_found("customer", id)),
            },
        }
        .and_then(|plan| check_contact_points(&stored, &plan).map(|()| plan));
        let planned = match planned {
            Ok(plan) => plan,
            Err(err) => {
                let err = name_the_row(tx, tenant, import, made_by, err).await?;
                results[index] = Some(RowResult {
                    number: rows[index].number,
                    outcome: Err(err),
                    replayed: false,
                    dry_created: Vec::new(),
                });
                continue;
            }
        };
        touched.add(&planned);
        plans.push(planned);
    }
    write_plans(tx, ctx, import, rows, &plans, now).await?;
    for plan in &plans {
        let index = plan.index();
        let (outcome, id) = plan.outcome();
        made_by.entry(id.to_owned()).or_insert(rows[index].number);
        let shown = if options.dry_run && outcome == Outcome::Created {
            String::new()
        } else {
            id.to_owned()
        };
        // A dry run remembers what its new customers would hold.
        let dry_created = match plan {
            Plan::Create { row, .. } if options.dry_run => [&row.phone, &row.email]
                .into_iter()
                .filter(|v| !v.is_empty())
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        results[index] = Some(RowResult {
            number: rows[index].number,
            outcome: Ok((outcome, shown)),
            replayed: false,
            dry_created,
        });
    }
    Ok(end)
}

/// In a dry run, the result of a row that meets a customer an earlier
/// batch would have created: with UPSERT or UPDATE matching it, the row
/// would update that customer (UPDATED, no id: it does not exist); else
/// its phone or email would be taken (ALREADY_EXISTS naming the row).
fn dry_repeat(import: &Import, fields: &RowFields, number: i64) -> Option<RowResult> {
    let key = import.options.match_on.and_then(|key| key_of(fields, key));
    let updates = |value: &str| import.options.mode != Mode::Create && key == Some(value);
    [("phone", &fields.phone), ("email", &fields.email)]
        .into_iter()
        .filter_map(|(what, value)| Some((what, value.as_deref()?)))
        .filter(|(_, value)| !value.is_empty())
        .find_map(|(what, value)| {
            let first = import.dry_creator(value)?;
            let outcome = if updates(value) {
                Ok((Outcome::Updated, String::new()))
            } else {
                Err(AppError::AlreadyExists {
                    resource: "customer",
                    existing_id: String::new(),
                    message: format!(
                        "{what} `{value}` would be taken by the customer row {first} of this import creates"
                    ),
                })
            };
            Some(RowResult {
                number,
                outcome,
                replayed: false,
                dry_created: Vec::new(),
            })
        })
}

/// The failure of an UPDATE row that matches nobody.
fn no_match(options: &ImportOptions, fields: &RowFields) -> AppError {
    let Some(key) = options.match_on else {
        return AppError::Internal("an update import without a match key".into());
    };
    match key_of(fields, key) {
        None => AppError::invalid(
            key.field(),
            format!("is required: rows are matched on {}", key.field()),
        ),
        Some(value) => AppError::NotFound {
            resource: "customer",
            id: format!("with {} `{value}`", key.field()),
        },
    }
}

/// The customer a row creates, checked as CreateCustomer checks it.
fn plan_create(
    tenant: &str,
    options: &ImportOptions,
    catalog: &Catalog,
    fields: &RowFields,
    index: usize,
    now: i64,
) -> AppResult<Plan> {
    let name = fields.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(AppError::invalid(
            "name",
            "is required to create a customer",
        ));
    }
    let relationship_id = match fields
        .relationship
        .as_ref()
        .or(options.default_relationship.as_ref())
    {
        Some(named) => catalog.relationship(named)?,
        None => catalog
            .default_relationship
            .as_ref()
            .map(|e| e.id.clone())
            .ok_or_else(|| {
                AppError::Internal(format!("tenant {tenant} has no default relationship"))
            })?,
    };
    let source_id = match &fields.source {
        Some(Some(named)) => Some(catalog.source(named)?),
        Some(None) => None,
        None => options
            .default_source
            .as_ref()
            .map(|named| catalog.source(named))
            .transpose()?,
    };
    let groups = catalog.groups(&fields.groups, &options.default_groups)?;
    if groups.len() > MAX_GROUPS_ON_CREATE {
        return Err(AppError::invalid(
            "groups",
            format!("a customer joins at most {MAX_GROUPS_ON_CREATE} groups at creation"),
        ));
    }
    let profile = Profile {
        name,
        phone: fields.phone.clone().unwrap_or_default(),
        email: fields.email.clone().unwrap_or_default(),
        owner_id: fields.owner_id.clone().unwrap_or_default(),
        source_id,
        province: fields.province.clone().unwrap_or_default(),
        company: fields.company.clone().unwrap_or_default(),
        revenue: fields.revenue.unwrap_or_default(),
        attributes: merged_attributes(BTreeMap::new(), &fields.attributes)?,
    };
    Ok(Plan::Create {
        index,
        row: new_row(tenant, ids::new_id(), relationship_id, &profile, now)?,
        groups,
    })
}

/// The attributes `stored` with the row's `given` ones set (an empty value
/// removes the key).
fn merged_attributes(
    mut stored: BTreeMap<String, String>,
    given: &BTreeMap<String, String>,
) -> AppResult<BTreeMap<String, String>> {
    for (key, value) in given {
        if value.is_empty() {
            stored.remove(key);
        } else {
            stored.insert(key.clone(), value.clone());
        }
    }
    if stored.len() > ATTRIBUTES_MAX {
        return Err(AppError::invalid(
            "attributes",
            format!("a customer has at most {ATTRIBUTES_MAX} attributes"),
        ));
    }
    Ok(stored)
}

/// The changes a row makes to the customer it matched, checked as
/// UpdateCustomer and AddCustomersToGroup check them.
fn plan_update(
    options: &ImportOptions,
    catalog: &Catalog,
    fields: &RowFields,
    row: &customer::Model,
    groups: &[String],
    index: usize,
) -> AppResult<Plan> {
    crate::store::resource::ensure_active::<customer::Entity>(row, "importing into it")?;
    let stored = profile_of(row)?;
    let mut profile = stored.clone();
    if let Some(source) = &fields.source {
        profile.source_id = match source {
            Some(named) => {
                let entry = catalog
                    .sources
                    .get(named)
                    .ok_or_else(|| AppError::not_found("source", named.as_str()))?;
                // A customer keeps a source deleted since it was given.
                if row.source_id.as_deref() != Some(entry.id.as_str()) {
                    check_source_assignable(&entry.id, entry.delete_time)?;
                }
                Some(entry.id.clone())
            }
            None => None,
        };
    }
    let set = |field: &Option<String>, value: &mut String| {
        if let Some(new) = field {
            value.clone_from(new);
        }
    };
    if let Some(name) = fields.name.as_ref().filter(|n| !n.is_empty()) {
        profile.name.clone_from(name);
    }
    set(&fields.phone, &mut profile.phone);
    set(&fields.email, &mut profile.email);
    set(&fields.owner_id, &mut profile.owner_id);
    set(&fields.province, &mut profile.province);
    set(&fields.company, &mut profile.company);
    if let Some(revenue) = fields.revenue {
        profile.revenue = revenue;
    }
    profile.attributes = merged_attributes(profile.attributes, &fields.attributes)?;
    let moved = match &fields.relationship {
        Some(named) => {
            let entry = catalog
                .relationships
                .get(named)
                .ok_or_else(|| AppError::not_found("relationship", named.as_str()))?;
            if entry.id == row.relationship_id {
                None
            } else {
                check_assignable_relationship(&entry.id, entry.delete_time, &entry.kind)?;
                Some(Move {
                    customer_id: row.id.clone(),
                    from: row.relationship_id.clone(),
                    to: entry.id.clone(),
                    active: true,
                    owner: profile.owner_id.clone(),
                })
            }
        }
        None => None,
    };
    let joins = catalog
        .groups(&fields.groups, &options.default_groups)?
        .into_iter()
        .filter(|id| !groups.contains(id))
        .collect();
    Ok(Plan::Update {
        index,
        row: row.clone(),
        profile: (profile != stored).then(|| Box::new(profile)),
        moved,
        joins,
    })
}

/// ALREADY_EXISTS when another active customer holds a phone or email the
/// planned row gives its customer.
fn check_contact_points(stored: &Stored, plan: &Plan) -> AppResult<()> {
    let (id, phone, email) = match plan {
        Plan::Create { row, .. } => (&row.id, &row.phone, &row.email),
        Plan::Update {
            profile: Some(profile),
            row,
            ..
        } => (&row.id, &profile.phone, &profile.email),
        Plan::Update { profile: None, .. } => return Ok(()),
    };
    for (what, value, holders) in [
        ("phone", phone, &stored.phones),
        ("email", email, &stored.emails),
    ] {
        if value.is_empty() {
            continue;
        }
        if let Some(existing) = holders.get(value).filter(|existing| *existing != id) {
            return Err(super::rules::contact_point_taken(existing, what, value));
        }
    }
    Ok(())
}

/// `err`, naming the row of this import that gave the customer it names
/// the phone or email, if one did.
async fn name_the_row(
    tx: &WriteTx,
    tenant: &str,
    import: &Import,
    made_by: &HashMap<String, i64>,
    err: AppError,
) -> AppResult<AppError> {
    let AppError::AlreadyExists {
        resource,
        existing_id,
        message,
    } = err
    else {
        return Ok(err);
    };
    let row = match made_by.get(&existing_id) {
        Some(number) => Some(*number),
        None => {
            imported_row::Entity::find()
                .filter(imported_row::Column::TenantId.eq(tenant))
                .filter(imported_row::Column::ImportId.eq(&import.id))
                .filter(imported_row::Column::CustomerId.eq(&existing_id))
                .select_only()
                .column(imported_row::Column::RowNumber)
                .into_tuple::<i64>()
                .one(tx)
                .await?
        }
    };
    let message = match row {
        Some(number) => format!("{message}, from row {number} of this import"),
        None => message,
    };
    Ok(AppError::AlreadyExists {
        resource,
        existing_id,
        message,
    })
}

/// Writes the segment's plans through the write path, and remembers the
/// rows applied.
async fn write_plans(
    tx: &WriteTx,
    ctx: &RequestContext,
    import: &Import,
    rows: &[ImportRow],
    plans: &[Plan],
    now: i64,
) -> AppResult<()> {
    if plans.is_empty() {
        return Ok(());
    }
    let tenant = ctx.tenant.as_str();
    let origin = Origin {
        cause: Cause::Import,
        actor: ctx.actor.0.clone(),
        reason: import.options.reason.clone(),
    };
    let mut changes: Vec<Change> = Vec::new();
    for plan in plans {
        match plan {
            Plan::Create { row, groups, .. } => changes.push(Change::Create {
                row,
                groups,
                origin: &origin,
            }),
            Plan::Update {
                row,
                profile,
                moved,
                joins,
                ..
            } => {
                if let Some(profile) = profile {
                    changes.push(Change::Edit { row, profile });
                }
                for group_id in joins {
                    changes.push(Change::Join {
                        group_id,
                        customer: row,
                        cause: MembershipCause::Import,
                    });
                }
                if let Some(change) = moved {
                    changes.push(Change::Move {
                        change,
                        origin: &origin,
                    });
                }
            }
        }
    }
    write::apply(tx, tenant, now, &ctx.actor.0, &changes, None).await?;
    let mut remembered: Vec<imported_row::ActiveModel> = plans
        .iter()
        .map(|plan| {
            let (outcome, id) = plan.outcome();
            imported_row::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                import_id: Set(import.id.clone()),
                row_number: Set(rows[plan.index()].number),
                outcome: Set(outcome.as_str().to_owned()),
                customer_id: Set(id.to_owned()),
                create_time: Set(now),
            }
        })
        .collect();
    while !remembered.is_empty() {
        let chunk: Vec<_> = remembered.drain(..remembered.len().min(1000)).collect();
        imported_row::Entity::insert_many(chunk)
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}
