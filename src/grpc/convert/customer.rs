//! Conversions of customers, contacts, relationship changes and counts.

use prost_types::FieldMask;

use super::{Checks, micros, populated, required, target, timestamp};
use crate::{
    domain::{
        catalog::Target,
        change::{Cause, Channel, NewContact},
        customer::{self, CustomerFilter, CustomerPatch, MAX_IDS_PER_CALL, NewCustomer, Profile},
        filter, ids,
        paging::DeletedFilter,
        text,
    },
    entity::{contact, relationship_change},
    error::{AppError, AppResult},
    grpc::mask::{self, MaskRules},
    pb,
    store::{
        customers::CustomerRecord,
        customers::reports::overlap::Overlap,
        customers::reports::{RelationshipTally, SourceFigures},
        resource::etag,
    },
};

const CUSTOMER_MASK: MaskRules = MaskRules {
    mutable: &[
        "name",
        "phone",
        "email",
        "owner_id",
        "source_id",
        "relationship_id",
        "province",
        "company",
        "revenue",
        "attributes",
    ],
    output_only: &[
        "id",
        "last_contact_time",
        "profile_completion",
        "create_time",
        "update_time",
        "delete_time",
        "etag",
    ],
    immutable: &["group_ids"],
};

fn optional_id(checks: &mut Checks, field: &str, raw: &str) -> Option<String> {
    checks.take(ids::parse_optional(field, raw))
}

/// Validates the customer of a CreateCustomer.
pub fn new_customer(customer: Option<pb::Customer>, reason: &str) -> AppResult<NewCustomer> {
    let pb::Customer {
        id: _,
        name,
        phone,
        email,
        owner_id,
        source_id,
        relationship_id,
        group_ids,
        province,
        company,
        revenue,
        attributes,
        last_contact_time: _,
        profile_completion: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag: _,
    } = required(customer, "customer")?;
    let mut checks = Checks::default();
    let profile = Profile {
        name: checks.take(text::name("customer.name", &name)),
        phone: checks.take(customer::phone("customer.phone", &phone)),
        email: checks.take(customer::email("customer.email", &email)),
        owner_id: checks.take(customer::short_text("customer.owner_id", &owner_id)),
        source_id: optional_id(&mut checks, "customer.source_id", &source_id),
        province: checks.take(customer::short_text("customer.province", &province)),
        company: checks.take(customer::short_text("customer.company", &company)),
        revenue: checks.take(customer::revenue("customer.revenue", revenue)),
        attributes: checks.take(customer::attributes("customer.attributes", &attributes)),
    };
    let relationship_id = optional_id(&mut checks, "customer.relationship_id", &relationship_id);
    if group_ids.len() > customer::MAX_GROUPS_ON_CREATE {
        checks.take::<()>(Err(crate::error::AppError::invalid(
            "customer.group_ids",
            format!(
                "names {} groups; a customer joins at most {} at creation (add more with AddCustomersToGroup)",
                group_ids.len(),
                customer::MAX_GROUPS_ON_CREATE
            ),
        )));
    }
    let mut groups: Vec<String> = Vec::new();
    for (i, raw) in group_ids.iter().enumerate() {
        let id = checks.take(ids::parse(&format!("customer.group_ids[{i}]"), raw));
        if !id.is_empty() && !groups.contains(&id) {
            groups.push(id);
        }
    }
    let reason = checks.take(text::description("reason", reason));
    checks.finish()?;
    Ok(NewCustomer {
        profile,
        relationship_id,
        group_ids: groups,
        reason,
    })
}

/// Validates an UpdateCustomer.
pub fn customer_patch(
    customer: Option<pb::Customer>,
    update_mask: Option<FieldMask>,
    reason: &str,
) -> AppResult<(Target, CustomerPatch)> {
    let pb::Customer {
        id,
        name,
        phone,
        email,
        owner_id,
        source_id,
        relationship_id,
        group_ids: _,
        province,
        company,
        revenue,
        attributes,
        last_contact_time: _,
        profile_completion: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag,
    } = required(customer, "customer")?;
    let paths = mask::resolve(
        update_mask.as_ref(),
        &CUSTOMER_MASK,
        &populated(&[
            ("name", !name.is_empty()),
            ("phone", !phone.is_empty()),
            ("email", !email.is_empty()),
            ("owner_id", !owner_id.is_empty()),
            ("source_id", !source_id.is_empty()),
            ("relationship_id", !relationship_id.is_empty()),
            ("province", !province.is_empty()),
            ("company", !company.is_empty()),
            ("revenue", revenue != 0),
            ("attributes", !attributes.is_empty()),
        ]),
    )?;
    let has = |path: &str| paths.contains(path);
    let mut checks = Checks::default();
    let target = target(&mut checks, "customer.id", &id, etag);
    let patch = CustomerPatch {
        name: has("name").then(|| checks.take(text::name("customer.name", &name))),
        phone: has("phone").then(|| checks.take(customer::phone("customer.phone", &phone))),
        email: has("email").then(|| checks.take(customer::email("customer.email", &email))),
        owner_id: has("owner_id")
            .then(|| checks.take(customer::short_text("customer.owner_id", &owner_id))),
        source_id: has("source_id")
            .then(|| optional_id(&mut checks, "customer.source_id", &source_id)),
        relationship_id: has("relationship_id")
            .then(|| checks.take(ids::parse("customer.relationship_id", &relationship_id))),
        province: has("province")
            .then(|| checks.take(customer::short_text("customer.province", &province))),
        company: has("company")
            .then(|| checks.take(customer::short_text("customer.company", &company))),
        revenue: has("revenue")
            .then(|| checks.take(customer::revenue("customer.revenue", revenue))),
        attributes: has("attributes")
            .then(|| checks.take(customer::attributes("customer.attributes", &attributes))),
        reason: checks.take(text::description("reason", reason)),
    };
    checks.finish().map(|()| (target, patch))
}

/// Fewest and most groups an overlap report compares.
const OVERLAP_GROUPS: std::ops::RangeInclusive<usize> = 2..=20;

/// Validates the 2–20 distinct groups of a GetGroupOverlap.
pub fn overlap_group_ids(raw: &[String]) -> AppResult<Vec<String>> {
    if !OVERLAP_GROUPS.contains(&raw.len()) {
        return Err(AppError::invalid(
            "group_ids",
            format!("names {} groups; compare 2–20", raw.len()),
        ));
    }
    let mut checks = Checks::default();
    let ids = super::report::distinct_group_ids(&mut checks, raw);
    checks.finish().map(|()| ids)
}

/// The overlap report of the groups `ids`, in their order.
pub fn group_overlap(ids: &[String], overlap: &Overlap) -> pb::GetGroupOverlapResponse {
    let groups = ids
        .iter()
        .map(|id| pb::GroupSize {
            group_id: id.clone(),
            customers: overlap.size(id),
        })
        .collect();
    let mut pairs = Vec::new();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            let both = overlap.both(a, b);
            let either = overlap.size(a) + overlap.size(b) - both;
            pairs.push(pb::GroupPairOverlap {
                group_id_a: a.clone(),
                group_id_b: b.clone(),
                both,
                either,
                overlap_ratio: if either > 0 {
                    both as f64 / either as f64
                } else {
                    0.0
                },
            });
        }
    }
    pb::GetGroupOverlapResponse { groups, pairs }
}

/// Validates a list of 1–1000 customer ids, dropping repeats.
pub fn customer_ids(raw: &[String]) -> AppResult<Vec<String>> {
    if raw.is_empty() {
        return Err(AppError::invalid(
            "customer_ids",
            "name at least one customer",
        ));
    }
    if raw.len() > MAX_IDS_PER_CALL {
        return Err(AppError::invalid(
            "customer_ids",
            format!(
                "names {} customers; at most {MAX_IDS_PER_CALL} are allowed per call",
                raw.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    let mut parsed = Vec::with_capacity(raw.len());
    for (i, id) in raw.iter().enumerate() {
        let id = ids::parse(&format!("customer_ids[{i}]"), id)?;
        if seen.insert(id.clone()) {
            parsed.push(id);
        }
    }
    Ok(parsed)
}

/// Validates a RecordContact.
pub fn new_contact(request: pb::RecordContactRequest) -> AppResult<NewContact> {
    let pb::RecordContactRequest {
        customer_id,
        channel,
        note,
        contact_time,
    } = request;
    let mut checks = Checks::default();
    let customer_id = checks.take(ids::parse("customer_id", &customer_id));
    let channel = match pb::ContactChannel::try_from(channel) {
        Ok(pb::ContactChannel::Call) => Some(Channel::Call),
        Ok(pb::ContactChannel::Email) => Some(Channel::Email),
        Ok(pb::ContactChannel::Meeting) => Some(Channel::Meeting),
        Ok(pb::ContactChannel::Sms) => Some(Channel::Sms),
        Ok(pb::ContactChannel::Chat) => Some(Channel::Chat),
        Ok(pb::ContactChannel::Other) => Some(Channel::Other),
        Ok(pb::ContactChannel::Unspecified) | Err(_) => {
            checks.take::<()>(Err(AppError::invalid(
                "channel",
                "is required: CALL, EMAIL, MEETING, SMS, CHAT or OTHER",
            )));
            None
        }
    };
    let note = checks.take(text::description("note", &note));
    let contact_time = contact_time.map(|t| checks.take(micros("contact_time", &t)));
    checks.finish()?;
    Ok(NewContact {
        customer_id,
        channel: channel.unwrap_or(Channel::Other),
        note,
        contact_time,
    })
}

/// A request that selects customers with ListCustomers' filters (a list,
/// an export).
pub trait ListsCustomers {
    /// `group_id`, `include_subgroups`, `source_id`, `relationship_id`,
    /// `owner_id`, `query`, `show_deleted`, `deleted_only` and `filter`,
    /// validated.
    fn customer_filter(&self) -> AppResult<CustomerFilter>;
}

macro_rules! lists_customers {
    ($($request:ty),*) => {$(
        impl ListsCustomers for $request {
            fn customer_filter(&self) -> AppResult<CustomerFilter> {
                customer_filter(
                    &self.group_id,
                    self.include_subgroups,
                    &self.source_id,
                    &self.relationship_id,
                    &self.owner_id,
                    &self.query,
                    DeletedFilter::from_flags(self.show_deleted, self.deleted_only),
                    &self.filter,
                )
            }
        }
    )*};
}

lists_customers!(pb::ListCustomersRequest, pb::ExportCustomersRequest);

/// The filters of ListCustomers, ExportCustomers and
/// CountCustomersByRelationship.
#[allow(clippy::too_many_arguments)]
pub fn customer_filter(
    group_id: &str,
    include_subgroups: bool,
    source_id: &str,
    relationship_id: &str,
    owner_id: &str,
    query: &str,
    deleted: DeletedFilter,
    filter_text: &str,
) -> AppResult<CustomerFilter> {
    let mut checks = Checks::default();
    let filter = CustomerFilter {
        group_id: optional_id(&mut checks, "group_id", group_id),
        include_subgroups,
        source_id: optional_id(&mut checks, "source_id", source_id),
        relationship_id: optional_id(&mut checks, "relationship_id", relationship_id),
        owner_id: checks.take(customer::owner_filter("owner_id", owner_id)),
        query: checks.take(customer::search_query("query", query)),
        deleted,
        filter: checks.take(filter::parse(filter_text)),
    };
    checks.finish().map(|()| filter)
}

impl From<CustomerRecord> for pb::Customer {
    fn from(record: CustomerRecord) -> Self {
        let attributes = record.attributes();
        let CustomerRecord { row, group_ids } = record;
        Self {
            id: row.id,
            name: row.name,
            phone: row.phone,
            email: row.email,
            owner_id: row.owner_id,
            source_id: row.source_id.unwrap_or_default(),
            relationship_id: row.relationship_id,
            group_ids,
            province: row.province,
            company: row.company,
            revenue: row.revenue,
            attributes,
            last_contact_time: row.last_contact_time.map(timestamp),
            profile_completion: row.profile_completion,
            create_time: Some(timestamp(row.create_time)),
            update_time: Some(timestamp(row.update_time)),
            delete_time: row.delete_time.map(timestamp),
            etag: etag(row.revision),
        }
    }
}

impl From<relationship_change::Model> for pb::RelationshipChange {
    fn from(row: relationship_change::Model) -> Self {
        let cause = match Cause::from_stored(&row.cause) {
            Some(Cause::Created) => pb::RelationshipChangeCause::Created,
            Some(Cause::Manual) => pb::RelationshipChangeCause::Manual,
            Some(Cause::AutomaticInactivity) => pb::RelationshipChangeCause::AutomaticInactivity,
            Some(Cause::ContactResumed) => pb::RelationshipChangeCause::ContactResumed,
            Some(Cause::RelationshipDeleted) => pb::RelationshipChangeCause::RelationshipDeleted,
            Some(Cause::Import) => pb::RelationshipChangeCause::Import,
            None => pb::RelationshipChangeCause::Unspecified,
        };
        Self {
            sequence: row.sequence,
            customer_id: row.customer_id,
            old_relationship_id: row.old_relationship_id,
            new_relationship_id: row.new_relationship_id,
            cause: cause.into(),
            actor_id: row.actor_id,
            reason: row.reason,
            change_time: Some(timestamp(row.change_time)),
        }
    }
}

impl From<contact::Model> for pb::Contact {
    fn from(row: contact::Model) -> Self {
        let channel = match Channel::from_stored(&row.channel) {
            Some(Channel::Call) => pb::ContactChannel::Call,
            Some(Channel::Email) => pb::ContactChannel::Email,
            Some(Channel::Meeting) => pb::ContactChannel::Meeting,
            Some(Channel::Sms) => pb::ContactChannel::Sms,
            Some(Channel::Chat) => pb::ContactChannel::Chat,
            Some(Channel::Other) => pb::ContactChannel::Other,
            None => pb::ContactChannel::Unspecified,
        };
        Self {
            id: row.id,
            customer_id: row.customer_id,
            channel: channel.into(),
            note: row.note,
            contact_time: Some(timestamp(row.contact_time)),
            actor_id: row.actor_id,
            create_time: Some(timestamp(row.create_time)),
        }
    }
}

impl From<RelationshipTally> for pb::RelationshipCount {
    fn from(
        RelationshipTally {
            relationship,
            count,
        }: RelationshipTally,
    ) -> Self {
        Self {
            relationship_id: relationship.id,
            code: relationship.code,
            name: relationship.name,
            color: relationship.color,
            position: relationship.position,
            count,
        }
    }
}

/// Name of the report row of customers without a source.
pub const NO_SOURCE_NAME: &str = "No source";

impl From<SourceFigures> for pb::SourceReportRow {
    fn from(figures: SourceFigures) -> Self {
        let SourceFigures {
            source,
            customers,
            tallies,
            closed,
            revenue,
        } = figures;
        let (source_id, source_code, source_name) = match source {
            Some(s) => (s.id, s.code, s.name),
            None => (String::new(), String::new(), NO_SOURCE_NAME.to_owned()),
        };
        Self {
            source_id,
            source_code,
            source_name,
            customers,
            relationship_counts: tallies.into_iter().map(Into::into).collect(),
            closed_customers: closed,
            conversion_rate: super::report::rate(closed, customers),
            revenue,
        }
    }
}
