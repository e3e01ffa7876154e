//! The one table of what each RPC requires of a token: every method of
//! the `crm.v1` services has an entry, and a method without one is denied.

/// A permission a token grants in its `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Reads, counts, reports, previews, exports, watches.
    Read,
    /// Customer changes, memberships, contacts, imports.
    Write,
    /// The catalogs (groups, sources, relationships) and a real
    /// (not dry-run) ApplyInactivityRules.
    Admin,
    /// Naming another actor in `x-actor-id` (a service acting for a user).
    ActAs,
}

impl Scope {
    /// The scope's name in a token.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Read => "crm.read",
            Self::Write => "crm.write",
            Self::Admin => "crm.admin",
            Self::ActAs => "crm.act_as",
        }
    }

    /// The scope a token names, if it is one of ours.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::Admin, Self::ActAs]
            .into_iter()
            .find(|scope| scope.name() == name)
    }
}

use Scope::{Admin, Read, Write};

/// Every RPC of the service and the scope it requires. ApplyInactivityRules
/// asks `crm.read` here (its dry run only reads); its handler asks
/// `crm.admin` of a run that moves customers, which only the request's body
/// tells.
pub const REQUIRED: &[(&str, Scope)] = &[
    ("/crm.v1.CustomerService/CreateCustomer", Write),
    ("/crm.v1.CustomerService/GetCustomer", Read),
    ("/crm.v1.CustomerService/ListCustomers", Read),
    ("/crm.v1.CustomerService/UpdateCustomer", Write),
    ("/crm.v1.CustomerService/DeleteCustomer", Write),
    ("/crm.v1.CustomerService/RestoreCustomer", Write),
    ("/crm.v1.CustomerService/ChangeRelationship", Write),
    ("/crm.v1.CustomerService/BatchChangeRelationship", Write),
    ("/crm.v1.CustomerService/AddCustomersToGroup", Write),
    ("/crm.v1.CustomerService/RemoveCustomersFromGroup", Write),
    ("/crm.v1.CustomerService/RecordContact", Write),
    ("/crm.v1.CustomerService/ListContacts", Read),
    ("/crm.v1.CustomerService/ListRelationshipHistory", Read),
    ("/crm.v1.CustomerService/CountCustomersByRelationship", Read),
    ("/crm.v1.CustomerService/ImportCustomers", Write),
    ("/crm.v1.CustomerService/ExportCustomers", Read),
    ("/crm.v1.CustomerService/GetGroupOverlap", Read),
    ("/crm.v1.CustomerService/GetGroupReport", Read),
    ("/crm.v1.GroupService/CreateGroup", Admin),
    ("/crm.v1.GroupService/GetGroup", Read),
    ("/crm.v1.GroupService/ListGroups", Read),
    ("/crm.v1.GroupService/UpdateGroup", Admin),
    ("/crm.v1.GroupService/DeleteGroup", Admin),
    ("/crm.v1.GroupService/RestoreGroup", Admin),
    ("/crm.v1.GroupService/ListGroupMembers", Read),
    ("/crm.v1.GroupService/PreviewGroupRule", Read),
    // Pins are manual membership adjustments: a membership change.
    ("/crm.v1.GroupService/ClearGroupPins", Write),
    ("/crm.v1.GroupService/WatchGroupMembershipChanges", Read),
    ("/crm.v1.RelationshipService/CreateRelationship", Admin),
    ("/crm.v1.RelationshipService/GetRelationship", Read),
    ("/crm.v1.RelationshipService/ListRelationships", Read),
    ("/crm.v1.RelationshipService/UpdateRelationship", Admin),
    ("/crm.v1.RelationshipService/DeleteRelationship", Admin),
    ("/crm.v1.RelationshipService/RestoreRelationship", Admin),
    ("/crm.v1.RelationshipService/WatchRelationshipChanges", Read),
    ("/crm.v1.RelationshipService/ApplyInactivityRules", Read),
    ("/crm.v1.RelationshipService/GetRelationshipFlow", Read),
    ("/crm.v1.RelationshipService/GetOwnerReport", Read),
    ("/crm.v1.SourceService/CreateSource", Admin),
    ("/crm.v1.SourceService/GetSource", Read),
    ("/crm.v1.SourceService/ListSources", Read),
    ("/crm.v1.SourceService/UpdateSource", Admin),
    ("/crm.v1.SourceService/DeleteSource", Admin),
    ("/crm.v1.SourceService/RestoreSource", Admin),
    ("/crm.v1.SourceService/GetSourceReport", Read),
];

/// Paths every caller may use without a token: health checks (load
/// balancers and orchestrators carry none).
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/"];

/// Server reflection, open unless `--reflection=false` removes it.
const REFLECTION_PREFIXES: &[&str] = &[
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// What a call to `path` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No token (health, reflection).
    Open,
    /// A token with this scope.
    Token(Scope),
    /// Not in the table: denied to everyone.
    Unlisted,
}

/// What a call to `path` needs.
pub fn requirement(path: &str) -> Requirement {
    if OPEN_PREFIXES
        .iter()
        .chain(REFLECTION_PREFIXES)
        .any(|prefix| path.starts_with(prefix))
    {
        return Requirement::Open;
    }
    REQUIRED
        .iter()
        .find(|(method, _)| *method == path)
        .map_or(Requirement::Unlisted, |(_, scope)| {
            Requirement::Token(*scope)
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message;

    use super::*;

    /// Every method of every crm.v1 service, read from the descriptor set
    /// the server publishes through reflection.
    fn published_methods() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut methods = Vec::new();
        for file in set.file {
            let package = file.package().to_owned();
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
        methods
    }

    #[test]
    fn every_published_rpc_has_an_entry_and_every_entry_is_published() {
        let published = published_methods();
        assert!(
            published.len() > 40,
            "only {} methods found",
            published.len()
        );
        let unlisted: Vec<&String> = published
            .iter()
            .filter(|path| requirement(path) == Requirement::Unlisted)
            .collect();
        assert!(unlisted.is_empty(), "RPCs without a scope: {unlisted:?}");
        let published: HashSet<&str> = published.iter().map(String::as_str).collect();
        let stale: Vec<&str> = REQUIRED
            .iter()
            .map(|(path, _)| *path)
            .filter(|path| !published.contains(path))
            .collect();
        assert!(
            stale.is_empty(),
            "entries for RPCs that do not exist: {stale:?}"
        );
        let distinct: HashSet<&str> = REQUIRED.iter().map(|(path, _)| *path).collect();
        assert_eq!(distinct.len(), REQUIRED.len(), "an RPC is listed twice");
    }

    #[test]
    fn a_method_missing_from_the_table_is_denied_and_health_is_open() {
        assert_eq!(
            requirement("/crm.v1.CustomerService/DropEverything"),
            Requirement::Unlisted
        );
        assert_eq!(
            requirement("/crm.v1.CustomerService/GetCustomer/"),
            Requirement::Unlisted
        );
        assert_eq!(
            requirement("/grpc.health.v1.Health/Check"),
            Requirement::Open
        );
        assert_eq!(
            requirement("/crm.v1.GroupService/CreateGroup"),
            Requirement::Token(Scope::Admin)
        );
    }

    #[test]
    fn scope_names_round_trip() {
        for scope in [Scope::Read, Scope::Write, Scope::Admin, Scope::ActAs] {
            assert_eq!(Scope::parse(scope.name()), Some(scope));
        }
        assert_eq!(Scope::parse("crm.READ"), None);
    }
}
