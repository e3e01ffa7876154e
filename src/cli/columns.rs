//! The columns of an import or export file: the customer fields, the labels
//! a Getfly user knows them by (Vietnamese and English), and how a file's
//! header row is matched to them.
//!
//! A header cell names a field by its field name (`phone`), by a label
//! ("Số điện thoại", "Phone") or by one of a few other common spellings
//! ("SĐT", "Họ và tên"). Matching folds case, accents, punctuation and
//! spacing ("so dien thoai" = "Số  điện-thoại"): safe here, because the
//! table is fixed and a unit test checks that no two fields fold alike.
//! `attributes.KEY` is one attribute (the key kept as written); columns
//! that only an export or the errors file writes are recognised and
//! skipped; anything else is an error naming the columns.

use std::collections::HashMap;

use clap::ValueEnum;

use crate::domain::filter::text::fold;

/// A customer field as a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The customer's id.
    Id,
    /// Name.
    Name,
    /// Phone number.
    Phone,
    /// Email address.
    Email,
    /// Owner (user id).
    OwnerId,
    /// Source, by code (or name, or id).
    Source,
    /// Relationship, by code (or name, or id).
    Relationship,
    /// Groups, `;`-separated codes (or names, or ids).
    Groups,
    /// Province or city.
    Province,
    /// Company name.
    Company,
    /// Revenue in minor currency units.
    Revenue,
    /// The tenant's own fields as one JSON object.
    Attributes,
    /// Output only: how complete the profile is (0–100).
    ProfileCompletion,
    /// Output only: the latest contact.
    LastContactTime,
    /// Output only: creation time.
    CreateTime,
    /// Output only: last change.
    UpdateTime,
    /// Output only: deletion time.
    DeleteTime,
}

/// Which names the header row of an export uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Labels {
    /// Field names (`name`, `phone`, …): what scripts expect.
    #[default]
    Field,
    /// Vietnamese labels ("Tên khách hàng", "Số điện thoại", …).
    Vi,
    /// English labels ("Customer name", "Phone", …).
    En,
}

/// One row of the label table: a field, its field name, its Vietnamese and
/// English labels, and other spellings an import accepts.
struct Spelling {
    field: Field,
    name: &'static str,
    vi: &'static str,
    en: &'static str,
    others: &'static [&'static str],
}

/// The label table, in export column order. The README's table is this one.
const SPELLINGS: [Spelling; 17] = [
    Spelling {
        field: Field::Id,
        name: "id",
        vi: "Mã khách hàng",
        en: "Customer ID",
        others: &["customer_id", "Mã KH", "ID"],
    },
    Spelling {
        field: Field::Name,
        name: "name",
        vi: "Tên khách hàng",
        en: "Customer name",
        others: &["Họ và tên", "Họ tên", "Tên", "Full name", "Tên KH"],
    },
    Spelling {
        field: Field::Phone,
        name: "phone",
        vi: "Số điện thoại",
        en: "Phone",
        others: &[
            "Điện thoại",
            "Di động",
            "SĐT",
            "Phone number",
            "Mobile",
            "Telephone",
        ],
    },
    Spelling {
        field: Field::Email,
        name: "email",
        vi: "Email",
        en: "Email",
        others: &["E-mail", "Địa chỉ email", "Email address"],
    },
    Spelling {
        field: Field::OwnerId,
        name: "owner_id",
        vi: "Người phụ trách",
        en: "Owner",
        others: &["Nhân viên phụ trách", "owner"],
    },
    Spelling {
        field: Field::Source,
        name: "source",
        vi: "Nguồn khách hàng",
        en: "Source",
        others: &["source_id", "Nguồn"],
    },
    Spelling {
        field: Field::Relationship,
        name: "relationship",
        vi: "Mối quan hệ",
        en: "Relationship",
        others: &["relationship_id", "Relationship status"],
    },
    Spelling {
        field: Field::Groups,
        name: "groups",
        vi: "Nhóm khách hàng",
        en: "Customer groups",
        others: &["group_ids", "Nhóm", "Group", "Groups"],
    },
    Spelling {
        field: Field::Province,
        name: "province",
        vi: "Tỉnh/Thành phố",
        en: "Province/City",
        others: &["Tỉnh thành", "Tỉnh", "Thành phố", "City"],
    },
    Spelling {
        field: Field::Company,
        name: "company",
        vi: "Công ty",
        en: "Company",
        others: &["Tên công ty", "Company name"],
    },
    Spelling {
        field: Field::Revenue,
        name: "revenue",
        vi: "Doanh thu",
        en: "Revenue",
        others: &[],
    },
    Spelling {
        field: Field::Attributes,
        name: "attributes",
        vi: "Thuộc tính",
        en: "Attributes",
        others: &[],
    },
    Spelling {
        field: Field::ProfileCompletion,
        name: "profile_completion",
        vi: "Mức hoàn thiện hồ sơ",
        en: "Profile completion",
        others: &[],
    },
    Spelling {
        field: Field::LastContactTime,
        name: "last_contact_time",
        vi: "Lần liên hệ cuối",
        en: "Last contact",
        others: &[],
    },
    Spelling {
        field: Field::CreateTime,
        name: "create_time",
        vi: "Ngày tạo",
        en: "Created",
        others: &[],
    },
    Spelling {
        field: Field::UpdateTime,
        name: "update_time",
        vi: "Ngày cập nhật",
        en: "Updated",
        others: &[],
    },
    Spelling {
        field: Field::DeleteTime,
        name: "delete_time",
        vi: "Ngày xóa",
        en: "Deleted",
        others: &[],
    },
];

/// The columns the errors file adds before a row's own values. An import
/// skips them, so a corrected errors file can be imported as it is.
pub const ERRORS_FILE_COLUMNS: [&str; 2] = ["error_row", "error_reason"];

/// The prefix of a column holding one attribute.
const ATTRIBUTE_PREFIX: &str = "attributes.";

impl Field {
    /// Every field, in export column order.
    pub const ALL: [Self; 17] = [
        Self::Id,
        Self::Name,
        Self::Phone,
        Self::Email,
        Self::OwnerId,
        Self::Source,
        Self::Relationship,
        Self::Groups,
        Self::Province,
        Self::Company,
        Self::Revenue,
        Self::Attributes,
        Self::ProfileCompletion,
        Self::LastContactTime,
        Self::CreateTime,
        Self::UpdateTime,
        Self::DeleteTime,
    ];

    fn spelling(self) -> &'static Spelling {
        // SPELLINGS lists the fields in declaration order; a unit test
        // holds the two together.
        &SPELLINGS[self as usize]
    }

    /// The field name (`owner_id`).
    pub fn name(self) -> &'static str {
        self.spelling().name
    }

    /// The header of this field's column in an export.
    pub fn label(self, labels: Labels) -> &'static str {
        let spelling = self.spelling();
        match labels {
            Labels::Field => spelling.name,
            Labels::Vi => spelling.vi,
            Labels::En => spelling.en,
        }
    }

    /// Whether only the server sets it: an import skips its column.
    pub fn output_only(self) -> bool {
        matches!(
            self,
            Self::ProfileCompletion
                | Self::LastContactTime
                | Self::CreateTime
                | Self::UpdateTime
                | Self::DeleteTime
        )
    }
}

/// What one column of an import file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// A field.
    Field(Field),
    /// One attribute, under this key.
    Attribute(String),
    /// A column an import does not read: an output-only field or a column
    /// of the errors file.
    Skipped,
    /// A column with an empty header: its cells must be empty too.
    Unnamed,
}

/// The columns of an import file, matched from its header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// One per header cell, in file order.
    pub columns: Vec<Column>,
    /// The header cells of skipped named columns, to tell the user.
    pub skipped: Vec<String>,
}

impl Layout {
    /// Whether some column holds `field`.
    pub fn has(&self, field: Field) -> bool {
        self.columns.contains(&Column::Field(field))
    }
}

/// Why a header row cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Columns matching no field.
    #[error(
        "unknown column{} {}; columns are named by field (id, name, phone, email, owner_id, source, relationship, groups, province, company, revenue, attributes, attributes.KEY) or by their Vietnamese or English labels (see the README)",
        if .0.len() == 1 { "" } else { "s" },
        quote_list(.0)
    )]
    Unknown(Vec<String>),
    /// Two columns for one field.
    #[error("columns {} both hold {}", quote_list(.columns), .field)]
    Duplicate {
        /// The field's name.
        field: String,
        /// The header cells naming it.
        columns: Vec<String>,
    },
    /// No header at all.
    #[error("the file has no header row")]
    Empty,
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("\"{item}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every accepted spelling, folded, and the field it names.
fn spellings() -> HashMap<String, Field> {
    let mut map = HashMap::new();
    for spelling in &SPELLINGS {
        let all = [spelling.name, spelling.vi, spelling.en];
        for text in all.iter().chain(spelling.others) {
            map.insert(fold(text), spelling.field);
        }
    }
    map
}

/// Matches a header row to columns. Unknown and duplicate columns are
/// errors, reported before any row is read.
pub fn match_header(header: &[String]) -> Result<Layout, HeaderError> {
    if header.iter().all(|cell| cell.trim().is_empty()) {
        return Err(HeaderError::Empty);
    }
    let known = spellings();
    let skipped_names: Vec<String> = ERRORS_FILE_COLUMNS.iter().map(|c| fold(c)).collect();
    let mut columns = Vec::with_capacity(header.len());
    let mut skipped = Vec::new();
    let mut unknown = Vec::new();
    let mut seen: HashMap<Field, Vec<String>> = HashMap::new();
    let mut seen_keys: HashMap<String, Vec<String>> = HashMap::new();
    for cell in header {
        let text = cell.trim();
        if text.is_empty() {
            columns.push(Column::Unnamed);
            continue;
        }
        if let Some(key) = attribute_key(text) {
            seen_keys
                .entry(key.to_owned())
                .or_default()
                .push(text.to_owned());
            columns.push(Column::Attribute(key.to_owned()));
            continue;
        }
        let folded = fold(text);
        if let Some(field) = known.get(&folded) {
            if field.output_only() {
                skipped.push(text.to_owned());
                columns.push(Column::Skipped);
            } else {
                seen.entry(*field).or_default().push(text.to_owned());
                columns.push(Column::Field(*field));
            }
        } else if skipped_names.contains(&folded) {
            skipped.push(text.to_owned());
            columns.push(Column::Skipped);
        } else {
            unknown.push(text.to_owned());
        }
    }
    if !unknown.is_empty() {
        return Err(HeaderError::Unknown(unknown));
    }
    for field in Field::ALL {
        if let Some(names) = seen.get(&field).filter(|names| names.len() > 1) {
            return Err(HeaderError::Duplicate {
                field: field.name().to_owned(),
                columns: names.clone(),
            });
        }
    }
    let mut keys: Vec<_> = seen_keys.into_iter().filter(|(_, v)| v.len() > 1).collect();
    keys.sort();
    if let Some((key, names)) = keys.into_iter().next() {
        return Err(HeaderError::Duplicate {
            field: format!("{ATTRIBUTE_PREFIX}{key}"),
            columns: names,
        });
    }
    Ok(Layout { columns, skipped })
}

/// The key of an `attributes.KEY` header (prefix in any case, key as
/// written: the server checks keys, and folding one could merge two).
fn attribute_key(header: &str) -> Option<&str> {
    let prefix = header.get(..ATTRIBUTE_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(ATTRIBUTE_PREFIX) {
        return None;
    }
    let key = header[ATTRIBUTE_PREFIX.len()..].trim();
    (!key.is_empty()).then_some(key)
}

/// The header of an `attributes.KEY` column.
pub fn attribute_header(key: &str) -> String {
    format!("{ATTRIBUTE_PREFIX}{key}")
}

/// The label table (field, Vietnamese, English); a unit test keeps the
/// README's table equal to it.
pub fn label_table() -> Vec<[&'static str; 3]> {
    SPELLINGS.iter().map(|s| [s.name, s.vi, s.en]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    fn fields(layout: &Layout) -> Vec<Option<Field>> {
        layout
            .columns
            .iter()
            .map(|c| match c {
                Column::Field(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_table_follows_the_field_order_and_no_two_fields_fold_alike() {
        for (field, spelling) in Field::ALL.iter().zip(&SPELLINGS) {
            assert_eq!(*field, spelling.field);
        }
        let mut owner: HashMap<String, Field> = HashMap::new();
        for spelling in &SPELLINGS {
            let all = [spelling.name, spelling.vi, spelling.en];
            for text in all.iter().chain(spelling.others) {
                let folded = fold(text);
                assert!(!folded.is_empty(), "{text} folds to nothing");
                if let Some(other) = owner.insert(folded.clone(), spelling.field) {
                    assert_eq!(other, spelling.field, "{text} ({folded}) names two fields");
                }
            }
        }
        for name in ERRORS_FILE_COLUMNS {
            assert!(!owner.contains_key(&fold(name)));
        }
    }

    #[test]
    fn field_names_and_labels_in_either_language_match() {
        let layout = match_header(&header(&[
            "name",
            "Số điện thoại",
            "EMAIL",
            "Người phụ trách",
            "Source",
            "mối quan hệ",
            "Nhóm khách hàng",
            "Province/City",
            "Công ty",
            "Doanh thu",
            "attributes",
            "Mã khách hàng",
        ]))
        .unwrap();
        assert_eq!(
            fields(&layout),
            [
                Field::Name,
                Field::Phone,
                Field::Email,
                Field::OwnerId,
                Field::Source,
                Field::Relationship,
                Field::Groups,
                Field::Province,
                Field::Company,
                Field::Revenue,
                Field::Attributes,
                Field::Id,
            ]
            .map(Some)
        );
    }

    #[test]
    fn case_accents_punctuation_and_spacing_do_not_matter() {
        for spelling in [
            "Tên khách hàng",
            "ten khach hang",
            "  TÊN   KHÁCH HÀNG ",
            "Ten-khach-hang",
            "customer name",
            "Customer  Name",
            "Tên khách hàng", // combining marks
        ] {
            let layout = match_header(&header(&[spelling])).unwrap();
            assert_eq!(fields(&layout), [Some(Field::Name)], "{spelling}");
        }
        let layout = match_header(&header(&["tinh thanh pho", "SDT", "owner id"])).unwrap();
        assert_eq!(
            fields(&layout),
            [
                Some(Field::Province),
                Some(Field::Phone),
                Some(Field::OwnerId)
            ]
        );
    }

    #[test]
    fn unknown_columns_are_named_together() {
        let err = match_header(&header(&["name", "Fax", "phone", "Ghi chú"])).unwrap_err();
        assert_eq!(
            err,
            HeaderError::Unknown(vec!["Fax".to_owned(), "Ghi chú".to_owned()])
        );
        let message = err.to_string();
        assert!(message.contains("\"Fax\", \"Ghi chú\""), "{message}");
    }

    #[test]
    fn one_field_in_two_columns_is_refused() {
        let err = match_header(&header(&["phone", "Số điện thoại"])).unwrap_err();
        assert_eq!(
            err,
            HeaderError::Duplicate {
                field: "phone".to_owned(),
                columns: vec!["phone".to_owned(), "Số điện thoại".to_owned()],
            }
        );
        assert!(matches!(
            match_header(&header(&["attributes.tier", "Attributes.tier"])),
            Err(HeaderError::Duplicate { .. })
        ));
    }

    #[test]
    fn attribute_columns_keep_their_key() {
        let layout =
            match_header(&header(&["name", "attributes.tier", "Attributes.Region "])).unwrap();
        assert_eq!(
            layout.columns,
            [
                Column::Field(Field::Name),
                Column::Attribute("tier".to_owned()),
                Column::Attribute("Region".to_owned()),
            ]
        );
        // A bare prefix names no attribute: it is the JSON column.
        assert_eq!(
            match_header(&header(&["attributes."])).unwrap().columns,
            [Column::Field(Field::Attributes)]
        );
    }

    #[test]
    fn output_only_errors_file_and_blank_columns_are_skipped() {
        let layout = match_header(&header(&[
            "error_row",
            "error_reason",
            "name",
            "create_time",
            "Lần liên hệ cuối",
            "",
        ]))
        .unwrap();
        assert_eq!(
            layout.columns,
            [
                Column::Skipped,
                Column::Skipped,
                Column::Field(Field::Name),
                Column::Skipped,
                Column::Skipped,
                Column::Unnamed,
            ]
        );
        assert_eq!(
            layout.skipped,
            [
                "error_row",
                "error_reason",
                "create_time",
                "Lần liên hệ cuối"
            ]
        );
    }

    #[test]
    fn a_blank_header_is_no_header() {
        assert_eq!(match_header(&header(&["", " "])), Err(HeaderError::Empty));
        assert_eq!(match_header(&[]), Err(HeaderError::Empty));
    }

    #[test]
    fn the_readme_lists_the_label_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        for [field, vi, en] in label_table() {
            let row = format!("| `{field}` | {vi} | {en} |");
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }

    #[test]
    fn export_labels_come_from_the_table() {
        assert_eq!(Field::Phone.label(Labels::Field), "phone");
        assert_eq!(Field::Phone.label(Labels::Vi), "Số điện thoại");
        assert_eq!(Field::Groups.label(Labels::En), "Customer groups");
        // Every export label reads back as its field.
        for labels in [Labels::Field, Labels::Vi, Labels::En] {
            let cells: Vec<String> = Field::ALL
                .iter()
                .filter(|f| !f.output_only())
                .map(|f| f.label(labels).to_owned())
                .collect();
            let layout = match_header(&cells).unwrap();
            let expected: Vec<_> = Field::ALL
                .iter()
                .filter(|f| !f.output_only())
                .map(|f| Some(*f))
                .collect();
            assert_eq!(fields(&layout), expected, "{labels:?}");
        }
    }
}
