//! Reading an import file record by record, never the whole file: CSV
//! (UTF-8 with or without a byte-order mark, comma or semicolon, quoted
//! fields spanning lines) and XLSX (the first worksheet, through
//! calamine's streaming cell reader).
//!
//! Row numbers are what a spreadsheet shows: the header is row 1 and the
//! first record row 2. For XLSX that is the sheet's own row number; for CSV
//! it is the record's ordinal + 1, which is the line number unless a quoted
//! field spans lines (a spreadsheet shows such a record as one row too).

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    ops::ControlFlow,
    path::{Path, PathBuf},
};

use calamine::{DataRef, Reader, Xlsx, XlsxError, open_workbook};

/// The kind of an import file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma- or semicolon-separated text.
    Csv,
    /// An Excel workbook.
    Xlsx,
}

impl Format {
    /// `.xlsx` (and `.xlsm`) files are workbooks; `.xls` (the binary format
    /// before 2007) is refused with a hint; anything else is read as CSV.
    pub fn of(path: &Path) -> Result<Self, ReadError> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "xlsx" | "xlsm" => Ok(Self::Xlsx),
            "xls" | "ods" => Err(ReadError::new(
                path,
                "this spreadsheet format is not read; save it as .xlsx or .csv (UTF-8)",
            )),
            _ => Ok(Self::Csv),
        }
    }
}

/// A file that cannot be read (at all, or from some record on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong, and where.
    pub message: String,
}

impl ReadError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// One record (a row of the file below the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The row number a spreadsheet shows (the header is row 1).
    pub number: u64,
    /// The cells as text, in column order; may be shorter or longer than
    /// the header.
    pub cells: Vec<String>,
    /// Cells that could not be read as text (not UTF-8, an Excel error
    /// value): the record fails with these reasons.
    pub problems: Vec<String>,
    /// How far into the file this record ends, in the unit of
    /// [`Table::size`], for progress.
    pub position: u64,
}

/// How much there is to read, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Bytes of a CSV file.
    Bytes(u64),
    /// Record rows of a worksheet (as its dimension says).
    Rows(u64),
    /// Not known.
    Unknown,
}

/// An open import file whose header has been read.
pub struct Table {
    path: PathBuf,
    header: Vec<String>,
    size: Size,
    source: Source,
}

enum Source {
    Csv {
        reader: csv::Reader<BufReader<File>>,
        /// Bytes before the CSV text (a byte-order mark).
        offset: u64,
    },
    Xlsx {
        workbook: Box<Xlsx<BufReader<File>>>,
        sheet: String,
        /// 0-based row of the header.
        header_row: u32,
    },
}

/// How many bytes of the first line the delimiter is guessed from.
const SNIFF_BYTES: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Opens `path` and reads its header row.
pub fn open(path: &Path, format: Format) -> Result<Table, ReadError> {
    match format {
        Format::Csv => open_csv(path),
        Format::Xlsx => open_xlsx(path),
    }
}

impl Table {
    /// The header row's cells.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// How much there is to read.
    pub fn size(&self) -> Size {
        self.size
    }

    /// Reads every record below the header, in order, handing each to
    /// `visit` until it breaks. Wholly blank records are skipped (their row
    /// numbers still count).
    pub fn for_each(
        self,
        mut visit: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        let Self { path, source, .. } = self;
        match source {
            Source::Csv { mut reader, offset } => {
                let mut record = csv::ByteRecord::new();
                loop {
                    let more = reader
                        .read_byte_record(&mut record)
                        .map_err(|e| ReadError::new(&path, format!("cannot read the file: {e}")))?;
                    if !more {
                        return Ok(());
                    }
                    let number = record.position().map_or(0, |p| p.record()) + 1;
                    let position = offset + reader.position().byte();
                    let mut problems = Vec::new();
                    let cells = record
                        .iter()
                        .enumerate()
                        .map(|(index, bytes)| match std::str::from_utf8(bytes) {
                            Ok(text) => text.to_owned(),
                            Err(_) => {
                                problems.push(format!(
                                    "column {} is not UTF-8 text; save the file as CSV UTF-8",
                                    index + 1
                                ));
                                String::from_utf8_lossy(bytes).into_owned()
                            }
                        })
                        .collect();
                    let record = Record {
                        number,
                        cells,
                        problems,
                        position,
                    };
                    if is_blank(&record) {
                        continue;
                    }
                    if visit(record).is_break() {
                        return Ok(());
                    }
                }
            }
            Source::Xlsx {
                mut workbook,
                sheet,
                header_row,
            } => {
                let mut cells = workbook
                    .worksheet_cells_reader(&sheet)
                    .map_err(|e| xlsx_error(&path, &e))?;
                let mut rows = RowsOf::default();
                while let Some(cell) = cells.next_cell().map_err(|e| xlsx_error(&path, &e))? {
                    let (row, column) = cell.get_position();
                    if row <= header_row {
                        continue;
                    }
                    if let Some(record) = rows.add(row, column, cell.get_value())
                        && !is_blank(&record)
                        && visit(below(record, header_row)).is_break()
                    {
                        return Ok(());
                    }
                }
                if let Some(record) = rows.finish()
                    && !is_blank(&record)
                {
                    let _ = visit(below(record, header_row));
                }
                Ok(())
            }
        }
    }
}

/// A worksheet record with its position counted in rows below the header,
/// the unit of [`Size::Rows`].
fn below(mut record: Record, header_row: u32) -> Record {
    record.position = record.number.saturating_sub(u64::from(header_row) + 1);
    record
}

fn is_blank(record: &Record) -> bool {
    record.problems.is_empty() && record.cells.iter().all(|c| c.trim().is_empty())
}

fn open_csv(path: &Path) -> Result<Table, ReadError> {
    let file = File::open(path).map_err(|e| ReadError::new(path, e.to_string()))?;
    let length = file.metadata().map(|m| m.len()).ok();
    let mut input = BufReader::with_capacity(SNIFF_BYTES, file);
    let start = input
        .fill_buf()
        .map_err(|e| ReadError::new(path, e.to_string()))?;
    let offset = if start.starts_with(BOM) { BOM.len() } else { 0 };
    let delimiter = sniff_delimiter(&start[offset..]);
    input.consume(offset);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(input);
    let mut first = csv::ByteRecord::new();
    let has_header = reader
        .read_byte_record(&mut first)
        .map_err(|e| ReadError::new(path, format!("cannot read the header row: {e}")))?;
    if !has_header {
        return Err(ReadError::new(path, "the file is empty"));
    }
    let header = first
        .iter()
        .map(|bytes| {
            std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
                ReadError::new(
                    path,
                    "the header row is not UTF-8 text; save the file as CSV UTF-8",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table {
        path: path.to_owned(),
        header,
        size: length.map_or(Size::Unknown, Size::Bytes),
        source: Source::Csv {
            reader,
            offset: offset as u64,
        },
    })
}

/// The delimiter of the header line: a semicolon when it has more
/// semicolons than commas outside quotes (what Excel writes where the
/// decimal separator is a comma), else a comma.
fn sniff_delimiter(start: &[u8]) -> u8 {
    let (mut commas, mut semicolons, mut quoted) = (0usize, 0usize, false);
    for &byte in start {
        match byte {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            b'\n' | b'\r' if !quoted => break,
            _ => {}
        }
    }
    if semicolons > commas { b';' } else { b',' }
}

fn open_xlsx(path: &Path) -> Result<Table, ReadError> {
    let mut workbook: Xlsx<BufReader<File>> =
        open_workbook(path).map_err(|e| xlsx_error(path, &e))?;
    let sheet = workbook
        .sheet_names()
        .into_iter()
        .next()
        .ok_or_else(|| ReadError::new(path, "the workbook has no worksheet"))?;
    let (header, header_row, last_row) = {
        let mut cells = workbook
            .worksheet_cells_reader(&sheet)
            .map_err(|e| xlsx_error(path, &e))?;
        let last_row = cells.dimensions().end.0;
        let mut rows = RowsOf::default();
        let mut header = None;
        while let Some(cell) = cells.next_cell().map_err(|e| xlsx_error(path, &e))? {
            let (row, column) = cell.get_position();
            if let Some(record) = rows.add(row, column, cell.get_value())
                && !is_blank(&record)
            {
                header = Some(record);
                break;
            }
        }
        let header = header
            .or_else(|| rows.finish().filter(|r| !is_blank(r)))
            .ok_or_else(|| ReadError::new(path, format!("the worksheet \"{sheet}\" is empty")))?;
        (header.cells, header.number - 1, last_row)
    };
    let header_row = u32::try_from(header_row).unwrap_or(u32::MAX);
    let size = if last_row > header_row {
        Size::Rows(u64::from(last_row - header_row))
    } else {
        Size::Unknown
    };
    Ok(Table {
        path: path.to_owned(),
        header,
        size,
        source: Source::Xlsx {
            workbook: Box::new(workbook),
            sheet,
            header_row,
        },
    })
}

fn xlsx_error(path: &Path, error: &XlsxError) -> ReadError {
    ReadError::new(path, format!("cannot read the workbook: {error}"))
}

/// Gathers a worksheet's cells, which come row by row and only where a
/// cell exists, into records.
#[derive(Default)]
struct RowsOf {
    current: Option<Record>,
}

impl RowsOf {
    /// Adds one cell; returns the previous row when this cell starts a new
    /// one.
    fn add(&mut self, row: u32, column: u32, value: &DataRef<'_>) -> Option<Record> {
        let number = u64::from(row) + 1;
        let finished = match &self.current {
            Some(record) if record.number != number => self.current.take(),
            _ => None,
        };
        let record = self.current.get_or_insert_with(|| Record {
            number,
            cells: Vec::new(),
            problems: Vec::new(),
            position: number,
        });
        let column = column as usize;
        let text = match cell_text(value) {
            Ok(text) => text,
            Err(problem) => {
                record
                    .problems
                    .push(format!("cell {}{number} {problem}", column_letters(column)));
                String::new()
            }
        };
        if !text.is_empty() {
            if record.cells.len() <= column {
                record.cells.resize(column + 1, String::new());
            }
            record.cells[column] = text;
        }
        finished
    }

    /// The last row.
    fn finish(&mut self) -> Option<Record> {
        self.current.take()
    }
}

/// A cell's value as the text a user sees (numbers without a needless
/// `.0`, dates as ISO dates), or why it has none.
fn cell_text(value: &DataRef<'_>) -> Result<String, String> {
    Ok(match value {
        DataRef::Empty => String::new(),
        DataRef::String(text) => text.clone(),
        DataRef::SharedString(text) => (*text).to_owned(),
        DataRef::Int(number) => number.to_string(),
        DataRef::Float(number) => float_text(*number),
        DataRef::Bool(true) => "TRUE".to_owned(),
        DataRef::Bool(false) => "FALSE".to_owned(),
        DataRef::DateTime(datetime) => match datetime.as_datetime() {
            Some(datetime) if datetime.time() == chrono::NaiveTime::MIN => {
                datetime.format("%Y-%m-%d").to_string()
            }
            Some(datetime) => datetime.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => datetime.to_string(),
        },
        DataRef::DateTimeIso(text) | DataRef::DurationIso(text) => text.clone(),
        DataRef::Error(error) => return Err(format!("holds the error {error}")),
    })
}

/// A number without a trailing `.0` when it is whole (phone numbers and
/// revenues typed as numbers).
fn float_text(number: f64) -> String {
    // Whole numbers up to 2^53 are exact in a double.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if number.fract() == 0.0 && number.abs() <= EXACT {
        #[allow(clippy::cast_possible_truncation)]
        let whole = number as i64;
        whole.to_string()
    } else {
        number.to_string()
    }
}

/// `A`, `B`, …, `Z`, `AA`, … for a 0-based column.
pub fn column_letters(column: usize) -> String {
    let mut letters = Vec::new();
    let mut n = column + 1;
    while n > 0 {
        let rem = (n - 1) % 26;
        letters.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

/// Reads the whole file once to fingerprint it (the default request id),
/// a buffer at a time.
pub fn digest_file(path: &Path, hasher: &mut impl sha2::Digest) -> Result<(), ReadError> {
    let mut file = File::open(path).map_err(|e| ReadError::new(path, e.to_string()))?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ReadError::new(path, e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn records(path: &Path) -> (Vec<String>, Vec<Record>) {
        let table = open(path, Format::of(path).unwrap()).unwrap();
        let header = table.header().to_vec();
        let mut all = Vec::new();
        table
            .for_each(|record| {
                all.push(record);
                ControlFlow::Continue(())
            })
            .unwrap();
        (header, all)
    }

    fn csv_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        let mut file = File::create(&path).unwrap();
        file.write_all(bytes).unwrap();
        path
    }

    fn cells(record: &Record) -> Vec<&str> {
        record.cells.iter().map(String::as_str).collect()
    }

    #[test]
    fn comma_csv_without_bom() {
        let dir = tempfile::tempdir().unwrap();
        let path = csv_file(&dir, "a.csv", "name,phone\nAn,0912\nBình,0913\n".as_bytes());
        let (header, rows) = records(&path);
        assert_eq!(header, ["name", "phone"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(cells(&rows[0]), ["An", "0912"]);
        assert_eq!(cells(&rows[1]), ["Bình", "0913"]);
        assert_eq!((rows[0].number, rows[1].number), (2, 3));
        assert_eq!(rows[1].position, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn semicolon_csv_with_bom_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = BOM.to_vec();
        bytes.extend_from_slice(
            "Tên khách hàng;Số điện thoại;Doanh thu\r\nNguyễn Văn An;0912;1,5\r\n".as_bytes(),
        );
        let path = csv_file(&dir, "b.csv", &bytes);
        let (header, rows) = records(&path);
        // The mark is not part of the first column's name.
        assert_eq!(header, ["Tên khách hàng", "Số điện thoại", "Doanh thu"]);
        assert_eq!(cells(&rows[0]), ["Nguyễn Văn An", "0912", "1,5"]);
    }

    #[test]
    fn the_delimiter_comes_from_the_header_line_only() {
        // Quoted separators in the header do not count, nor do later lines.
        assert_eq!(sniff_delimiter(b"\"a,b\";c;d\nx,y,z,w,v"), b';');
        assert_eq!(sniff_delimiter(b"a,b;c,d\n;;;;;"), b',');
        assert_eq!(sniff_delimiter(b"name\n"), b',');
    }

    #[test]
    fn quoted_fields_may_span_lines_and_rows_count_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = csv_file(
            &dir,
            "c.csv",
            b"name,attributes\n\"An\",\"{\"\"note\"\": \"\"line 1\nline 2\"\"}\"\nB\xc3\xacnh,\n\"C\"\"D\",x\n",
        );
        let (_, rows) = records(&path);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].cells[1], "{\"note\": \"line 1\nline 2\"}");
        assert_eq!(cells(&rows[1]), ["Bình", ""]);
        assert_eq!(cells(&rows[2]), ["C\"D", "x"]);
        // Record ordinal + 1, though the first record took two lines.
        assert_eq!(rows.iter().map(|r| r.number).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[test]
    fn blank_records_are_skipped_and_ragged_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = csv_file(&dir, "d.csv", b"name,phone\nAn\n,\n\nBinh,1,extra\n");
        let (_, rows) = records(&path);
        assert_eq!(rows.len(), 2);
        assert_eq!(cells(&rows[0]), ["An"]);
        assert_eq!(cells(&rows[1]), ["Binh", "1", "extra"]);
        assert_eq!(rows[0].number, 2);
    }

    #[test]
    fn text_that_is_not_utf8_fails_its_row_or_the_header() {
        let dir = tempfile::tempdir().unwrap();
        // "Bình" in Windows-1258-ish bytes.
        let path = csv_file(&dir, "e.csv", b"name\nB\xecnh\nAn\n");
        let (_, rows) = records(&path);
        assert_eq!(rows[0].problems.len(), 1);
        assert!(rows[0].problems[0].contains("UTF-8"));
        assert!(rows[1].problems.is_empty());
        let path = csv_file(&dir, "f.csv", b"T\xean\nAn\n");
        let err = open(&path, Format::Csv).err().unwrap();
        assert!(err.message.contains("UTF-8"), "{err}");
        let path = csv_file(&dir, "g.csv", b"");
        assert!(open(&path, Format::Csv).is_err());
    }

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(Format::of(Path::new("a.XLSX")).unwrap(), Format::Xlsx);
        assert_eq!(Format::of(Path::new("a.csv")).unwrap(), Format::Csv);
        assert_eq!(Format::of(Path::new("a.txt")).unwrap(), Format::Csv);
        assert!(Format::of(Path::new("a.xls")).is_err());
    }

    #[test]
    fn xlsx_first_sheet_rows_and_cell_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.xlsx");
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let sheet = workbook.add_worksheet();
        // A title-less sheet whose header starts on row 2, column B.
        sheet.write_string(1, 1, "Tên khách hàng").unwrap();
        sheet.write_string(1, 2, "Số điện thoại").unwrap();
        sheet.write_string(1, 3, "Doanh thu").unwrap();
        sheet.write_string(1, 4, "attributes.vip").unwrap();
        sheet.write_string(2, 1, "Nguyễn Văn An").unwrap();
        sheet.write_number(2, 2, 912_345_678.0).unwrap();
        sheet.write_number(2, 3, 75_000_000.0).unwrap();
        sheet.write_boolean(2, 4, true).unwrap();
        // Row 4 blank; row 5 with a gap in the middle.
        sheet.write_string(4, 1, "Trần Thị Bình\nphòng 2").unwrap();
        sheet.write_number(4, 3, 1.5).unwrap();
        let other = workbook.add_worksheet();
        other.write_string(0, 0, "not read").unwrap();
        workbook.save(&path).unwrap();

        let table = open(&path, Format::Xlsx).unwrap();
        assert_eq!(table.size(), Size::Rows(3));
        let (header, rows) = records(&path);
        assert_eq!(
            header,
            [
                "",
                "Tên khách hàng",
                "Số điện thoại",
                "Doanh thu",
                "attributes.vip"
            ]
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].number, 3);
        // Three rows below the header, the last of them read.
        assert_eq!(rows[1].position, 3);
        assert_eq!(
            cells(&rows[0]),
            ["", "Nguyễn Văn An", "912345678", "75000000", "TRUE"]
        );
        assert_eq!(rows[1].number, 5);
        assert_eq!(cells(&rows[1]), ["", "Trần Thị Bình\nphòng 2", "", "1.5"]);
    }

    #[test]
    fn xlsx_dates_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.xlsx");
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let sheet = workbook.add_worksheet();
        let date_format = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
        sheet.write_string(0, 0, "name").unwrap();
        sheet.write_string(0, 1, "attributes.birthday").unwrap();
        sheet.write_string(1, 0, "An").unwrap();
        let date = rust_xlsxwriter::ExcelDateTime::from_ymd(1990, 5, 17).unwrap();
        sheet
            .write_datetime_with_format(1, 1, &date, &date_format)
            .unwrap();
        sheet.write_string(2, 0, "Bình").unwrap();
        sheet
            .write_formula(
                2,
                1,
                rust_xlsxwriter::Formula::new("=1/0").set_result("#DIV/0!"),
            )
            .unwrap();
        workbook.save(&path).unwrap();
        let (_, rows) = records(&path);
        assert_eq!(cells(&rows[0]), ["An", "1990-05-17"]);
        assert_eq!(rows[1].problems.len(), 1, "{:?}", rows[1]);
        assert!(
            rows[1].problems[0].starts_with("cell B3"),
            "{:?}",
            rows[1].problems
        );
    }

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(float_text(84_912_345_678.0), "84912345678");
        assert_eq!(float_text(0.25), "0.25");
        assert_eq!(cell_text(&DataRef::Int(-3)).unwrap(), "-3");
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(27), "AB");
    }
}
