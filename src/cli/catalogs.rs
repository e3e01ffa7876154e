//! The tenant's groups, sources and relationships, listed once per command:
//! an import turns the names a file uses into codes, an export turns ids
//! into codes, and both turn the codes or names given on the command line
//! into what the server expects.
//!
//! A value is looked up as, in order: an id; a code exactly; a name
//! exactly (case and Unicode form aside); a code in any case; and, for a
//! value typed without accents, a name without accents when exactly one
//! entry has it. Accents typed are kept: "Nông" never becomes "Nóng".
//! Active entries win over deleted ones with the same name.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use super::{CliError, connect::Connection};
use crate::{
    domain::filter::text::fold,
    pb::{ListGroupsRequest, ListRelationshipsRequest, ListSourcesRequest},
};

/// The largest page the list calls give.
const PAGE: i32 = 1000;

/// One entry of a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Its code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Whether it is deleted.
    pub deleted: bool,
}

/// What a value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// This entry's code.
    Code(String),
    /// Nothing known: sent as given, for the server to judge (an id of an
    /// entry created since, or an unknown code it reports per row).
    AsGiven(String),
    /// Several entries have that name: their codes.
    Ambiguous(Vec<String>),
}

/// The entries of one kind.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// "group", "source" or "relationship", for messages.
    kind: &'static str,
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    by_code: HashMap<String, usize>,
    by_upper_code: HashMap<String, usize>,
    by_name: HashMap<String, Vec<usize>>,
    by_folded: HashMap<String, Vec<usize>>,
}

/// The key names are compared by: NFC, lower case, single spaces.
fn name_key(name: &str) -> String {
    let nfc: String = name.nfc().collect::<String>().to_lowercase();
    nfc.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Catalog {
    /// A catalog of `entries`.
    pub fn new(kind: &'static str, entries: Vec<Entry>) -> Self {
        let mut catalog = Self {
            kind,
            ..Self::default()
        };
        for (index, entry) in entries.iter().enumerate() {
            catalog.by_id.insert(entry.id.clone(), index);
            catalog.by_code.insert(entry.code.clone(), index);
            catalog
                .by_upper_code
                .insert(entry.code.to_uppercase(), index);
            catalog
                .by_name
                .entry(name_key(&entry.name))
                .or_default()
                .push(index);
            catalog
                .by_folded
                .entry(fold(&entry.name))
                .or_default()
                .push(index);
        }
        catalog.entries = entries;
        catalog
    }

    /// The code of the entry with this id.
    pub fn code_of(&self, id: &str) -> Option<&str> {
        self.by_id
            .get(id)
            .map(|&index| self.entries[index].code.as_str())
    }

    /// Of several entries with one name, the active one if only one is;
    /// otherwise all of them.
    fn pick(&self, indexes: &[usize]) -> Result<usize, Vec<String>> {
        let active: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|&i| !self.entries[i].deleted)
            .collect();
        match (active.as_slice(), indexes) {
            ([one], _) | ([], [one]) => Ok(*one),
            ([], many) | (many, _) => {
                let mut codes: Vec<String> =
                    many.iter().map(|&i| self.entries[i].code.clone()).collect();
                codes.sort();
                Err(codes)
            }
        }
    }

    fn find(&self, value: &str) -> Option<Result<usize, Vec<String>>> {
        let value = value.trim();
        if let Some(&index) = self.by_id.get(value).or_else(|| self.by_code.get(value)) {
            return Some(Ok(index));
        }
        if let Some(indexes) = self.by_name.get(&name_key(value)) {
            return Some(self.pick(indexes));
        }
        if let Some(&index) = self.by_upper_code.get(&value.to_uppercase()) {
            return Some(Ok(index));
        }
        if value.is_ascii()
            && let Some(indexes) = self.by_folded.get(&fold(value))
        {
            return Some(self.pick(indexes));
        }
        None
    }

    /// What `value` (an id, code or name) names, for a row of an import.
    pub fn resolve(&self, value: &str) -> Resolved {
        match self.find(value) {
            Some(Ok(index)) => Resolved::Code(self.entries[index].code.clone()),
            Some(Err(codes)) => Resolved::Ambiguous(codes),
            None => Resolved::AsGiven(value.trim().to_owned()),
        }
    }

    /// The code `value` names, for a default given on the command line:
    /// unlike a row's value, an unknown one stops the command.
    pub fn code_for_flag(&self, flag: &str, value: &str) -> Result<String, CliError> {
        self.entry_for_flag(flag, value)
            .map(|entry| entry.code.clone())
    }

    /// The id `value` names, for an export's filter.
    pub fn id_for_flag(&self, flag: &str, value: &str) -> Result<String, CliError> {
        self.entry_for_flag(flag, value)
            .map(|entry| entry.id.clone())
    }

    fn entry_for_flag(&self, flag: &str, value: &str) -> Result<&Entry, CliError> {
        match self.find(value) {
            Some(Ok(index)) => Ok(&self.entries[index]),
            Some(Err(codes)) => Err(CliError::Usage(format!(
                "--{flag} \"{value}\": several {}s have that name; use one of the codes {}",
                self.kind,
                codes.join(", ")
            ))),
            None => Err(CliError::Usage(format!(
                "--{flag} \"{value}\": no {} has that id, code or name",
                self.kind
            ))),
        }
    }
}

/// The tenant's catalogs.
#[derive(Debug, Clone, Default)]
pub struct Catalogs {
    /// Groups.
    pub groups: Catalog,
    /// Sources.
    pub sources: Catalog,
    /// Relationships.
    pub relationships: Catalog,
}

fn call_failed(what: &str, status: &tonic::Status) -> CliError {
    CliError::Server(format!(
        "listing the tenant's {what} failed: {}",
        super::connect::describe_status(status)
    ))
}

/// Every page of a list call: `page` asks for the page after a token and
/// gives its entries and the next token (empty on the last page).
async fn all_pages<F, Fut>(mut page: F) -> Result<Vec<Entry>, CliError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<Entry>, String), CliError>>,
{
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let (more, next) = page(token).await?;
        entries.extend(more);
        if next.is_empty() {
            return Ok(entries);
        }
        token = next;
    }
}

/// Lists every group, source and relationship of the tenant, deleted ones
/// included (a file may name a deleted source: the server then says so).
pub async fn load(connection: &Connection) -> Result<Catalogs, CliError> {
    let groups = all_pages(|page_token| {
        let mut client = connection.groups();
        async move {
            let page = client
                .list_groups(ListGroupsRequest {
                    page_size: PAGE,
                    page_token,
                    show_deleted: true,
                    ..Default::default()
                })
                .await
                .map_err(|s| call_failed("groups", &s))?
                .into_inner();
            let entries = page.groups.into_iter().map(|g| Entry {
                deleted: g.delete_time.is_some(),
                id: g.id,
                code: g.code,
                name: g.name,
            });
            Ok((entries.collect(), page.next_page_token))
        }
    })
    .await?;
    let sources = all_pages(|page_token| {
        let mut client = connection.sources();
        async move {
            let page = client
                .list_sources(ListSourcesRequest {
                    page_size: PAGE,
                    page_token,
                    show_deleted: true,
                    ..Default::default()
                })
                .await
                .map_err(|s| call_failed("sources", &s))?
                .into_inner();
            let entries = page.sources.into_iter().map(|s| Entry {
                deleted: s.delete_time.is_some(),
                id: s.id,
                code: s.code,
                name: s.name,
            });
            Ok((entries.collect(), page.next_page_token))
        }
    })
    .await?;
    let relationships = all_pages(|page_token| {
        let mut client = connection.relationships();
        async move {
            let page = client
                .list_relationships(ListRelationshipsRequest {
                    page_size: PAGE,
                    page_token,
                    show_deleted: true,
                    ..Default::default()
                })
                .await
                .map_err(|s| call_failed("relationships", &s))?
                .into_inner();
            let entries = page.relationships.into_iter().map(|r| Entry {
                deleted: r.delete_time.is_some(),
                id: r.id,
                code: r.code,
                name: r.name,
            });
            Ok((entries.collect(), page.next_page_token))
        }
    })
    .await?;
    Ok(Catalogs {
        groups: Catalog::new("group", groups),
        sources: Catalog::new("source", sources),
        relationships: Catalog::new("relationship", relationships),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, code: &str, name: &str, deleted: bool) -> Entry {
        Entry {
            id: id.to_owned(),
            code: code.to_owned(),
            name: name.to_owned(),
            deleted,
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(
            "relationship",
            vec![
                entry("id-hot", "HOT", "Nóng", false),
                entry("id-farm", "FARM", "Nông", false),
                entry("id-vip", "VIP", "Khách VIP", false),
                entry("id-dn1", "DA_NANG", "Đà Nẵng", false),
                entry("id-dn2", "DA_NANG_2", "Đà Nẵng", false),
                entry("id-old", "WEB_OLD", "Website", true),
                entry("id-web", "WEB", "Website", false),
            ],
        )
    }

    fn code(value: &str) -> Resolved {
        Resolved::Code(value.to_owned())
    }

    #[test]
    fn ids_codes_and_names_resolve_to_codes() {
        let c = catalog();
        assert_eq!(c.resolve("id-hot"), code("HOT"));
        assert_eq!(c.resolve("HOT"), code("HOT"));
        assert_eq!(c.resolve(" hot "), code("HOT"));
        assert_eq!(c.resolve("Nóng"), code("HOT"));
        assert_eq!(c.resolve("NÓNG"), code("HOT"));
        assert_eq!(c.resolve("khách  vip"), code("VIP"));
        // Combining marks equal the precomposed spelling.
        assert_eq!(c.resolve("Nóng"), code("HOT"));
    }

    #[test]
    fn accents_typed_are_kept_and_missing_ones_forgiven_only_when_unambiguous() {
        let c = catalog();
        assert_eq!(c.resolve("Nông"), code("FARM"));
        // "nong" could be either: the row fails saying so.
        assert_eq!(
            c.resolve("nong"),
            Resolved::Ambiguous(vec!["FARM".to_owned(), "HOT".to_owned()])
        );
        assert_eq!(c.resolve("khach vip"), code("VIP"));
        // With accents that match nothing: unknown, not the nearest.
        assert_eq!(c.resolve("Nòng"), Resolved::AsGiven("Nòng".to_owned()));
    }

    #[test]
    fn active_entries_win_and_ties_are_ambiguous() {
        let c = catalog();
        assert_eq!(c.resolve("website"), code("WEB"));
        assert_eq!(
            c.resolve("Đà Nẵng"),
            Resolved::Ambiguous(vec!["DA_NANG".to_owned(), "DA_NANG_2".to_owned()])
        );
        assert_eq!(c.resolve("NOPE"), Resolved::AsGiven("NOPE".to_owned()));
        assert_eq!(c.code_of("id-old"), Some("WEB_OLD"));
    }

    #[test]
    fn flags_must_name_something() {
        let c = catalog();
        assert_eq!(c.code_for_flag("default-source", "Website").unwrap(), "WEB");
        assert_eq!(c.id_for_flag("relationship", "hot").unwrap(), "id-hot");
        let err = c
            .id_for_flag("relationship", "NOPE")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no relationship"), "{err}");
        let err = c.id_for_flag("group", "Đà Nẵng").unwrap_err().to_string();
        assert!(err.contains("DA_NANG, DA_NANG_2"), "{err}");
    }
}
