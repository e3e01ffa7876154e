//! Conversions of imports: options and rows validated on the way in (a
//! bad row fails alone), results and summaries on the way out.

use prost::Message;
use tonic::Status;

use super::Checks;
use crate::{
    domain::{
        customer, ids,
        import::{
            ImportOptions, ImportRow, MatchKey, Mode, Named, Outcome, RowFields, RowResult, Summary,
        },
        text,
    },
    error::{AppError, AppResult},
    grpc::{idempotency_key, strings},
    pb,
};

/// Validates the options (the first request of the stream).
pub fn import_options(options: pb::ImportOptions) -> AppResult<ImportOptions> {
    let key = idempotency_key(&options, &options.request_id, |o| o.request_id.clear())?;
    let pb::ImportOptions {
        mode,
        match_on,
        dry_run,
        reason,
        request_id: _,
        default_source,
        default_relationship,
        default_groups,
    } = options;
    let mut checks = Checks::default();
    let mode = match pb::ImportMode::try_from(mode) {
        Ok(pb::ImportMode::Create) => Mode::Create,
        Ok(pb::ImportMode::Upsert) => Mode::Upsert,
        Ok(pb::ImportMode::Update) => Mode::Update,
        _ => checks.take(Err(AppError::invalid(
            "options.mode",
            "is required: IMPORT_MODE_CREATE, IMPORT_MODE_UPSERT or IMPORT_MODE_UPDATE",
        ))),
    };
    let match_on = match pb::ImportMatchKey::try_from(match_on) {
        Ok(pb::ImportMatchKey::Phone) => Some(MatchKey::Phone),
        Ok(pb::ImportMatchKey::Email) => Some(MatchKey::Email),
        Ok(pb::ImportMatchKey::Id) => Some(MatchKey::Id),
        _ => None,
    };
    if match_on.is_none() && mode != Mode::Create {
        checks.take::<()>(Err(AppError::invalid(
            "options.match_on",
            "is required with UPSERT and UPDATE: IMPORT_MATCH_KEY_PHONE, _EMAIL or _ID",
        )));
    }
    let named = |checks: &mut Checks, field: &str, raw: &str| {
        (!raw.trim().is_empty()).then(|| checks.take(Named::parse(field, raw)))
    };
    let default_source = named(&mut checks, "options.default_source", &default_source);
    let default_relationship = named(
        &mut checks,
        "options.default_relationship",
        &default_relationship,
    );
    let default_groups = default_groups
        .iter()
        .enumerate()
        .filter_map(|(i, raw)| named(&mut checks, &format!("options.default_groups[{i}]"), raw))
        .collect();
    let reason = checks.take(text::description("options.reason", &reason));
    checks.finish()?;
    Ok(ImportOptions {
        mode,
        match_on: match_on.filter(|_| mode != Mode::Create),
        dry_run,
        reason,
        key,
        default_source,
        default_relationship,
        default_groups,
    })
}

/// Validates a row; `previous` is the number of the row before it in the
/// import (row numbers must rise, so a repeat resumes by them).
pub fn import_row(row: pb::ImportRow, previous: i64) -> ImportRow {
    let number = row.row_number;
    let fields = if number < 1 {
        Err(AppError::invalid("row_number", "must be at least 1"))
    } else if number <= previous {
        Err(AppError::invalid(
            "row_number",
            format!("must be greater than the previous row's ({previous})"),
        ))
    } else {
        strings::check(&row).and_then(|()| row_fields(row))
    };
    ImportRow { number, fields }
}

fn row_fields(row: pb::ImportRow) -> AppResult<RowFields> {
    let pb::ImportRow {
        row_number: _,
        id,
        name,
        phone,
        email,
        owner_id,
        source,
        relationship,
        groups,
        province,
        company,
        revenue,
        attributes,
    } = row;
    let mut checks = Checks::default();
    let mut text_field =
        |field: &str, value: Option<String>, check: fn(&str, &str) -> AppResult<String>| {
            value.map(|v| checks.take(check(field, &v)))
        };
    let name = text_field("name", name.filter(|n| !n.trim().is_empty()), text::name);
    let phone = text_field("phone", phone, customer::phone);
    let email = text_field("email", email, customer::email);
    let owner_id = text_field("owner_id", owner_id, customer::short_text);
    let province = text_field("province", province, customer::short_text);
    let company = text_field("company", company, customer::short_text);
    let id = (!id.trim().is_empty()).then(|| checks.take(ids::parse("id", id.trim())));
    let source = source
        .map(|raw| (!raw.trim().is_empty()).then(|| checks.take(Named::parse("source", &raw))));
    let relationship = relationship.map(|raw| checks.take(Named::parse("relationship", &raw)));
    let groups = groups
        .iter()
        .enumerate()
        .filter(|(_, raw)| !raw.trim().is_empty())
        .map(|(i, raw)| checks.take(Named::parse(&format!("groups[{i}]"), raw)))
        .collect();
    let revenue = revenue.map(|r| checks.take(customer::revenue("revenue", r)));
    let attributes = checks.take(customer::attributes("attributes", &attributes));
    checks.finish()?;
    Ok(RowFields {
        id,
        name,
        phone,
        email,
        owner_id,
        source,
        relationship,
        groups,
        province,
        company,
        revenue,
        attributes,
    })
}

/// An error as the google.rpc.Status a failed call would carry.
fn status_of(err: AppError) -> tonic_types::pb::Status {
    let status = Status::from(err);
    // A rich status's details are the encoded google.rpc.Status itself.
    let details = tonic_types::pb::Status::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default();
    tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details,
    }
}

impl From<RowResult> for pb::ImportRowResult {
    fn from(result: RowResult) -> Self {
        let (outcome, customer_id, error) = match result.outcome {
            Ok((outcome, id)) => {
                let outcome = match outcome {
                    Outcome::Created => pb::ImportOutcome::Created,
                    Outcome::Updated => pb::ImportOutcome::Updated,
                    Outcome::Unchanged => pb::ImportOutcome::Unchanged,
                };
                (outcome, id, None)
            }
            Err(err) => (
                pb::ImportOutcome::Failed,
                String::new(),
                Some(status_of(err)),
            ),
        };
        Self {
            row_number: result.number,
            outcome: outcome.into(),
            customer_id,
            error,
            replayed: result.replayed,
        }
    }
}

impl From<Summary> for pb::ImportSummary {
    fn from(summary: Summary) -> Self {
        let Summary {
            rows,
            created,
            updated,
            unchanged,
            failed,
            replayed,
        } = summary;
        Self {
            rows,
            created,
            updated,
            unchanged,
            failed,
            replayed,
        }
    }
}
