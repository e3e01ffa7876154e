//! The tower layer that authenticates and authorizes every call before
//! any handler runs: it sees the method path, verifies the bearer token,
//! checks the scope table, and hands the handlers the token's tenant and
//! actor in the `x-tenant-id` and `x-actor-id` metadata they already read.

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{
    Code, Status,
    codegen::http::{self, HeaderMap, HeaderValue},
};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::{
    jwt::{Principal, Refusal, Verifier},
    scopes::{self, Requirement, Scope},
};
use crate::{
    error::ERROR_DOMAIN,
    grpc::{ACTOR_HEADER, TENANT_HEADER},
};

/// Checks calls with `verifier`; with none (`--auth none`) every call
/// passes as it is.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Option<Arc<Verifier>>,
}

impl AuthLayer {
    pub fn new(verifier: Option<Arc<Verifier>>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// A service whose calls are checked first.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    verifier: Option<Arc<Verifier>>,
}

impl<S, B, R> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(verifier) = self.verifier.clone() else {
            return Box::pin(self.inner.call(request));
        };
        // The clone is ready only after poll_ready; call the one that was
        // polled and keep the clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match admit(&verifier, &mut request).await {
                Ok(()) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// Lets a call through (with its tenant and actor set from the token), or
/// says why not.
async fn admit<B>(verifier: &Verifier, request: &mut http::Request<B>) -> Result<(), Status> {
    let requirement = scopes::requirement(request.uri().path());
    if requirement == Requirement::Open {
        return Ok(());
    }
    let token = bearer(request.headers())?;
    let principal = verifier.verify(token).await.map_err(unauthenticated)?;
    let scope = match requirement {
        Requirement::Token(scope) => scope,
        Requirement::Open => return Ok(()),
        Requirement::Unlisted => {
            return Err(denied(
                "METHOD_NOT_ALLOWED",
                "this method is open to no token".to_owned(),
                HashMap::new(),
            ));
        }
    };
    if !principal.has(scope) {
        return Err(denied(
            "MISSING_SCOPE",
            format!("this method needs the `{}` scope", scope.name()),
            HashMap::from([("required_scope".to_owned(), scope.name().to_owned())]),
        ));
    }
    let headers = request.headers_mut();
    bind(headers, TENANT_HEADER, &principal.tenant, || {
        denied(
            "OTHER_TENANT",
            format!("the token is for another tenant than the one `{TENANT_HEADER}` names"),
            HashMap::new(),
        )
    })?;
    if !principal.has(Scope::ActAs) {
        bind(headers, ACTOR_HEADER, &principal.subject, || {
            denied(
                "MISSING_SCOPE",
                format!(
                    "naming another actor in `{ACTOR_HEADER}` needs the `{}` scope",
                    Scope::ActAs.name()
                ),
                HashMap::from([("required_scope".to_owned(), Scope::ActAs.name().to_owned())]),
            )
        })?;
    } else if !headers.contains_key(ACTOR_HEADER) {
        insert(headers, ACTOR_HEADER, &principal.subject)?;
    }
    request.extensions_mut().insert(principal);
    Ok(())
}

/// The token of an `authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Status> {
    const MISSING: Refusal = Refusal {
        reason: "TOKEN_MISSING",
        message: "this call needs `authorization: Bearer <JWT>`",
    };
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(unauthenticated(MISSING));
    };
    let text = value.to_str().map_err(|_| unauthenticated(MISSING))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| unauthenticated(MISSING))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthenticated(MISSING));
    }
    Ok(token.trim())
}

/// Makes metadata `key` say `value`: absent, it is added; naming
/// something else (in any of its copies), `refuse` answers.
fn bind(
    headers: &mut HeaderMap,
    key: &'static str,
    value: &str,
    refuse: impl FnOnce() -> Status,
) -> Result<(), Status> {
    if headers
        .get_all(key)
        .iter()
        .any(|sent| sent.as_bytes() != value.as_bytes())
    {
        return Err(refuse());
    }
    insert(headers, key, value)
}

fn insert(headers: &mut HeaderMap, key: &'static str, value: &str) -> Result<(), Status> {
    // The verifier admits only printable ASCII tenants and subjects.
    let value = HeaderValue::from_str(value)
        .map_err(|_| Status::internal("a verified claim is not valid metadata"))?;
    headers.insert(key, value);
    Ok(())
}

fn unauthenticated(refusal: Refusal) -> Status {
    Status::with_error_details(
        Code::Unauthenticated,
        refusal.message,
        ErrorDetails::with_error_info(refusal.reason, ERROR_DOMAIN, HashMap::new()),
    )
}

fn denied(reason: &str, message: String, metadata: HashMap<String, String>) -> Status {
    Status::with_error_details(
        Code::PermissionDenied,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}

/// Whether the caller of a request may run ApplyInactivityRules for real:
/// always without auth, with `crm.admin` under it.
pub fn may_administer<T>(request: &tonic::Request<T>) -> Result<(), Status> {
    match request.extensions().get::<Arc<Principal>>() {
        Some(principal) if !principal.has(Scope::Admin) => Err(denied(
            "MISSING_SCOPE",
            format!(
                "applying the inactivity rules for real needs the `{}` scope (a dry run needs `{}`)",
                Scope::Admin.name(),
                Scope::Read.name()
            ),
            HashMap::from([("required_scope".to_owned(), Scope::Admin.name().to_owned())]),
        )),
        _ => Ok(()),
    }
}
