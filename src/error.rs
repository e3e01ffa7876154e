//! One error type for the whole service, the single place where database
//! errors are classified, and the single mapping from errors to gRPC statuses.

use std::ops::Deref;

use sea_orm::{DbErr, RuntimeErr};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One bad input field: its path in the request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `group.name` or `update_mask`.
    pub field: String,
    /// What is wrong, in words a caller can act on.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Why a write lost a race; such writes are retried before anyone sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// A unique index refused a row that a concurrent transaction also wrote.
    Unique,
    /// The database aborted the transaction (serialization failure, deadlock,
    /// SQLite busy beyond its timeout).
    Serialization,
}

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input: one entry per offending field.
    #[error("invalid argument: {}", describe_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist in this tenant.
    #[error("{resource} `{id}` not found")]
    NotFound {
        /// Resource type, e.g. `group`.
        resource: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A resource with the same unique key exists.
    #[error("{message}")]
    AlreadyExists {
        /// Resource type of the existing row.
        resource: &'static str,
        /// Id of the existing row.
        existing_id: String,
        /// Explanation naming the clashing value.
        message: String,
    },
    /// The request is valid but the resource's state does not allow it.
    #[error("{message}")]
    FailedPrecondition {
        /// Machine-readable reason, e.g. `HAS_ACTIVE_CHILDREN`.
        reason: &'static str,
        /// The resource the reason is about.
        subject: String,
        /// Explanation.
        message: String,
    },
    /// The caller's etag is stale.
    #[error("{0}")]
    Aborted(String),
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The service is stopping (or too busy to take the call); retry, on
    /// another replica or a moment later.
    #[error("{0}")]
    Busy(String),
    /// A position outside what is retained, e.g. a change-stream resume
    /// point that was trimmed.
    #[error("{0}")]
    OutOfRange(String),
    /// A transient write conflict that survived every retry.
    #[error("write conflict ({0:?})")]
    Conflict(ConflictKind),
    /// A bug or an unexpected database answer; details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand for results in this crate.
pub type AppResult<T> = Result<T, AppError>;

fn describe_violations(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl AppError {
    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// FAILED_PRECONDITION with a machine-readable reason.
    pub fn precondition(
        reason: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::FailedPrecondition {
            reason,
            subject: subject.into(),
            message: message.into(),
        }
    }

    /// NOT_FOUND for `resource` `id`.
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            id: id.into(),
        }
    }

    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        if let Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return Self::Conflict(ConflictKind::Unique);
        }
        match &err {
            DbErr::ConnectionAcquire(e) => Self::Unavailable(e.to_string()),
            DbErr::Conn(e) => Self::Unavailable(e.to_string()),
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                classify_sqlx(e.deref()).unwrap_or_else(|| Self::Internal(err.to_string()))
            }
            _ => Self::Internal(err.to_string()),
        }
    }
}

/// Classifies driver errors that `DbErr::sql_err` leaves out.
fn classify_sqlx(err: &sea_orm::sqlx::Error) -> Option<AppError> {
    use sea_orm::sqlx::{Error, sqlite::SqliteError};
    match err {
        Error::Database(db) if db.try_downcast_ref::<SqliteError>().is_some() => {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            let code = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .unwrap_or_default();
            matches!(code & 0xff, 5 | 6).then_some(AppError::Conflict(ConflictKind::Serialization))
        }
        Error::Database(db) => match db.code().unwrap_or_default().deref() {
            // PostgreSQL: serialization_failure, deadlock_detected.
            "40001" | "40P01" => Some(AppError::Conflict(ConflictKind::Serialization)),
            // PostgreSQL: the server is shutting down or refusing connections.
            "57P01" | "57P02" | "57P03" | "53300" => {
                Some(AppError::Unavailable(db.message().to_owned()))
            }
            _ => None,
        },
        Error::Io(e) => Some(AppError::Unavailable(e.to_string())),
        Error::PoolTimedOut | Error::PoolClosed => Some(AppError::Unavailable(err.to_string())),
        _ => None,
    }
}

impl From<AppError> for Status {
    fn from(err: AppError) -> Self {
        match err {
            AppError::InvalidArgument(violations) => {
                let message = format!("invalid argument: {}", describe_violations(&violations));
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            AppError::NotFound { resource, id } => Status::with_error_details(
                Code::NotFound,
                format!("{resource} `{id}` not found"),
                ErrorDetails::with_resource_info(
                    resource,
                    id,
                    "",
                    "no such resource in this tenant",
                ),
            ),
            AppError::AlreadyExists {
                resource,
                existing_id,
                message,
            } => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_resource_info(
                    resource,
                    existing_id,
                    "",
                    "the existing resource",
                ),
            ),
            AppError::FailedPrecondition {
                reason,
                subject,
                message,
            } => Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure_violation(reason, subject, message),
            ),
            AppError::Aborted(message) => Status::aborted(message),
            AppError::Busy(message) => Status::unavailable(message),
            AppError::OutOfRange(message) => Status::out_of_range(message),
            AppError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            AppError::Conflict(ConflictKind::Unique) => Status::already_exists(
                "a concurrent request wrote a row with the same unique key; read it and retry",
            ),
            AppError::Conflict(ConflictKind::Serialization) => {
                Status::aborted("the write conflicted with concurrent writes; retry it")
            }
            AppError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
