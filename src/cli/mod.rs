//! The command-line import and export (`crm-classify import FILE`,
//! `crm-classify export`): clients of a running server's ImportCustomers
//! and ExportCustomers.
//!
//! - [`import`] and [`export`]: the two commands, their flags and flow.
//! - [`columns`]: the fields, their Vietnamese and English labels, and how
//!   a header row is matched to them.
//! - [`read`]: CSV and XLSX files record by record; [`write`]: CSV and XLSX
//!   tables row by row, and the errors file.
//! - [`rows`]: a record as an `ImportRow`; [`catalogs`]: the tenant's
//!   groups, sources and relationships by id, code and name.
//! - [`token`]: `crm-classify token`, an HS256 token for trying
//!   `--auth jwt`.
//! - [`connect`]: the channel, TLS, and the tenant, actor and token metadata;
//!   [`progress`]: the bar or the plain lines on stderr.
//!
//! Exit codes: 0 when everything succeeded, 1 when an import ran to the
//! end but some rows failed, 2 for usage, file and connection errors (and
//! a server that refused or cut the call).

use std::{path::PathBuf, process::ExitCode};

pub mod catalogs;
pub mod columns;
pub mod connect;
pub mod export;
pub mod import;
pub mod progress;
pub mod read;
pub mod rows;
pub mod token;
pub mod write;

/// Exit code: an import ran to the end but some rows failed.
pub const EXIT_ROWS_FAILED: u8 = 1;
/// Exit code: usage, file or connection error.
pub const EXIT_TROUBLE: u8 = 2;

/// Why a command stopped (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value is wrong.
    #[error("{0}")]
    Usage(String),
    /// The input file cannot be used.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An output file cannot be written.
    #[error("{0}")]
    Output(String),
    /// The server cannot be reached.
    #[error("{0}")]
    Connection(String),
    /// The server refused a call or cut it off.
    #[error("{0}")]
    Server(String),
}

impl From<read::ReadError> for CliError {
    fn from(error: read::ReadError) -> Self {
        Self::File {
            path: error.path,
            message: error.message,
        }
    }
}

/// Runs `import` and gives its exit code.
pub async fn import(args: import::ImportArgs) -> ExitCode {
    match import::run(args).await {
        Ok(import::Outcome::AllSucceeded) => ExitCode::SUCCESS,
        Ok(import::Outcome::SomeFailed) => ExitCode::from(EXIT_ROWS_FAILED),
        Err(err) => failed("import", &err),
    }
}

/// Runs `export` and gives its exit code.
pub async fn export(args: export::ExportArgs) -> ExitCode {
    match export::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failed("export", &err),
    }
}

fn failed(command: &str, err: &CliError) -> ExitCode {
    eprintln!("crm-classify {command}: error: {err}");
    ExitCode::from(EXIT_TROUBLE)
}
