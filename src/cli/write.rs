//! Writing tables: an export (CSV to a file or stdout, XLSX to a file) and
//! an import's errors file (CSV). Rows are written as they come; an XLSX
//! export uses rust_xlsxwriter's constant-memory mode, which flushes each
//! row to a temporary file instead of keeping the sheet in memory.
//!
//! CSV files get a UTF-8 byte-order mark, which Excel needs to show
//! Vietnamese text correctly (and which imports accept); CSV on stdout has
//! none, for the programs it is piped into.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use rust_xlsxwriter::{Format, Workbook, XlsxError};

/// The rows an XLSX worksheet holds, header included.
pub const XLSX_MAX_ROWS: u64 = 1_048_576;

/// One cell to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A number (a number cell in XLSX, so sums work).
    Number(i64),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Number(number) => number.to_string(),
        }
    }
}

/// Where a table goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// CSV on stdout.
    Stdout,
    /// A CSV file.
    Csv(PathBuf),
    /// An XLSX file.
    Xlsx(PathBuf),
}

impl Output {
    /// From `--output`: `-` or none is stdout, else by extension.
    pub fn of(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
            return Ok(Self::Stdout);
        };
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "csv" => Ok(Self::Csv(path.to_owned())),
            "xlsx" => Ok(Self::Xlsx(path.to_owned())),
            _ => Err(format!(
                "--output {}: name a .csv or .xlsx file, or - for CSV on stdout",
                path.display()
            )),
        }
    }

    /// The file written, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Stdout => None,
            Self::Csv(path) | Self::Xlsx(path) => Some(path),
        }
    }
}

/// An open table.
pub enum TableWriter {
    /// CSV.
    Csv(csv::Writer<Box<dyn Write + Send>>),
    /// XLSX, saved on finish.
    Xlsx {
        /// The workbook, whose first worksheet is written.
        workbook: Box<Workbook>,
        /// Where it is saved.
        path: PathBuf,
        /// The next row.
        row: u32,
        /// The header's format.
        bold: Format,
    },
}

fn xlsx_error(error: &XlsxError) -> String {
    format!("cannot write the workbook: {error}")
}

impl TableWriter {
    /// Opens `output`.
    pub fn create(output: &Output) -> Result<Self, String> {
        match output {
            Output::Stdout => {
                let sink: Box<dyn Write + Send> = Box::new(BufWriter::new(std::io::stdout()));
                Ok(Self::Csv(csv::Writer::from_writer(sink)))
            }
            Output::Csv(path) => Ok(Self::Csv(csv_file(path)?)),
            Output::Xlsx(path) => {
                let mut workbook = Workbook::new();
                workbook
                    .add_worksheet_with_constant_memory()
                    .map_err(|e| xlsx_error(&e))?;
                Ok(Self::Xlsx {
                    workbook: Box::new(workbook),
                    path: path.clone(),
                    row: 0,
                    bold: Format::new().set_bold(),
                })
            }
        }
    }

    /// Writes the header row.
    pub fn header(&mut self, cells: &[String]) -> Result<(), String> {
        match self {
            Self::Csv(writer) => writer.write_record(cells).map_err(|e| e.to_string()),
            Self::Xlsx {
                workbook,
                row,
                bold,
                ..
            } => {
                let sheet = workbook
                    .worksheet_from_index(0)
                    .map_err(|e| xlsx_error(&e))?;
                for (column, text) in cells.iter().enumerate() {
                    let column =
                        u16::try_from(column).map_err(|_| "too many columns".to_owned())?;
                    sheet
                        .write_string_with_format(*row, column, text, bold)
                        .map_err(|e| xlsx_error(&e))?;
                }
                *row += 1;
                Ok(())
            }
        }
    }

    /// Writes one row.
    pub fn row(&mut self, cells: &[Cell]) -> Result<(), String> {
        match self {
            Self::Csv(writer) => writer
                .write_record(cells.iter().map(Cell::text))
                .map_err(|e| e.to_string()),
            Self::Xlsx { workbook, row, .. } => {
                let sheet = workbook
                    .worksheet_from_index(0)
                    .map_err(|e| xlsx_error(&e))?;
                for (column, cell) in cells.iter().enumerate() {
                    let column =
                        u16::try_from(column).map_err(|_| "too many columns".to_owned())?;
                    match cell {
                        Cell::Text(text) if text.is_empty() => {}
                        Cell::Text(text) => {
                            sheet.write_string(*row, column, text).map_err(|e| match e {
                                XlsxError::MaxStringLengthExceeded => format!(
                                    "a value of {} characters is longer than an XLSX cell holds (32,767); export to CSV",
                                    text.chars().count()
                                ),
                                other => xlsx_error(&other),
                            })?;
                        }
                        // Revenues stay below 2^53 (10^15 at most): exact as
                        // a double.
                        #[allow(clippy::cast_precision_loss)]
                        Cell::Number(number) => {
                            sheet
                                .write_number(*row, column, *number as f64)
                                .map_err(|e| xlsx_error(&e))?;
                        }
                    }
                }
                *row += 1;
                Ok(())
            }
        }
    }

    /// Flushes and closes the table.
    pub fn finish(self) -> Result<(), String> {
        match self {
            Self::Csv(mut writer) => writer.flush().map_err(|e| e.to_string()),
            Self::Xlsx {
                mut workbook, path, ..
            } => workbook.save(&path).map_err(|e| xlsx_error(&e)),
        }
    }
}

/// A CSV file with a byte-order mark.
fn csv_file(path: &Path) -> Result<csv::Writer<Box<dyn Write + Send>>, String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut sink = BufWriter::new(file);
    sink.write_all(b"\xEF\xBB\xBF")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let sink: Box<dyn Write + Send> = Box::new(sink);
    // Flexible: a row of the errors file is as long as the input row was,
    // which may be longer than its header.
    Ok(csv::WriterBuilder::new().flexible(true).from_writer(sink))
}

/// The errors file of an import: the row number, the reason, then the
/// row's cells as read. Created at the first failed row.
pub struct ErrorsFile {
    path: PathBuf,
    header: Vec<String>,
    writer: Option<csv::Writer<Box<dyn Write + Send>>>,
    /// Rows written.
    pub rows: u64,
}

impl ErrorsFile {
    /// `FILE.errors.csv` beside `input`. A file left by an earlier run is
    /// removed now, so what is there afterwards is this run's.
    pub fn beside(input: &Path, header: &[String]) -> Result<Self, String> {
        let mut name = input.file_name().unwrap_or_default().to_owned();
        name.push(".errors.csv");
        let path = input.with_file_name(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let mut full = super::columns::ERRORS_FILE_COLUMNS
            .map(str::to_owned)
            .to_vec();
        full.extend_from_slice(header);
        Ok(Self {
            path,
            header: full,
            writer: None,
            rows: 0,
        })
    }

    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one failed row.
    pub fn write(&mut self, row: u64, reason: &str, cells: &[String]) -> Result<(), String> {
        if self.writer.is_none() {
            let mut writer = csv_file(&self.path)?;
            writer
                .write_record(&self.header)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            self.writer = Some(writer);
        }
        if let Some(writer) = &mut self.writer {
            let mut record = vec![row.to_string(), reason.to_owned()];
            record.extend(cells.iter().cloned());
            // A short row (an XLSX row ends at its last cell) is padded,
            // so every row has at least the header's columns.
            if record.len() < self.header.len() {
                record.resize(self.header.len(), String::new());
            }
            writer
                .write_record(&record)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Flushes what was written.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(writer) = &mut self.writer {
            writer
                .flush()
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_by_extension() {
        assert_eq!(Output::of(None), Ok(Output::Stdout));
        assert_eq!(Output::of(Some(Path::new("-"))), Ok(Output::Stdout));
        assert_eq!(
            Output::of(Some(Path::new("a.CSV"))),
            Ok(Output::Csv(PathBuf::from("a.CSV")))
        );
        assert_eq!(
            Output::of(Some(Path::new("a.xlsx"))),
            Ok(Output::Xlsx(PathBuf::from("a.xlsx")))
        );
        assert!(Output::of(Some(Path::new("a.json"))).is_err());
    }

    #[test]
    fn errors_files_are_made_at_the_first_failure_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("khach.csv");
        let stale = dir.path().join("khach.csv.errors.csv");
        std::fs::write(&stale, "old").unwrap();
        let header = vec!["name".to_owned(), "phone".to_owned()];
        let mut errors = ErrorsFile::beside(&input, &header).unwrap();
        assert_eq!(errors.path(), stale);
        assert!(!stale.exists(), "an earlier run's file is removed");
        errors
            .write(
                3,
                "email: not an address",
                &["An\nB".to_owned(), "09".to_owned()],
            )
            .unwrap();
        errors.finish().unwrap();
        let table = crate::cli::read::open(&stale, crate::cli::read::Format::Csv).unwrap();
        assert_eq!(
            table.header(),
            ["error_row", "error_reason", "name", "phone"]
        );
        let mut rows = Vec::new();
        table
            .for_each(|r| {
                rows.push(r.cells);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(rows, [["3", "email: not an address", "An\nB", "09"]]);
    }

    #[test]
    fn xlsx_tables_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.xlsx");
        let mut table = TableWriter::create(&Output::Xlsx(path.clone())).unwrap();
        table
            .header(&["name".to_owned(), "revenue".to_owned()])
            .unwrap();
        table
            .row(&[
                Cell::Text("Đà Nẵng".to_owned()),
                Cell::Number(1_000_000_000_000_000),
            ])
            .unwrap();
        table
            .row(&[Cell::Text(String::new()), Cell::Number(0)])
            .unwrap();
        table.finish().unwrap();
        let read = crate::cli::read::open(&path, crate::cli::read::Format::Xlsx).unwrap();
        assert_eq!(read.header(), ["name", "revenue"]);
        let mut rows = Vec::new();
        read.for_each(|r| {
            rows.push(r.cells);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            rows,
            [
                vec!["Đà Nẵng".to_owned(), "1000000000000000".to_owned()],
                vec![String::new(), "0".to_owned()]
            ]
        );
    }
}
