//! Who a request is for (the tenant) and who makes it (the actor).

use crate::error::{AppError, AppResult};

/// Tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";
/// Longest tenant id.
pub const TENANT_MAX_LEN: usize = 64;
/// Longest actor id.
pub const ACTOR_MAX_LEN: usize = 200;

/// A validated tenant id: 1–64 of `A-Z a-z 0-9 _ . -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Validates the `x-tenant-id` value; `None` means the default tenant.
    pub fn parse(raw: Option<&str>) -> AppResult<Self> {
        let Some(raw) = raw else {
            return Ok(Self(DEFAULT_TENANT.to_owned()));
        };
        let ok = !raw.is_empty()
            && raw.len() <= TENANT_MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(AppError::invalid(
                "x-tenant-id",
                format!("must be 1–{TENANT_MAX_LEN} of A–Z, a–z, 0–9, `_`, `.` and `-`"),
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who acted, from `x-actor-id`; empty when not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// Validates the `x-actor-id` value.
    pub fn parse(raw: Option<&str>) -> AppResult<Self> {
        let raw = raw.unwrap_or_default().trim();
        if raw.chars().count() > ACTOR_MAX_LEN || raw.chars().any(char::is_control) {
            return Err(AppError::invalid(
                "x-actor-id",
                format!("must be at most {ACTOR_MAX_LEN} printable characters"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// The tenant and actor of one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The tenant whose rows the request may see.
    pub tenant: TenantId,
    /// Who acted.
    pub actor: Actor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_defaults_and_rejects_odd_characters() {
        assert_eq!(TenantId::parse(None).unwrap().as_str(), "default");
        assert_eq!(
            TenantId::parse(Some("acme-1.vn")).unwrap().as_str(),
            "acme-1.vn"
        );
        assert!(TenantId::parse(Some("")).is_err());
        assert!(TenantId::parse(Some("a b")).is_err());
        assert!(TenantId::parse(Some(&"a".repeat(65))).is_err());
    }
}
