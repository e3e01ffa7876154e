//! `crm-classify export`: streams ExportCustomers into a CSV or XLSX table,
//! writing each page as it arrives.
//!
//! The columns are the importable ones, in the label table's order (`id`,
//! `name`, `phone`, `email`, `owner_id`, `source`, `relationship`,
//! `groups`, `province`, `company`, `revenue`, `attributes`), then the
//! output-only `profile_completion`, `last_contact_time`, `create_time`,
//! `update_time` (and `delete_time` when deleted customers are asked for),
//! which an import skips. Sources, relationships and groups are written as
//! codes (groups sorted, `; ` between them) and attributes as one JSON
//! object, so a file exported from one tenant imports into another that
//! has the same codes, and exporting that one gives the same rows but for
//! ids and times.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use futures::StreamExt;

use super::{
    CliError,
    catalogs::{self, Catalogs},
    columns::{Field, Labels},
    connect::{self, ServerArgs, describe_status},
    progress::{Length, Progress, thousands},
    write::{Cell, Output, TableWriter, XLSX_MAX_ROWS},
};
use crate::pb::{Customer, ExportCustomersRequest};

/// `crm-classify export`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ExportArgs {
    /// Connection.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Where to write: FILE.csv or FILE.xlsx (by extension); `-` or
    /// nothing writes CSV to stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,

    /// Only customers matching this filter (the filter language of
    /// ListCustomers), e.g. 'relationship = "HOT" AND province = "Đà Nẵng"'.
    #[arg(long, default_value = "")]
    pub filter: String,

    /// `create_time desc` (the server's default), `name` or
    /// `last_contact_time`.
    #[arg(long, default_value = "")]
    pub order_by: String,

    /// Only customers in this group (code, name or id).
    #[arg(long)]
    pub group: Option<String>,

    /// With --group: also customers of its subgroups.
    #[arg(long, requires = "group")]
    pub include_subgroups: bool,

    /// Only customers from this source (code, name or id).
    #[arg(long)]
    pub source: Option<String>,

    /// Only customers holding this relationship (code, name or id).
    #[arg(long)]
    pub relationship: Option<String>,

    /// Only customers of this owner (user id).
    #[arg(long)]
    pub owner: Option<String>,

    /// Only customers whose name, phone or email contains this text.
    #[arg(long)]
    pub query: Option<String>,

    /// Deleted customers too (adds a delete_time column).
    #[arg(long)]
    pub show_deleted: bool,

    /// Only deleted customers (adds a delete_time column).
    #[arg(long, conflicts_with = "show_deleted")]
    pub deleted_only: bool,

    /// The header row's names: field names, or the Vietnamese or English
    /// labels. An import reads any of them.
    #[arg(long, value_enum, default_value_t)]
    pub labels: Labels,
}

/// Runs the export.
pub async fn run(args: ExportArgs) -> Result<(), CliError> {
    let output = Output::of(args.output.as_deref()).map_err(CliError::Usage)?;
    let connection = connect::connect(&args.server).await?;
    let catalogs = catalogs::load(&connection).await?;
    let request = request(&args, &catalogs)?;
    let mut stream = connection
        .customers()
        .export_customers(request)
        .await
        .map_err(|status| {
            CliError::Server(format!(
                "the server refused the export: {}",
                describe_status(&status)
            ))
        })?
        .into_inner();
    // The file is created only once the server has answered, so an export
    // refused (a bad filter) leaves an existing file alone.
    let first = match stream.next().await {
        Some(Ok(first)) => first,
        Some(Err(status)) => {
            return Err(CliError::Server(format!(
                "the server refused the export: {}",
                describe_status(&status)
            )));
        }
        None => {
            return Err(CliError::Server(
                "the server ended the export without a message".to_owned(),
            ));
        }
    };
    let total = u64::try_from(first.total_size).unwrap_or(0);
    if matches!(output, Output::Xlsx(_)) && total >= XLSX_MAX_ROWS {
        return Err(CliError::Usage(format!(
            "{} customers do not fit in one XLSX worksheet ({} rows at most); export to .csv",
            thousands(total),
            thousands(XLSX_MAX_ROWS - 1)
        )));
    }
    let deleted = args.show_deleted || args.deleted_only;
    let fields: Vec<Field> = Field::ALL
        .into_iter()
        .filter(|f| deleted || *f != Field::DeleteTime)
        .collect();
    let mut table = TableWriter::create(&output).map_err(CliError::Output)?;
    let mut progress = Progress::new("export", Length::Rows(total));
    let written = write_all(
        &mut table,
        &fields,
        &args,
        &catalogs,
        first,
        &mut stream,
        &mut progress,
    )
    .await
    .and_then(|written| table.finish().map(|()| written).map_err(CliError::Output));
    let (written, watch_from) = match written {
        Ok(written) => written,
        Err(err) => {
            progress.abandon();
            // A half-written file is worse than none.
            if let Some(path) = output.path() {
                let _ = std::fs::remove_file(path);
            }
            return Err(err);
        }
    };
    let seconds = progress.elapsed().as_secs_f64();
    let target = output
        .path()
        .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    progress.finish(&format!(
        "{} customer{} to {target} in {seconds:.1} s; watch relationship changes after sequence {watch_from}",
        thousands(written),
        if written == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// The request, groups, sources and relationships named by code or name
/// turned into ids.
fn request(args: &ExportArgs, catalogs: &Catalogs) -> Result<ExportCustomersRequest, CliError> {
    let id = |catalog: &catalogs::Catalog, flag: &str, value: Option<&String>| {
        value
            .map(|v| catalog.id_for_flag(flag, v))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(ExportCustomersRequest {
        group_id: id(&catalogs.groups, "group", args.group.as_ref())?,
        include_subgroups: args.include_subgroups,
        source_id: id(&catalogs.sources, "source", args.source.as_ref())?,
        relationship_id: id(
            &catalogs.relationships,
            "relationship",
            args.relationship.as_ref(),
        )?,
        owner_id: args.owner.clone().unwrap_or_default(),
        query: args.query.clone().unwrap_or_default(),
        show_deleted: args.show_deleted,
        deleted_only: args.deleted_only,
        order_by: args.order_by.clone(),
        filter: args.filter.clone(),
    })
}

/// Writes the header and every page; returns the rows written and the
/// first message's `watch_from_sequence`.
async fn write_all(
    table: &mut TableWriter,
    fields: &[Field],
    args: &ExportArgs,
    catalogs: &Catalogs,
    first: crate::pb::ExportCustomersResponse,
    stream: &mut tonic::Streaming<crate::pb::ExportCustomersResponse>,
    progress: &mut Progress,
) -> Result<(u64, i64), CliError> {
    let header: Vec<String> = fields
        .iter()
        .map(|f| f.label(args.labels).to_owned())
        .collect();
    table.header(&header).map_err(CliError::Output)?;
    let watch_from = first.watch_from_sequence;
    let mut written = 0u64;
    let mut page = Some(first);
    loop {
        if let Some(page) = page.take() {
            for customer in &page.customers {
                let cells: Vec<Cell> = fields
                    .iter()
                    .map(|field| cell(customer, *field, catalogs))
                    .collect();
                table
                    .row(&cells)
                    .map_err(|e| CliError::Output(format!("customer {}: {e}", customer.id)))?;
                written += 1;
            }
            progress.update(written, 0, written);
        }
        match stream.next().await {
            Some(Ok(next)) => page = Some(next),
            Some(Err(status)) => {
                return Err(CliError::Server(format!(
                    "the export stopped after {} customers: {}",
                    thousands(written),
                    describe_status(&status)
                )));
            }
            None => return Ok((written, watch_from)),
        }
    }
}

/// One cell of a customer's row.
fn cell(customer: &Customer, field: Field, catalogs: &Catalogs) -> Cell {
    let text = |s: &str| Cell::Text(s.to_owned());
    // An id the catalog does not know (created during the export) is
    // written as it is: an import accepts ids too.
    let code = |catalog: &catalogs::Catalog, id: &str| {
        Cell::Text(catalog.code_of(id).unwrap_or(id).to_owned())
    };
    match field {
        Field::Id => text(&customer.id),
        Field::Name => text(&customer.name),
        Field::Phone => text(&customer.phone),
        Field::Email => text(&customer.email),
        Field::OwnerId => text(&customer.owner_id),
        Field::Source => code(&catalogs.sources, &customer.source_id),
        Field::Relationship => code(&catalogs.relationships, &customer.relationship_id),
        Field::Groups => {
            let mut codes: Vec<&str> = customer
                .group_ids
                .iter()
                .map(|id| catalogs.groups.code_of(id).unwrap_or(id))
                .collect();
            codes.sort_unstable();
            Cell::Text(codes.join("; "))
        }
        Field::Province => text(&customer.province),
        Field::Company => text(&customer.company),
        Field::Revenue => Cell::Number(customer.revenue),
        Field::Attributes => {
            if customer.attributes.is_empty() {
                Cell::Text(String::new())
            } else {
                // A map of strings always serialises; its keys come sorted.
                Cell::Text(serde_json::to_string(&customer.attributes).unwrap_or_default())
            }
        }
        Field::ProfileCompletion => Cell::Number(i64::from(customer.profile_completion)),
        Field::LastContactTime => Cell::Text(time(customer.last_contact_time.as_ref())),
        Field::CreateTime => Cell::Text(time(customer.create_time.as_ref())),
        Field::UpdateTime => Cell::Text(time(customer.update_time.as_ref())),
        Field::DeleteTime => Cell::Text(time(customer.delete_time.as_ref())),
    }
}

/// A timestamp as RFC 3339 in UTC to the second; empty when unset.
fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| {
            DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cli::catalogs::{Catalog, Entry};

    #[test]
    fn rows_write_codes_sorted_groups_and_json_attributes() {
        let entry = |id: &str, code: &str| Entry {
            id: id.to_owned(),
            code: code.to_owned(),
            name: code.to_owned(),
            deleted: false,
        };
        let catalogs = Catalogs {
            groups: Catalog::new("group", vec![entry("g1", "VIP"), entry("g2", "DA_NANG")]),
            sources: Catalog::new("source", vec![entry("s1", "WEBSITE")]),
            relationships: Catalog::new("relationship", vec![entry("r1", "HOT")]),
        };
        let customer = Customer {
            id: "c1".to_owned(),
            name: "Nguyễn Văn An".to_owned(),
            source_id: "s1".to_owned(),
            relationship_id: "r1".to_owned(),
            group_ids: vec!["g1".to_owned(), "g2".to_owned(), "g-new".to_owned()],
            revenue: 75_000_000,
            attributes: BTreeMap::from([
                ("tier".to_owned(), "Vàng".to_owned()),
                ("region".to_owned(), "Miền Trung".to_owned()),
            ]),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_793_523_600,
                nanos: 5,
            }),
            ..Customer::default()
        };
        let cells: Vec<Cell> = Field::ALL
            .iter()
            .map(|f| cell(&customer, *f, &catalogs))
            .collect();
        let text = |s: &str| Cell::Text(s.to_owned());
        assert_eq!(cells[0], text("c1"));
        assert_eq!(cells[5], text("WEBSITE"));
        assert_eq!(cells[6], text("HOT"));
        assert_eq!(cells[7], text("DA_NANG; VIP; g-new"));
        assert_eq!(cells[10], Cell::Number(75_000_000));
        assert_eq!(cells[11], text(r#"{"region":"Miền Trung","tier":"Vàng"}"#));
        assert_eq!(cells[13], text(""));
        assert_eq!(cells[14], text("2026-11-01T09:00:00Z"));
    }
}
