//! One error type for the whole service, the single place where database
//! errors are classified, and the single mapping from errors to gRPC statuses.

use std::{collections::HashMap, future::Future, ops::Deref, sync::Mutex, time::Duration};

use sea_orm::{DbErr, RuntimeErr};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    telemetry::{REPEAT_EVERY, Throttle},
    warn_throttled,
};

/// One bad input field: its path in the request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `group.name` or `update_mask`.
    pub field: String,
    /// What is wrong, in words a caller can act on.
    pub description: String,
    /// A stable SCREAMING_SNAKE_CASE code for programs (`UNKNOWN_ID`,
    /// `PAGE_TOKEN_INVALID`, …); empty where the field name says enough.
    pub reason: &'static str,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
            reason: "",
        }
    }

    /// The violation with a stable `reason` code.
    pub fn because(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
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
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// Bad input: one entry per offending field.
    #[error("invalid argument: {}", describe_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist in this tenant.
    #[error("{resource} {} not found", quoted(.id))]
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
    /// A statement ran past its time limit and the database stopped it
    /// (PostgreSQL cancelled it, SQLite interrupted it); its transaction
    /// rolled back. Carries the database's words, for the log.
    #[error("the statement ran past its time limit and was cancelled: {0}")]
    DeadlineExceeded(String),
    /// A transient write conflict that survived every retry.
    #[error("write conflict ({0:?})")]
    Conflict(ConflictKind),
    /// A bug or an unexpected database answer; details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The `domain` of the `google.rpc.ErrorInfo` details this service sends.
pub const ERROR_DOMAIN: &str = "crm-classify";

/// Shorthand for results in this crate.
pub type AppResult<T> = Result<T, AppError>;

/// Most characters of a caller's value an error message repeats.
pub const ECHO_MAX_CHARS: usize = 64;
/// Longest status message, in bytes, whatever the input.
pub const MESSAGE_MAX_BYTES: usize = 1000;
/// Longest field path and description of one field violation, in bytes.
const FIELD_MAX_BYTES: usize = 100;
const DESCRIPTION_MAX_BYTES: usize = 256;
/// Most field violations one status carries; more are counted in the
/// message. With the limits above the details stay under 3 KB, well inside
/// the 8 KB of metadata gRPC clients accept by default.
const VIOLATIONS_MAX: usize = 5;

tokio::task_local! {
    /// The `--query-timeout` of the server handling the current call, for
    /// the message of DEADLINE_EXCEEDED (see [`with_query_timeout`]).
    static QUERY_TIMEOUT: Duration;
}

/// Runs `call` (the handling of one call) knowing the server's
/// `--query-timeout`, which DEADLINE_EXCEEDED then names.
pub fn with_query_timeout<F: Future>(
    timeout: Duration,
    call: F,
) -> impl Future<Output = F::Output> {
    QUERY_TIMEOUT.scope(timeout, call)
}

/// DEADLINE_EXCEEDED for a cancelled statement: the limit when known
/// (always inside a call), what to do about it, and ErrorInfo
/// `QUERY_TIMEOUT` (with the limit in milliseconds) for programs.
fn deadline_exceeded() -> Status {
    let timeout = QUERY_TIMEOUT.try_with(|t| *t).ok();
    let limit = timeout
        .map(|t| format!(" ({})", humantime::format_duration(t)))
        .unwrap_or_default();
    let metadata: HashMap<String, String> = timeout
        .map(|t| ("query_timeout_ms".to_owned(), t.as_millis().to_string()))
        .into_iter()
        .collect();
    Status::with_error_details(
        Code::DeadlineExceeded,
        format!(
            "the query took longer than the query timeout{limit} and was cancelled; \
             narrow the filter, or retry later if the service is busy"
        ),
        ErrorDetails::with_error_info("QUERY_TIMEOUT", ERROR_DOMAIN, metadata),
    )
}

/// Every request fails alike while the database is away: one warning per
/// interval says so, not one per request.
static UNAVAILABLE_WARNINGS: Mutex<Throttle> = Mutex::new(Throttle::new(REPEAT_EVERY));

/// A caller's value as an error message repeats it: in backticks, and when
/// longer than [`ECHO_MAX_CHARS`] its start, an ellipsis and its length.
/// Messages and BadRequest details stay small whatever was sent.
pub fn quoted(raw: &str) -> String {
    match raw.char_indices().nth(ECHO_MAX_CHARS) {
        None => format!("`{raw}`"),
        Some((end, _)) => format!("`{}…` ({} bytes)", &raw[..end], raw.len()),
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), marked
/// with an ellipsis when cut: the last guard on what a status carries.
fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn describe_violations(violations: &[FieldViolation]) -> String {
    let mut text = violations
        .iter()
        .take(VIOLATIONS_MAX)
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    if violations.len() > VIOLATIONS_MAX {
        text.push_str(&format!(
            " (and {} more)",
            violations.len() - VIOLATIONS_MAX
        ));
    }
    text
}

impl AppError {
    /// The same error, with violations of field `from` told as violations
    /// of field `to`.
    pub fn for_field(self, from: &str, to: &str) -> Self {
        match self {
            Self::InvalidArgument(mut violations) => {
                for v in violations.iter_mut().filter(|v| v.field == from) {
                    v.field = to.to_owned();
                }
                Self::InvalidArgument(violations)
            }
            other => other,
        }
    }

    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// INVALID_ARGUMENT on `field` with a stable `reason` code.
    pub fn invalid_because(
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self::InvalidArgument(vec![
            FieldViolation::new(field, description).because(reason),
        ])
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
            let code = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .unwrap_or_default();
            match code & 0xff {
                // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
                5 | 6 => Some(AppError::Conflict(ConflictKind::Serialization)),
                // SQLITE_INTERRUPT: the statement time limit
                // (store::db::sqlite_deadline).
                9 => Some(AppError::DeadlineExceeded(db.message().to_owned())),
                _ => None,
            }
        }
        Error::Database(db) => match db.code().unwrap_or_default().deref() {
            // PostgreSQL: serialization_failure, deadlock_detected.
            "40001" | "40P01" => Some(AppError::Conflict(ConflictKind::Serialization)),
            // PostgreSQL: query_canceled, which `statement_timeout` raises
            // (the service sends no cancel requests of its own).
            "57014" => Some(AppError::DeadlineExceeded(db.message().to_owned())),
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
                let violations: Vec<FieldViolation> = violations
                    .into_iter()
                    .map(|v| FieldViolation {
                        field: clip(v.field, FIELD_MAX_BYTES),
                        description: clip(v.description, DESCRIPTION_MAX_BYTES),
                        reason: v.reason,
                    })
                    .collect();
                let message = clip(
                    format!("invalid argument: {}", describe_violations(&violations)),
                    MESSAGE_MAX_BYTES,
                );
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .take(VIOLATIONS_MAX)
                        .map(|v| tonic_types::FieldViolation {
                            field: v.field,
                            description: v.description,
                            reason: v.reason.to_owned(),
                            localized_message: None,
                        })
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            AppError::NotFound { resource, id } => Status::with_error_details(
                Code::NotFound,
                format!("{resource} {} not found", quoted(&id)),
                ErrorDetails::with_resource_info(
                    resource,
                    clip(id, FIELD_MAX_BYTES),
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
                clip(message, MESSAGE_MAX_BYTES),
                ErrorDetails::with_resource_info(
                    resource,
                    clip(existing_id, FIELD_MAX_BYTES),
                    "",
                    "the existing resource",
                ),
            ),
            AppError::FailedPrecondition {
                reason,
                subject,
                message,
            } => {
                let message = clip(message, MESSAGE_MAX_BYTES);
                Status::with_error_details(
                    Code::FailedPrecondition,
                    message.clone(),
                    ErrorDetails::with_precondition_failure_violation(
                        reason,
                        clip(subject, FIELD_MAX_BYTES),
                        message,
                    ),
                )
            }
            AppError::Aborted(message) => Status::aborted(clip(message, MESSAGE_MAX_BYTES)),
            AppError::Busy(message) => Status::unavailable(clip(message, MESSAGE_MAX_BYTES)),
            AppError::OutOfRange(message) => Status::out_of_range(clip(message, MESSAGE_MAX_BYTES)),
            AppError::Unavailable(detail) => {
                let mut throttle = UNAVAILABLE_WARNINGS
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                warn_throttled!(throttle, %detail, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            AppError::DeadlineExceeded(detail) => {
                tracing::info!(%detail, "a statement ran past its time limit");
                deadline_exceeded()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of error, each carrying `huge` wherever a caller's value
    /// can end up.
    fn every_error(huge: &str) -> Vec<AppError> {
        let many = (0..50)
            .map(|i| FieldViolation::new(format!("{huge}[{i}]"), huge))
            .collect();
        vec![
            AppError::invalid(huge, huge),
            AppError::InvalidArgument(many),
            crate::domain::ids::parse("id", huge).unwrap_err(),
            crate::domain::text::code("code", huge).unwrap_err(),
            crate::domain::customer::phone("phone", &format!("x{huge}")).unwrap_err(),
            crate::domain::customer::email("email", huge).unwrap_err(),
            crate::domain::customer::CustomerOrder::parse(huge).unwrap_err(),
            AppError::not_found("group", huge),
            AppError::AlreadyExists {
                resource: "group",
                existing_id: huge.to_owned(),
                message: huge.to_owned(),
            },
            AppError::precondition("REASON", huge, huge),
            AppError::Aborted(huge.to_owned()),
            AppError::Busy(huge.to_owned()),
            AppError::OutOfRange(huge.to_owned()),
            AppError::Unavailable(huge.to_owned()),
            AppError::DeadlineExceeded(huge.to_owned()),
            AppError::Internal(huge.to_owned()),
        ]
    }

    #[test]
    fn statuses_stay_small_whatever_the_input() {
        for huge in [
            "x".repeat(1 << 20),
            "ạ".repeat(1 << 18),
            "\u{1F600}".repeat(3),
        ] {
            for error in every_error(&huge) {
                let kind = format!("{error:?}").chars().take(40).collect::<String>();
                let status = Status::from(error);
                assert!(
                    status.message().len() < 1024,
                    "{kind}: message of {} bytes",
                    status.message().len()
                );
                assert!(
                    status.details().len() < 3 * 1024,
                    "{kind}: details of {} bytes",
                    status.details().len()
                );
            }
        }
    }

    #[test]
    fn echoed_values_keep_a_short_prefix_and_say_how_long_they_were() {
        assert_eq!(quoted("abc"), "`abc`");
        let long = "ạ".repeat(1000);
        let echo = quoted(&long);
        assert!(echo.starts_with(&format!("`{}…`", "ạ".repeat(ECHO_MAX_CHARS))));
        assert!(echo.ends_with("(3000 bytes)"), "{echo}");
    }

    #[tokio::test]
    async fn deadline_exceeded_names_the_query_timeout_of_the_call() {
        let status = with_query_timeout(Duration::from_millis(1500), async {
            Status::from(AppError::DeadlineExceeded("canceling statement".into()))
        })
        .await;
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(
            status
                .message()
                .starts_with("the query took longer than the query timeout (1s 500ms) and was cancelled; narrow the filter"),
            "{}",
            status.message()
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("QUERY_TIMEOUT", ERROR_DOMAIN)
        );
        assert_eq!(info.metadata["query_timeout_ms"], "1500");
        // Outside a call (a stream's task) the limit goes unnamed.
        let status = Status::from(AppError::DeadlineExceeded("interrupted".into()));
        assert!(
            status
                .message()
                .starts_with("the query took longer than the query timeout and was cancelled"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn clipping_cuts_on_a_character_boundary() {
        let clipped = clip("ạ".repeat(100), 50);
        assert!(clipped.len() <= 50);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short".to_owned(), 50), "short");
    }

    #[test]
    fn invalid_argument_details_name_the_first_violations() {
        let status = Status::from(AppError::InvalidArgument(
            (0..20)
                .map(|i| FieldViolation::new(format!("f{i}"), "bad"))
                .collect(),
        ));
        let details = status.get_details_bad_request().expect("BadRequest");
        assert_eq!(details.field_violations.len(), VIOLATIONS_MAX);
        assert!(
            status.message().ends_with("(and 15 more)"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_violation_carries_its_reason_code_to_the_client() {
        let status = Status::from(AppError::InvalidArgument(vec![
            FieldViolation::new("page_token", "is not a token this service issued")
                .because("PAGE_TOKEN_INVALID"),
            FieldViolation::new("customer.name", "is required"),
        ]));
        let details = status.get_details_bad_request().expect("BadRequest");
        let reasons: Vec<&str> = details
            .field_violations
            .iter()
            .map(|v| v.reason.as_str())
            .collect();
        assert_eq!(reasons, ["PAGE_TOKEN_INVALID", ""]);
    }
}
