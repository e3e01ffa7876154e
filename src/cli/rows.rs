//! A file's record as an `ImportRow`: each cell by its column, empty cells
//! left unset, groups, sources and relationships named by code or name
//! turned into codes, revenue and attributes parsed.
//!
//! A record this cannot turn into a row (a revenue that is no number, an
//! attributes cell that is no JSON object, a group name two groups share)
//! fails here, with the same kind of reason the server gives, and is never
//! sent. Everything else is the server's to judge: a name left empty, a bad
//! email, an unknown code.

use std::collections::BTreeMap;

use super::{
    catalogs::{Catalog, Catalogs, Resolved},
    columns::{Column, Field, Layout},
    read::{Record, column_letters},
};
use crate::pb::ImportRow;

/// Turns records into rows.
#[derive(Debug, Clone)]
pub struct RowMaker {
    layout: Layout,
    catalogs: Catalogs,
    /// Whether the `id` column is sent: only when rows are matched by id.
    /// An exported file's ids belong to the tenant it came from, so an
    /// import matched on phone or email (or creating) leaves them out.
    send_ids: bool,
}

impl RowMaker {
    /// Rows for a file with `layout`.
    pub fn new(layout: Layout, catalogs: Catalogs, send_ids: bool) -> Self {
        Self {
            layout,
            catalogs,
            send_ids,
        }
    }

    /// The row of `record`, or why it cannot be sent.
    pub fn make(&self, record: &Record) -> Result<ImportRow, String> {
        let mut problems = record.problems.clone();
        let mut row = ImportRow {
            row_number: i64::try_from(record.number).unwrap_or(i64::MAX),
            ..ImportRow::default()
        };
        // Attribute columns win over the same key in the JSON column,
        // whatever their order: they are applied last.
        let mut attribute_cells = Vec::new();
        for (index, cell) in record.cells.iter().enumerate() {
            let value = cell.trim();
            if value.is_empty() {
                continue;
            }
            match self.layout.columns.get(index) {
                None | Some(Column::Unnamed) => problems.push(format!(
                    "column {} has a value but no header",
                    column_letters(index)
                )),
                Some(Column::Skipped) => {}
                Some(Column::Attribute(key)) => attribute_cells.push((key, value)),
                Some(Column::Field(field)) => {
                    if let Err(problem) = self.set(&mut row, *field, value) {
                        problems.push(problem);
                    }
                }
            }
        }
        for (key, value) in attribute_cells {
            row.attributes.insert(key.clone(), value.to_owned());
        }
        if problems.is_empty() {
            Ok(row)
        } else {
            Err(problems.join("; "))
        }
    }

    fn set(&self, row: &mut ImportRow, field: Field, value: &str) -> Result<(), String> {
        let text = || Some(value.to_owned());
        match field {
            Field::Id => {
                if self.send_ids {
                    row.id = value.to_owned();
                }
            }
            Field::Name => row.name = text(),
            Field::Phone => row.phone = text(),
            Field::Email => row.email = text(),
            Field::OwnerId => row.owner_id = text(),
            Field::Province => row.province = text(),
            Field::Company => row.company = text(),
            Field::Source => row.source = Some(one(&self.catalogs.sources, "source", value)?),
            Field::Relationship => {
                row.relationship = Some(one(&self.catalogs.relationships, "relationship", value)?);
            }
            Field::Groups => {
                let mut problems = Vec::new();
                for item in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    match one(&self.catalogs.groups, "groups", item) {
                        Ok(code) => {
                            if !row.groups.contains(&code) {
                                row.groups.push(code);
                            }
                        }
                        Err(problem) => problems.push(problem),
                    }
                }
                if !problems.is_empty() {
                    return Err(problems.join("; "));
                }
            }
            Field::Revenue => {
                row.revenue = Some(parse_revenue(value).map_err(|e| format!("revenue: {e}"))?);
            }
            Field::Attributes => {
                let attributes = parse_attributes(value).map_err(|e| format!("attributes: {e}"))?;
                row.attributes.extend(attributes);
            }
            // Output-only fields have skipped columns; nothing to set.
            Field::ProfileCompletion
            | Field::LastContactTime
            | Field::CreateTime
            | Field::UpdateTime
            | Field::DeleteTime => {}
        }
        Ok(())
    }
}

/// The code for one group, source or relationship value.
fn one(catalog: &Catalog, field: &str, value: &str) -> Result<String, String> {
    match catalog.resolve(value) {
        Resolved::Code(code) | Resolved::AsGiven(code) => Ok(code),
        Resolved::Ambiguous(codes) => Err(format!(
            "{field}: \"{value}\" is the name of several entries; write one of the codes {}",
            codes.join(", ")
        )),
    }
}

/// A revenue cell: a whole number of minor units (đồng, cents), written
/// plainly (`75000000`), with thousands separators (`75.000.000`,
/// `75,000,000`, `75 000 000`) or a đồng sign (`75.000.000 đ`).
pub fn parse_revenue(text: &str) -> Result<i64, String> {
    let mut compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
        .collect();
    for suffix in ["₫", "đ", "Đ", "vnđ", "VNĐ", "vnd", "VND"] {
        if let Some(stripped) = compact.strip_suffix(suffix) {
            compact = stripped.to_owned();
            break;
        }
    }
    let (negative, digits) = match compact.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, compact.as_str()),
    };
    let plain = if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
        digits.to_owned()
    } else if let Some(plain) = without_thousands(digits) {
        plain
    } else {
        return Err(format!(
            "\"{text}\" is not a whole number; write it in minor units, e.g. 75000000 or 75.000.000"
        ));
    };
    let value: i64 = plain
        .parse()
        .map_err(|_| format!("\"{text}\" is too large"))?;
    Ok(if negative { -value } else { value })
}

/// `75.000.000` or `75,000,000` without its separators: one kind of
/// separator, groups of three digits after a first group of one to three.
fn without_thousands(text: &str) -> Option<String> {
    let separator = text.chars().find(|c| matches!(c, '.' | ','))?;
    let mut groups = text.split(separator);
    let first = groups.next()?;
    if first.is_empty() || first.len() > 3 || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut plain = first.to_owned();
    for group in groups {
        if group.len() != 3 || !group.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        plain.push_str(group);
    }
    Some(plain)
}

/// An attributes cell: a JSON object whose values are text (numbers and
/// booleans are taken as their JSON text, `null` as empty, which removes
/// the key).
pub fn parse_attributes(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("not a JSON object ({e}); write e.g. {{\"tier\": \"Vàng\"}}"))?;
    let serde_json::Value::Object(object) = value else {
        return Err("not a JSON object; write e.g. {\"tier\": \"Vàng\"}".to_owned());
    };
    object
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Null => String::new(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    return Err(format!("the value of \"{key}\" must be text"));
                }
            };
            Ok((key, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{catalogs::Entry, columns::match_header};

    fn catalogs() -> Catalogs {
        let entry = |id: &str, code: &str, name: &str| Entry {
            id: id.to_owned(),
            code: code.to_owned(),
            name: name.to_owned(),
            deleted: false,
        };
        Catalogs {
            groups: Catalog::new(
                "group",
                vec![
                    entry("g1", "VIP", "Khách hàng VIP"),
                    entry("g2", "DA_NANG", "Đà Nẵng"),
                    entry("g3", "DA_NANG_2", "Đà Nẵng"),
                ],
            ),
            sources: Catalog::new("source", vec![entry("s1", "WEBSITE", "Website")]),
            relationships: Catalog::new("relationship", vec![entry("r1", "HOT", "Nóng")]),
        }
    }

    fn maker(header: &[&str], send_ids: bool) -> RowMaker {
        let header: Vec<String> = header.iter().map(|c| (*c).to_owned()).collect();
        RowMaker::new(match_header(&header).unwrap(), catalogs(), send_ids)
    }

    fn record(number: u64, cells: &[&str]) -> Record {
        Record {
            number,
            cells: cells.iter().map(|c| (*c).to_owned()).collect(),
            problems: Vec::new(),
            position: 0,
        }
    }

    #[test]
    fn cells_become_fields_and_empty_cells_stay_unset() {
        let maker = maker(
            &[
                "id",
                "Tên khách hàng",
                "phone",
                "email",
                "Nguồn khách hàng",
                "Mối quan hệ",
                "Nhóm khách hàng",
                "province",
                "revenue",
            ],
            false,
        );
        let row = maker
            .make(&record(
                7,
                &[
                    "c-1",
                    " Nguyễn Văn An ",
                    "0912 345 678",
                    "",
                    "website",
                    "Nóng",
                    "VIP; khách hàng vip ;NEW_CODE;",
                    "Đà Nẵng",
                    "75.000.000",
                ],
            ))
            .unwrap();
        assert_eq!(row.row_number, 7);
        // Ids are only sent when rows are matched by id.
        assert_eq!(row.id, "");
        assert_eq!(row.name.as_deref(), Some("Nguyễn Văn An"));
        assert_eq!(row.phone.as_deref(), Some("0912 345 678"));
        assert_eq!(row.email, None);
        assert_eq!(row.source.as_deref(), Some("WEBSITE"));
        assert_eq!(row.relationship.as_deref(), Some("HOT"));
        // Names become codes, a repeat is dropped, unknown ones go as given.
        assert_eq!(row.groups, ["VIP", "NEW_CODE"]);
        assert_eq!(row.province.as_deref(), Some("Đà Nẵng"));
        assert_eq!(row.revenue, Some(75_000_000));
        assert_eq!(row.company, None);
        let row = maker_with_ids().make(&record(2, &["c-1", "An"])).unwrap();
        assert_eq!(row.id, "c-1");
    }

    fn maker_with_ids() -> RowMaker {
        maker(&["id", "name"], true)
    }

    #[test]
    fn attribute_columns_merge_over_the_json_column() {
        let maker = maker(&["attributes.tier", "name", "attributes"], false);
        let row = maker
            .make(&record(
                2,
                &[
                    "Vàng",
                    "An",
                    r#"{"tier": "Bạc", "region": "Miền Trung", "since": 2019, "old": null}"#,
                ],
            ))
            .unwrap();
        let expected: BTreeMap<String, String> = [
            ("tier", "Vàng"),
            ("region", "Miền Trung"),
            ("since", "2019"),
            ("old", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(row.attributes, expected);
    }

    #[test]
    fn rows_that_cannot_be_sent_say_why() {
        let maker = maker(&["name", "revenue", "attributes", "groups", ""], false);
        let err = maker
            .make(&record(3, &["An", "1,5", "[1]", "Đà Nẵng", "x", "y"]))
            .unwrap_err();
        assert!(
            err.contains("revenue: \"1,5\" is not a whole number"),
            "{err}"
        );
        assert!(err.contains("attributes: not a JSON object"), "{err}");
        assert!(err.contains("DA_NANG, DA_NANG_2"), "{err}");
        assert!(err.contains("column E has a value but no header"), "{err}");
        assert!(err.contains("column F has a value but no header"), "{err}");
        let mut bad = record(4, &["An"]);
        bad.problems.push("column 1 is not UTF-8 text".to_owned());
        assert_eq!(maker.make(&bad).unwrap_err(), "column 1 is not UTF-8 text");
    }

    #[test]
    fn revenues_in_the_ways_people_write_them() {
        assert_eq!(parse_revenue("75000000"), Ok(75_000_000));
        assert_eq!(parse_revenue("75.000.000"), Ok(75_000_000));
        assert_eq!(parse_revenue("75,000,000"), Ok(75_000_000));
        assert_eq!(parse_revenue("75 000 000 ₫"), Ok(75_000_000));
        assert_eq!(parse_revenue("1.500.000đ"), Ok(1_500_000));
        assert_eq!(parse_revenue("0"), Ok(0));
        // The server refuses negatives with its own message.
        assert_eq!(parse_revenue("-5"), Ok(-5));
        for bad in [
            "1.5",
            "1,50",
            "75.000,000",
            "abc",
            "",
            "1e6",
            "99999999999999999999",
        ] {
            assert!(parse_revenue(bad).is_err(), "{bad}");
        }
    }
}
