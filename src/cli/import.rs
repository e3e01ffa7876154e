//! `crm-classify import FILE`: streams a CSV or XLSX file to a running
//! server's ImportCustomers, writes the failed rows to `FILE.errors.csv`,
//! and exits 0 only when every row succeeded.
//!
//! Three parts run at once, so memory stays bounded whatever the file's
//! size: a reader thread turns records into rows and hands out chunks of
//! 500 through a bounded channel; a pump sends them as row batches on the
//! request stream, each only once the window of rows read but not yet
//! answered has room (4,000); the command itself reads the results, writes
//! the failed rows' original cells (kept only while their row is in that
//! window) and draws the progress.

use std::{collections::VecDeque, path::PathBuf, sync::Arc, time::Duration};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic_types::RpcStatusExt;

use super::{
    CliError,
    catalogs::{self, Catalogs},
    columns::{Field, Layout, match_header},
    connect::{self, ServerArgs, describe_status},
    progress::{Length, Progress, thousands},
    read::{self, Format, Size, Table},
    rows::RowMaker,
    write::ErrorsFile,
};
use crate::pb::{
    ImportCustomersRequest, ImportMatchKey, ImportMode, ImportOptions, ImportOutcome, ImportRow,
    ImportRowBatch, ImportRowResult, ImportSummary, import_customers_request::Payload,
};

/// Rows per batch sent.
const BATCH_ROWS: usize = 500;
/// Encoded bytes per batch at most: the server takes requests of up to
/// 4 MiB; a batch of rows with many long attributes could exceed that.
const BATCH_BYTES: usize = 1024 * 1024;
/// Rows read but not yet answered, at most: what the command keeps in
/// memory, and how far it runs ahead of the server.
const WINDOW_ROWS: usize = 4_000;

/// What each row of an import does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every row creates a customer.
    Create,
    /// A row updates the customer it matches on --match-on, or creates one.
    Upsert,
    /// A row updates the customer it matches; a row matching nobody fails.
    Update,
}

/// What a row is matched to a stored customer on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatchOn {
    /// The phone number, however it is written.
    Phone,
    /// The email address, in any case.
    Email,
    /// The customer's id (the `id` column).
    Id,
}

/// `crm-classify import FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ImportArgs {
    /// The file: .xlsx (first worksheet) or CSV (UTF-8, comma or
    /// semicolon; any other extension).
    pub file: PathBuf,

    /// Connection.
    #[command(flatten)]
    pub server: ServerArgs,

    /// What each row does. The default, upsert, updates the customer a row
    /// matches and creates the others, so running a file again, or a
    /// corrected copy of it, updates what the first run created instead of
    /// failing on every phone number already taken. `create` when every
    /// row must be a new customer; `update` to change existing ones only.
    #[arg(long, value_enum, default_value_t = Mode::Upsert)]
    pub mode: Mode,

    /// What rows are matched on (upsert and update): the phone number,
    /// which almost every customer of a Vietnamese CRM has; the email; or
    /// the `id` column (as an export from the same tenant writes it).
    #[arg(long, value_enum, default_value_t = MatchOn::Phone)]
    pub match_on: MatchOn,

    /// Check every row and report what would happen, but write nothing
    /// (failed rows still go to the errors file).
    #[arg(long)]
    pub dry_run: bool,

    /// Recorded with the relationship changes the import makes.
    #[arg(long, default_value = "")]
    pub reason: String,

    /// The import's idempotency key. By default derived from the file's
    /// bytes, the tenant and these options, so running the same command
    /// again after an interruption resumes it: the server reports the rows
    /// it already applied and applies the rest, creating no duplicates
    /// (within 24 hours). Give another value to import the same file
    /// again as a new import.
    #[arg(long)]
    pub request_id: Option<String>,

    /// Source (code or name) of created customers whose row names none.
    #[arg(long)]
    pub default_source: Option<String>,

    /// Relationship (code or name) of created customers whose row names
    /// none; the tenant's default relationship otherwise.
    #[arg(long)]
    pub default_relationship: Option<String>,

    /// Groups (codes or names, separated by `,` or `;`; the flag may
    /// repeat) that every row's customer joins besides its own.
    #[arg(long)]
    pub default_groups: Vec<String>,
}

/// How an import ended, when it ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every row succeeded.
    AllSucceeded,
    /// Some rows failed; they are in the errors file.
    SomeFailed,
}

/// A row read and not yet answered.
struct Entry {
    number: u64,
    /// The row's cells as read, for the errors file.
    cells: Vec<String>,
    /// How far into the file the row ends.
    position: u64,
    /// Sent, or failed before sending (and why).
    failed: Option<String>,
}

/// What the reader hands the pump: entries in file order, and the rows of
/// those that are sent.
#[derive(Default)]
struct Chunk {
    entries: Vec<Entry>,
    rows: Vec<ImportRow>,
    bytes: usize,
}

/// The counts the summary line gives.
#[derive(Debug, Default)]
struct Tally {
    done: u64,
    created: u64,
    updated: u64,
    unchanged: u64,
    failed: u64,
    replayed: u64,
    position: u64,
}

/// Aborts a task when dropped, so a failed import leaves none running.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the import.
pub async fn run(args: ImportArgs) -> Result<Outcome, CliError> {
    let format = Format::of(&args.file)?;
    let table = read::open(&args.file, format)?;
    let layout = match_header(table.header()).map_err(|e| CliError::File {
        path: args.file.clone(),
        message: e.to_string(),
    })?;
    check_columns(&args, &layout)?;
    if !layout.skipped.is_empty() {
        eprintln!(
            "import: skipping the columns an import does not read: {}",
            layout.skipped.join(", ")
        );
    }
    let request_id = match &args.request_id {
        Some(id) => id.clone(),
        None => derive_request_id(&args)?,
    };
    let connection = connect::connect(&args.server).await?;
    let catalogs = catalogs::load(&connection).await?;
    let options = options(&args, &catalogs, request_id.clone())?;
    let mut errors = ErrorsFile::beside(&args.file, table.header()).map_err(CliError::Output)?;
    let length = match table.size() {
        Size::Bytes(n) => Length::Bytes(n),
        Size::Rows(n) => Length::Rows(n),
        Size::Unknown => Length::Unknown,
    };
    let send_ids = args.mode != Mode::Create && args.match_on == MatchOn::Id;
    let maker = RowMaker::new(layout, catalogs, send_ids);

    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(2);
    let mut reader = AbortOnDrop(tokio::task::spawn_blocking(move || {
        read_chunks(table, &maker, &chunk_tx)
    }));
    let (request_tx, request_rx) = mpsc::channel::<ImportCustomersRequest>(2);
    request_tx
        .send(ImportCustomersRequest {
            payload: Some(Payload::Options(options)),
        })
        .await
        .map_err(|_| CliError::Server("the import stream closed before it began".to_owned()))?;
    let (entries_tx, entries_rx) = mpsc::unbounded_channel::<Vec<Entry>>();
    let window = Arc::new(Semaphore::new(WINDOW_ROWS));
    let _pump = AbortOnDrop(tokio::spawn(pump(
        chunk_rx,
        entries_tx,
        request_tx,
        window.clone(),
    )));

    let mut progress = Progress::new("import", length);
    let responses = connection
        .customers()
        .import_customers(ReceiverStream::new(request_rx))
        .await
        .map_err(|status| {
            CliError::Server(format!(
                "the server refused the import: {}",
                describe_status(&status)
            ))
        })?
        .into_inner();
    let mut results = Results {
        queue: VecDeque::new(),
        tally: Tally::default(),
        errors: &mut errors,
        window: &window,
    };
    let summary = results.follow(responses, entries_rx, &mut progress).await;
    let summary = match summary {
        Ok(summary) => summary,
        Err(err) => {
            progress.abandon();
            let _ = results.errors.finish();
            return Err(match err {
                CliError::Server(message) => CliError::Server(format!(
                    "{message}\n{} rows were answered before it stopped; run the same command again to resume (request id {request_id})",
                    thousands(results.tally.done)
                )),
                other => other,
            });
        }
    };
    results.errors.finish().map_err(CliError::Output)?;
    let tally = std::mem::take(&mut results.tally);
    let read_result = match (&mut reader.0).await {
        Ok(result) => result,
        Err(e) => Err(read::ReadError {
            path: args.file.clone(),
            message: format!("the reader stopped: {e}"),
        }),
    };
    let errors_path = errors.path().display().to_string();
    progress.finish(&summary_line(
        &tally,
        &summary,
        &args,
        &errors_path,
        progress.elapsed(),
    ));
    if let Err(err) = read_result {
        return Err(CliError::File {
            path: err.path,
            message: format!(
                "{}; the rows before it were imported (see above)",
                err.message
            ),
        });
    }
    Ok(if tally.failed == 0 {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}

/// The columns the mode needs must be there before any row is sent.
fn check_columns(args: &ImportArgs, layout: &Layout) -> Result<(), CliError> {
    let missing = |field: Field, why: &str| CliError::File {
        path: args.file.clone(),
        message: format!("the file has no {} column, which {why}", field.name()),
    };
    match args.mode {
        Mode::Create if !layout.has(Field::Name) => {
            Err(missing(Field::Name, "creating customers needs"))
        }
        Mode::Upsert | Mode::Update => {
            let (field, flag) = match args.match_on {
                MatchOn::Phone => (Field::Phone, "phone"),
                MatchOn::Email => (Field::Email, "email"),
                MatchOn::Id => (Field::Id, "id"),
            };
            if layout.has(field) {
                Ok(())
            } else {
                Err(missing(
                    field,
                    &format!("--match-on {flag} matches rows on (or choose another --match-on)"),
                ))
            }
        }
        Mode::Create => Ok(()),
    }
}

/// The default request id: a digest of the file's bytes, the tenant and
/// every option that shapes the rows, so the same command gives the same
/// id and a changed one another.
fn derive_request_id(args: &ImportArgs) -> Result<String, CliError> {
    let mut hasher = Sha256::new();
    hasher.update(b"crm-classify import 1\0");
    read::digest_file(&args.file, &mut hasher)?;
    let parts = [
        args.server.tenant.clone().unwrap_or_default(),
        format!("{:?}", args.mode),
        format!("{:?}", args.match_on),
        args.dry_run.to_string(),
        args.reason.clone(),
        args.default_source.clone().unwrap_or_default(),
        args.default_relationship.clone().unwrap_or_default(),
        args.default_groups.join("\u{1f}"),
    ];
    for part in parts {
        // Length-prefixed, so no two lists of parts hash alike.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Ok(format!("import-{hex}"))
}

/// The options message, defaults named by code or name turned into codes.
fn options(
    args: &ImportArgs,
    catalogs: &Catalogs,
    request_id: String,
) -> Result<ImportOptions, CliError> {
    let default_source = args
        .default_source
        .as_deref()
        .map(|value| catalogs.sources.code_for_flag("default-source", value))
        .transpose()?
        .unwrap_or_default();
    let default_relationship = args
        .default_relationship
        .as_deref()
        .map(|value| {
            catalogs
                .relationships
                .code_for_flag("default-relationship", value)
        })
        .transpose()?
        .unwrap_or_default();
    let mut default_groups = Vec::new();
    for value in args
        .default_groups
        .iter()
        .flat_map(|v| v.split([',', ';']))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        let code = catalogs.groups.code_for_flag("default-groups", value)?;
        if !default_groups.contains(&code) {
            default_groups.push(code);
        }
    }
    let mode = match args.mode {
        Mode::Create => ImportMode::Create,
        Mode::Upsert => ImportMode::Upsert,
        Mode::Update => ImportMode::Update,
    };
    let match_on = match (args.mode, args.match_on) {
        (Mode::Create, _) => ImportMatchKey::Unspecified,
        (_, MatchOn::Phone) => ImportMatchKey::Phone,
        (_, MatchOn::Email) => ImportMatchKey::Email,
        (_, MatchOn::Id) => ImportMatchKey::Id,
    };
    Ok(ImportOptions {
        mode: mode.into(),
        match_on: match_on.into(),
        dry_run: args.dry_run,
        reason: args.reason.clone(),
        request_id,
        default_source,
        default_relationship,
        default_groups,
    })
}

/// The reader thread: records to rows, in chunks of at most 500 entries
/// and 1 MiB of rows. Stops when the pump is gone.
fn read_chunks(
    table: Table,
    maker: &RowMaker,
    chunks: &mpsc::Sender<Chunk>,
) -> Result<(), read::ReadError> {
    let mut chunk = Chunk::default();
    let mut gone = false;
    let send = |chunk: &mut Chunk| {
        let full = std::mem::take(chunk);
        chunks.blocking_send(full).is_ok()
    };
    table.for_each(|record| {
        let mut entry = Entry {
            number: record.number,
            cells: Vec::new(),
            position: record.position,
            failed: None,
        };
        match maker.make(&record) {
            Ok(row) => {
                let size = row.encoded_len();
                if size > BATCH_BYTES {
                    entry.failed = Some(format!(
                        "the row is {} bytes long; at most {} are sent",
                        thousands(size as u64),
                        thousands(BATCH_BYTES as u64)
                    ));
                } else {
                    if chunk.bytes + size > BATCH_BYTES && !send(&mut chunk) {
                        gone = true;
                        return std::ops::ControlFlow::Break(());
                    }
                    chunk.bytes += size;
                    chunk.rows.push(row);
                }
            }
            Err(reason) => entry.failed = Some(reason),
        }
        entry.cells = record.cells;
        chunk.entries.push(entry);
        if chunk.entries.len() >= BATCH_ROWS && !send(&mut chunk) {
            gone = true;
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    })?;
    if !gone && !chunk.entries.is_empty() {
        send(&mut chunk);
    }
    Ok(())
}

/// Moves chunks from the reader to the request stream, each once the
/// window has room for its entries; the entries go to the result reader
/// first, so they are known before their results can arrive. Ending (the
/// reader is done) closes the request stream, which asks the server for
/// its summary.
async fn pump(
    mut chunks: mpsc::Receiver<Chunk>,
    entries: mpsc::UnboundedSender<Vec<Entry>>,
    requests: mpsc::Sender<ImportCustomersRequest>,
    window: Arc<Semaphore>,
) {
    while let Some(chunk) = chunks.recv().await {
        let n = u32::try_from(chunk.entries.len()).unwrap_or(u32::MAX);
        match window.acquire_many(n).await {
            // Given back by the result reader, row by row.
            Ok(permits) => permits.forget(),
            Err(_) => return,
        }
        if entries.send(chunk.entries).is_err() {
            return;
        }
        if !chunk.rows.is_empty() {
            let batch = ImportCustomersRequest {
                payload: Some(Payload::Rows(ImportRowBatch { rows: chunk.rows })),
            };
            if requests.send(batch).await.is_err() {
                return;
            }
        }
    }
}

/// The result reader's state.
struct Results<'a> {
    /// Entries sent or failed, in file order, not yet settled.
    queue: VecDeque<Entry>,
    tally: Tally,
    errors: &'a mut ErrorsFile,
    window: &'a Semaphore,
}

impl Results<'_> {
    /// Reads results until the summary, settling entries in file order.
    async fn follow(
        &mut self,
        mut responses: tonic::Streaming<crate::pb::ImportCustomersResponse>,
        mut entries: mpsc::UnboundedReceiver<Vec<Entry>>,
        progress: &mut Progress,
    ) -> Result<ImportSummary, CliError> {
        let mut entries_open = true;
        let summary = loop {
            tokio::select! {
                received = entries.recv(), if entries_open => match received {
                    Some(more) => self.queue.extend(more),
                    None => entries_open = false,
                },
                message = responses.next() => match message {
                    Some(Ok(message)) => {
                        // The entries of every row sent are in the channel.
                        while let Ok(more) = entries.try_recv() {
                            self.queue.extend(more);
                        }
                        for result in message.results {
                            self.settle(result)?;
                        }
                        if let Some(summary) = message.summary {
                            break summary;
                        }
                    }
                    Some(Err(status)) => {
                        return Err(CliError::Server(format!(
                            "the import stopped: {}",
                            describe_status(&status)
                        )));
                    }
                    None => {
                        return Err(CliError::Server(
                            "the server ended the import without a summary".to_owned(),
                        ));
                    }
                },
            }
            self.settle_failed_front()?;
            progress.update(self.tally.done, self.tally.failed, self.tally.position);
        };
        // What is left: rows that failed before sending, behind the last
        // answered one (the pump has sent all there is once the server
        // sends its summary).
        while let Some(more) = entries.recv().await {
            self.queue.extend(more);
        }
        while let Some(entry) = self.queue.pop_front() {
            let reason = entry
                .failed
                .clone()
                .unwrap_or_else(|| "the server sent no result for this row".to_owned());
            self.fail(entry, &reason)?;
        }
        progress.update(self.tally.done, self.tally.failed, self.tally.position);
        Ok(summary)
    }

    /// Settles the entries at the front that failed before sending: they
    /// wait for nothing.
    fn settle_failed_front(&mut self) -> Result<(), CliError> {
        while self.queue.front().is_some_and(|e| e.failed.is_some()) {
            if let Some(entry) = self.queue.pop_front() {
                let reason = entry.failed.clone().unwrap_or_default();
                self.fail(entry, &reason)?;
            }
        }
        Ok(())
    }

    /// Settles the entry of `result` and the failed ones before it.
    fn settle(&mut self, result: ImportRowResult) -> Result<(), CliError> {
        let row = u64::try_from(result.row_number).unwrap_or(0);
        loop {
            let Some(entry) = self.queue.pop_front() else {
                return Err(CliError::Server(format!(
                    "the server answered for row {row}, which was not sent"
                )));
            };
            if let Some(reason) = entry.failed.clone() {
                self.fail(entry, &reason)?;
                continue;
            }
            if entry.number != row {
                return Err(CliError::Server(format!(
                    "the server answered for row {row} where row {} was next",
                    entry.number
                )));
            }
            if result.replayed {
                self.tally.replayed += 1;
            }
            match result.outcome() {
                ImportOutcome::Created => self.succeed(&entry, |t| t.created += 1),
                ImportOutcome::Updated => self.succeed(&entry, |t| t.updated += 1),
                ImportOutcome::Unchanged => self.succeed(&entry, |t| t.unchanged += 1),
                ImportOutcome::Failed | ImportOutcome::Unspecified => {
                    let reason = result
                        .error
                        .as_ref()
                        .map_or_else(|| "failed (no reason given)".to_owned(), row_reason);
                    self.fail(entry, &reason)?;
                }
            }
            return Ok(());
        }
    }

    fn succeed(&mut self, entry: &Entry, count: impl FnOnce(&mut Tally)) {
        count(&mut self.tally);
        self.tally.done += 1;
        self.tally.position = self.tally.position.max(entry.position);
        self.window.add_permits(1);
    }

    fn fail(&mut self, entry: Entry, reason: &str) -> Result<(), CliError> {
        self.errors
            .write(entry.number, reason, &entry.cells)
            .map_err(CliError::Output)?;
        self.tally.failed += 1;
        self.tally.done += 1;
        self.tally.position = self.tally.position.max(entry.position);
        self.window.add_permits(1);
        Ok(())
    }
}

/// A failed row's reason: the server's message and its field violations.
fn row_reason(status: &tonic_types::pb::Status) -> String {
    let mut text = status.message.clone();
    if let Some(bad) = status.get_details_bad_request() {
        for violation in bad.field_violations {
            if text.contains(&violation.description) {
                continue;
            }
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&format!("{}: {}", violation.field, violation.description));
        }
    }
    if text.is_empty() {
        text = format!("{:?}", tonic::Code::from(status.code));
    }
    text
}

fn summary_line(
    tally: &Tally,
    server: &ImportSummary,
    args: &ImportArgs,
    errors_path: &str,
    elapsed: Duration,
) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        tally.done as f64 / seconds
    } else {
        0.0
    };
    let mut line = format!(
        "{} rows: {} created, {} updated, {} unchanged, {} failed",
        thousands(tally.done),
        thousands(tally.created),
        thousands(tally.updated),
        thousands(tally.unchanged),
        thousands(tally.failed),
    );
    if tally.failed > 0 {
        line.push_str(&format!(" (see {errors_path})"));
    }
    if tally.replayed > 0 || server.replayed > 0 {
        line.push_str(&format!(
            "; {} already applied by an earlier run",
            thousands(
                tally
                    .replayed
                    .max(u64::try_from(server.replayed).unwrap_or(0))
            )
        ));
    }
    line.push_str(&format!(
        "; {seconds:.1} s, {} rows/s",
        thousands(rate as u64)
    ));
    if args.dry_run {
        line.push_str(" (dry run: nothing was written)");
    }
    line
}
