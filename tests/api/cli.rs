//! `crm-classify import` and `crm-classify export`: the real binary run
//! against the test server on CSV and XLSX files the tests make (and on
//! the repository's `examples/customers.csv`), checking its exit code, the
//! errors file and what the server stored; a dry run that writes nothing;
//! an import killed in the middle and run again, which creates no
//! duplicate; and export → import into a fresh tenant → export giving the
//! same rows.
//!
//! Every wait is on an event: the process's exit (bounded by a limit that
//! fails the test) or a message on a change stream.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use crm_classify::{
    cli::read::{self, Format},
    pb::{
        CreateCustomerRequest, CreateGroupRequest, CreateSourceRequest, Customer, Group,
        ListCustomersRequest, RelationshipChangeCause, Source, WatchRelationshipChangesRequest,
        watch_relationship_changes_response::Event,
    },
};

use crate::fixtures::{Events, history, list_pages, opening_heartbeat, rel, relationships};
use crate::helpers::{Backend, TestApp, new_tenant};
use crate::on_both_databases;

/// The longest one run of the command may take.
const LIMIT: Duration = Duration::from_secs(120);

/// A finished run of the command.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status {:?}\nstderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }
}

/// The command with `args`, talking to `app` as `tenant`; only the
/// arguments configure it, whatever the environment says.
fn command(app: &TestApp, tenant: &str, args: &[&str]) -> Command {
    command_at(&format!("http://{}", app.addr), tenant, args)
}

/// The command with `args`, talking to the server at `server`.
fn command_at(server: &str, tenant: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm-classify"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CRM_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .args(["--server", server])
        .args(["--tenant", tenant])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the command to its exit (at most [`LIMIT`]).
async fn crm(app: &TestApp, tenant: &str, args: &[&str]) -> Run {
    let child = command(app, tenant, args)
        .spawn()
        .expect("start crm-classify");
    let pid = child.id();
    let waited = tokio::time::timeout(
        LIMIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let output = match waited {
        Ok(joined) => joined
            .expect("the waiting task")
            .expect("wait for crm-classify"),
        Err(_) => {
            // SAFETY: kill(2) on the child's own pid, which is not reaped
            // while the waiting task still owns the child.
            unsafe {
                libc::kill(i32::try_from(pid).expect("pid"), libc::SIGKILL);
            }
            panic!("crm-classify {args:?} was still running after {LIMIT:?}");
        }
    };
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A table file read back: its header and rows.
fn table(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let format = Format::of(path).expect("format");
    let table = read::open(path, format).unwrap_or_else(|e| panic!("{e}"));
    let header = table.header().to_vec();
    let mut rows = Vec::new();
    table
        .for_each(|record| {
            let mut cells = record.cells;
            cells.resize(header.len(), String::new());
            rows.push(cells);
            std::ops::ControlFlow::Continue(())
        })
        .expect("read the table");
    (header, rows)
}

/// The errors file beside `input`: (row number, reason, original cells).
fn errors_of(input: &Path) -> Vec<(u64, String, Vec<String>)> {
    let path = errors_path(input);
    let (header, rows) = table(&path);
    assert_eq!(header[..2], ["error_row", "error_reason"]);
    rows.into_iter()
        .map(|mut row| {
            let cells = row.split_off(2);
            let number = row[0].parse().expect("row number");
            (number, row[1].clone(), cells)
        })
        .collect()
}

fn errors_path(input: &Path) -> PathBuf {
    let mut name = input.file_name().expect("file name").to_owned();
    name.push(".errors.csv");
    input.with_file_name(name)
}

/// The catalog `examples/customers.csv` uses, in `tenant`.
async fn example_catalog(app: &TestApp, tenant: &str) {
    for name in ["Khách hàng VIP", "Khách sỉ", "Khách lẻ"] {
        app.groups_of(tenant)
            .create_group(CreateGroupRequest {
                group: Some(Group {
                    name: name.to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create group");
    }
    for name in ["Website", "Facebook", "Giới thiệu", "Hội chợ"] {
        app.sources_of(tenant)
            .create_source(CreateSourceRequest {
                source: Some(Source {
                    name: name.to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create source");
    }
}

/// Group and source codes by id, in `tenant`.
async fn codes(app: &TestApp, tenant: &str) -> HashMap<String, String> {
    let groups = crate::fixtures::listed_groups(&mut app.groups_of(tenant)).await;
    let sources = crate::fixtures::listed_sources(&mut app.sources_of(tenant)).await;
    groups
        .into_iter()
        .map(|g| (g.id, g.code))
        .chain(sources.into_iter().map(|s| (s.id, s.code)))
        .collect()
}

/// Every active customer of `tenant`.
async fn customers(app: &TestApp, tenant: &str) -> Vec<Customer> {
    let request = ListCustomersRequest {
        page_size: 1000,
        order_by: "name".to_owned(),
        ..Default::default()
    };
    list_pages(&mut app.customers_of(tenant), request)
        .await
        .into_iter()
        .flat_map(|page| page.customers)
        .collect()
}

fn by_name<'a>(customers: &'a [Customer], name: &str) -> &'a Customer {
    customers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no customer {name}"))
}

/// A copy of the repository's example file in `dir` (its errors file goes
/// there too).
fn example_file(dir: &Path) -> PathBuf {
    let path = dir.join("customers.csv");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/customers.csv"),
        &path,
    )
    .expect("copy the example");
    path
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write the test file");
}

on_both_databases! {
    async fn the_example_file_imports_its_good_rows_and_reports_its_bad_ones(app: TestApp) {
        example_catalog(&app, &app.tenant).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let input = example_file(dir.path());
        let run = crm(
            &app,
            &app.tenant,
            &["import", text(&input), "--mode", "create", "--actor", "u-7", "--reason", "nhập từ Getfly"],
        )
        .await;
        run.expect_code(1);
        assert!(run.stderr.contains("14 rows: 10 created, 0 updated, 0 unchanged, 4 failed"), "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);

        // One line per bad row: the spreadsheet's row number, the server's
        // reason, the row as it was in the file.
        let errors = errors_of(&input);
        let numbers: Vec<u64> = errors.iter().map(|e| e.0).collect();
        assert_eq!(numbers, [12, 13, 14, 15]);
        let (_, original) = table(&input);
        for (number, _, cells) in &errors {
            assert_eq!(cells, &original[usize::try_from(*number).expect("row") - 2]);
        }
        assert!(errors[0].1.contains("name"), "{}", errors[0].1);
        assert!(errors[1].1.contains("email"), "{}", errors[1].1);
        assert!(errors[1].1.contains("hoa.do@gmail"), "{}", errors[1].1);
        assert!(errors[2].1.contains("KHACH_VANG_LAI"), "{}", errors[2].1);
        assert!(errors[3].1.contains("from row 2 of this import"), "{}", errors[3].1);

        // The good rows, with names and codes turned into the tenant's ids.
        let stored = customers(&app, &app.tenant).await;
        assert_eq!(stored.len(), 10);
        let codes = codes(&app, &app.tenant).await;
        let relationships = relationships(&mut app.relationships()).await;
        let an = by_name(&stored, "Nguyễn Văn An");
        assert_eq!(an.phone, "0912345678");
        assert_eq!(an.email, "an.nguyen@example.vn");
        assert_eq!(codes[&an.source_id], "WEBSITE");
        assert_eq!(an.relationship_id, rel(&relationships, "HOT"));
        let mut groups: Vec<&str> = an.group_ids.iter().map(|id| codes[id].as_str()).collect();
        groups.sort_unstable();
        assert_eq!(groups, ["KHACH_HANG_VIP", "KHACH_SI"]);
        assert_eq!(an.province, "Hà Nội");
        assert_eq!(an.revenue, 75_000_000);
        assert_eq!(an.attributes, BTreeMap::from([("tier".to_owned(), "Vàng".to_owned())]));
        let cuong = by_name(&stored, "Lê Hoàng Cường");
        assert_eq!(cuong.company, "Công ty Cổ phần Minh Long, chi nhánh Sài Gòn");
        assert_eq!(codes[&cuong.source_id], "GIOI_THIEU");
        // Empty cells left the fields unset.
        let dung = by_name(&stored, "Phạm Thị Dung");
        assert_eq!((dung.email.as_str(), dung.revenue), ("", 0));
        assert!(dung.attributes.is_empty());
        // The actor and reason are recorded with cause IMPORT.
        let changes = history(&mut app.customers(), &an.id).await;
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].cause(), RelationshipChangeCause::Import);
        assert_eq!(changes[0].actor_id, "u-7");
        assert_eq!(changes[0].reason, "nhập từ Getfly");
    }

    async fn csv_dialects_bom_semicolons_and_quoted_line_breaks(app: TestApp) {
        example_catalog(&app, &app.tenant).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("khach.csv");
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(
            "Customer name;Phone;E-mail;Company;Customer groups;Source;Attributes;attributes.tier;attributes.ghi_chu\r\n\
             Nguyễn Văn An;0912 345 678;an@example.vn;\"An Phát; chi nhánh 2\";\"khach hang vip; KHÁCH SỈ\";facebook;\"{\"\"region\"\": \"\"Miền Bắc\"\", \"\"tier\"\": \"\"Bạc\"\"}\";Vàng;\"Gọi lại\nsau Tết\"\r\n\
             Trần Thị Bình;0903 222 111;binh@;;;;;;\r\n\
             ;;;;;;;;\r\n\
             Lê Văn Cường;0987 654 321;;;;;{\"\"not\"\": json;;\r\n"
                .as_bytes(),
        );
        write(&input, &bytes);
        let run = crm(&app, &app.tenant, &["import", text(&input)]).await;
        run.expect_code(1);
        let stored = customers(&app, &app.tenant).await;
        assert_eq!(
            stored.len(),
            1,
            "only the first row is good: {}\n{:?}",
            run.stderr,
            std::fs::read_to_string(errors_path(&input))
        );
        let an = &stored[0];
        assert_eq!(an.company, "An Phát; chi nhánh 2");
        let codes = codes(&app, &app.tenant).await;
        let mut groups: Vec<&str> = an.group_ids.iter().map(|id| codes[id].as_str()).collect();
        groups.sort_unstable();
        assert_eq!(groups, ["KHACH_HANG_VIP", "KHACH_SI"]);
        assert_eq!(codes[&an.source_id], "FACEBOOK");
        // The attribute column wins over the JSON column's key.
        assert_eq!(
            an.attributes,
            BTreeMap::from([
                ("ghi_chu".to_owned(), "Gọi lại\nsau Tết".to_owned()),
                ("region".to_owned(), "Miền Bắc".to_owned()),
                ("tier".to_owned(), "Vàng".to_owned()),
            ])
        );
        // Rows are numbered by record: the first record spans two lines,
        // the blank one still counts.
        let errors = errors_of(&input);
        assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 5]);
        assert!(errors[0].1.contains("email"), "{}", errors[0].1);
        assert!(errors[1].1.starts_with("attributes: not a JSON object"), "{}", errors[1].1);
        assert_eq!(errors[1].2[0], "Lê Văn Cường");
    }

    async fn xlsx_upsert_by_phone_then_update_by_email(app: TestApp) {
        let mut client = app.customers();
        let existing = client
            .create_customer(CreateCustomerRequest {
                customer: Some(Customer {
                    name: "Nguyễn Văn An".to_owned(),
                    phone: "0912345678".to_owned(),
                    email: "an@example.vn".to_owned(),
                    company: "An Phát".to_owned(),
                    province: "Hà Nội".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner()
            .customer
            .expect("customer");
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("khach.xlsx");
        {
            let mut workbook = rust_xlsxwriter::Workbook::new();
            let sheet = workbook.add_worksheet();
            for (column, label) in ["Customer name", "Phone", "Company", "Province/City", "Revenue", "Relationship"].iter().enumerate() {
                sheet.write_string(0, u16::try_from(column).expect("column"), *label).expect("header");
            }
            // The stored customer, its phone written differently, its
            // company cell empty (kept), its province changed.
            sheet.write_string(1, 0, "Nguyễn Văn An").expect("cell");
            sheet.write_string(1, 1, "0912 345 678").expect("cell");
            sheet.write_string(1, 3, "Đà Nẵng").expect("cell");
            sheet.write_number(1, 4, 75_000_000.0).expect("cell");
            sheet.write_string(1, 5, "HOT").expect("cell");
            // A new one.
            sheet.write_string(2, 0, "Trần Thị Bình").expect("cell");
            sheet.write_string(2, 1, "0903 222 111").expect("cell");
            sheet.write_string(2, 5, "Potential").expect("cell");
            // The automatic relationship cannot be set by hand.
            sheet.write_string(3, 0, "Lê Văn Cường").expect("cell");
            sheet.write_string(3, 1, "0987 654 321").expect("cell");
            sheet.write_string(3, 5, "DONT_FORGET").expect("cell");
            workbook.save(&input).expect("save the workbook");
        }
        let run = crm(&app, &app.tenant, &["import", text(&input), "--mode", "upsert", "--match-on", "phone"]).await;
        run.expect_code(1);
        assert!(run.stderr.contains("3 rows: 1 created, 1 updated, 0 unchanged, 1 failed"), "{}", run.stderr);
        let errors = errors_of(&input);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 4);
        assert!(errors[0].1.contains("relationship"), "{}", errors[0].1);
        let stored = customers(&app, &app.tenant).await;
        assert_eq!(stored.len(), 2);
        let relationships = relationships(&mut app.relationships()).await;
        let an = by_name(&stored, "Nguyễn Văn An");
        assert_eq!(an.id, existing.id);
        assert_eq!(an.company, "An Phát", "an empty cell leaves the stored value");
        assert_eq!(an.province, "Đà Nẵng");
        assert_eq!(an.revenue, 75_000_000);
        assert_eq!(an.relationship_id, rel(&relationships, "HOT"));
        let binh = by_name(&stored, "Trần Thị Bình");
        assert_eq!(binh.relationship_id, rel(&relationships, "POTENTIAL"));

        // Update by email: a row matching nobody fails, the other applies;
        // a row with nothing new is unchanged.
        let input = dir.path().join("sua.xlsx");
        {
            let mut workbook = rust_xlsxwriter::Workbook::new();
            let sheet = workbook.add_worksheet();
            for (column, label) in ["Email", "Công ty", "Tỉnh/Thành phố"].iter().enumerate() {
                sheet.write_string(0, u16::try_from(column).expect("column"), *label).expect("header");
            }
            sheet.write_string(1, 0, "AN@example.vn").expect("cell");
            sheet.write_string(1, 1, "An Phát Group").expect("cell");
            sheet.write_string(2, 0, "nobody@example.vn").expect("cell");
            sheet.write_string(2, 1, "X").expect("cell");
            sheet.write_string(3, 0, "an@example.vn").expect("cell");
            sheet.write_string(3, 2, "Đà Nẵng").expect("cell");
            workbook.save(&input).expect("save the workbook");
        }
        let run = crm(&app, &app.tenant, &["import", text(&input), "--mode", "update", "--match-on", "email"]).await;
        run.expect_code(1);
        assert!(run.stderr.contains("3 rows: 0 created, 1 updated, 1 unchanged, 1 failed"), "{}", run.stderr);
        let errors = errors_of(&input);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 3);
        assert!(errors[0].1.contains("nobody@example.vn"), "{}", errors[0].1);
        assert_eq!(errors[0].2, ["nobody@example.vn", "X", ""]);
        let stored = customers(&app, &app.tenant).await;
        assert_eq!(by_name(&stored, "Nguyễn Văn An").company, "An Phát Group");

        // Every row succeeding exits 0 and leaves no errors file (the
        // earlier run's is removed).
        let run = run_again_fixed(&app, &input).await;
        run.expect_code(0);
        assert!(!errors_path(&input).exists());
    }

    async fn a_dry_run_writes_nothing_but_reports_every_row(app: TestApp) {
        example_catalog(&app, &app.tenant).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let input = example_file(dir.path());
        let run = crm(&app, &app.tenant, &["import", text(&input), "--mode", "create", "--dry-run"]).await;
        run.expect_code(1);
        assert!(run.stderr.contains("14 rows: 10 created, 0 updated, 0 unchanged, 4 failed"), "{}", run.stderr);
        assert!(run.stderr.contains("dry run: nothing was written"), "{}", run.stderr);
        assert_eq!(errors_of(&input).iter().map(|e| e.0).collect::<Vec<_>>(), [12, 13, 14, 15]);
        assert!(customers(&app, &app.tenant).await.is_empty());
        // A dry run is not an earlier run of the real one: it then applies
        // every row.
        let run = crm(&app, &app.tenant, &["import", text(&input), "--mode", "create"]).await;
        run.expect_code(1);
        assert!(!run.stderr.contains("earlier run"), "{}", run.stderr);
        assert_eq!(customers(&app, &app.tenant).await.len(), 10);
    }

    async fn usage_file_and_connection_errors_exit_2_before_any_row(app: TestApp) {
        example_catalog(&app, &app.tenant).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("khach.csv");
        write(&input, "Tên khách hàng,Số điện thoại,Fax,Ghi chú\nAn,0912345678,1,x\n".as_bytes());
        let run = crm(&app, &app.tenant, &["import", text(&input)]).await;
        run.expect_code(2);
        assert!(run.stderr.contains("unknown columns \"Fax\", \"Ghi chú\""), "{}", run.stderr);
        assert!(!errors_path(&input).exists());

        // Upsert on email needs an email column.
        write(&input, "name,phone\nAn,0912345678\n".as_bytes());
        let run = crm(&app, &app.tenant, &["import", text(&input), "--match-on", "email"]).await;
        run.expect_code(2);
        assert!(run.stderr.contains("no email column"), "{}", run.stderr);

        // A default group that does not exist.
        let run = crm(&app, &app.tenant, &["import", text(&input), "--default-groups", "KHACH_LE,NOPE"]).await;
        run.expect_code(2);
        assert!(run.stderr.contains("--default-groups \"NOPE\""), "{}", run.stderr);

        let run = crm(&app, &app.tenant, &["import", text(&dir.path().join("missing.csv"))]).await;
        run.expect_code(2);

        // A bad option value is clap's usage error, also 2.
        let run = crm(&app, &app.tenant, &["import", text(&input), "--mode", "merge"]).await;
        run.expect_code(2);

        // Nothing listens on a port just freed.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", closed.local_addr().expect("address"));
        drop(closed);
        let output = {
            let mut command = command_at(&address, &app.tenant, &["import", text(&input)]);
            tokio::task::spawn_blocking(move || command.output()).await.expect("task").expect("run")
        };
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach the server"));

        assert!(customers(&app, &app.tenant).await.is_empty());

        // The export refuses a filter before creating its file.
        let output_file = dir.path().join("out.csv");
        let run = crm(&app, &app.tenant, &["export", "--filter", "revenu > 5", "-o", text(&output_file)]).await;
        run.expect_code(2);
        assert!(run.stderr.contains("revenu"), "{}", run.stderr);
        assert!(!output_file.exists());
    }

    async fn an_import_killed_midway_resumes_without_duplicates(app: TestApp) {
        const ROWS: usize = 10_000;
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("many.csv");
        let mut csv = String::from("name,phone,province\n");
        for i in 0..ROWS {
            csv.push_str(&format!("Khách {i},09{i:08},Hà Nội\n"));
        }
        write(&input, csv.as_bytes());
        let mut events: Events = app
            .relationships()
            .watch_relationship_changes(WatchRelationshipChangesRequest::default())
            .await
            .expect("watch")
            .into_inner();
        opening_heartbeat(&mut events, 0).await;
        let mut child = command(&app, &app.tenant, &["import", text(&input), "--mode", "create"])
            .spawn()
            .expect("start crm-classify");
        // The first imported customer: a batch has committed. Cut there.
        let first = tokio::time::timeout(LIMIT, events.message())
            .await
            .expect("an IMPORT change in time")
            .expect("the stream")
            .expect("an event");
        match first.event {
            Some(Event::Change(change)) => {
                assert_eq!(change.cause(), RelationshipChangeCause::Import);
            }
            other => panic!("expected a change, got {other:?}"),
        }
        child.kill().expect("kill crm-classify");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("task")
            .expect("wait");
        assert!(!status.success(), "the import was cut before it ended");
        let before = customers(&app, &app.tenant).await.len();
        assert!(before > 0 && before < ROWS, "{before} rows applied before the cut");

        // The same command again: the same request id; the rows applied
        // before the cut are reported, not applied again.
        // Creating, so a row applied twice would fail on its taken phone.
        let run = crm(&app, &app.tenant, &["import", text(&input), "--mode", "create"]).await;
        run.expect_code(0);
        assert!(run.stderr.contains("already applied by an earlier run"), "{}", run.stderr);
        let stored = customers(&app, &app.tenant).await;
        assert_eq!(stored.len(), ROWS);
        let phones: HashSet<&str> = stored.iter().map(|c| c.phone.as_str()).collect();
        assert_eq!(phones.len(), ROWS);
    }

    async fn export_then_import_into_a_fresh_tenant_gives_the_same_rows(app: TestApp) {
        example_catalog(&app, &app.tenant).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let input = example_file(dir.path());
        crm(&app, &app.tenant, &["import", text(&input), "--mode", "create", "--actor", "u-1"]).await.expect_code(1);
        // One more with an owner and several attributes, by the API.
        app.customers()
            .create_customer(CreateCustomerRequest {
                customer: Some(Customer {
                    name: "Mai Anh Tuấn".to_owned(),
                    owner_id: "u-9".to_owned(),
                    attributes: BTreeMap::from([
                        ("tier".to_owned(), "Kim cương".to_owned()),
                        ("ghi_chu".to_owned(), "gọi sau 5h, \"ưu tiên\"".to_owned()),
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create");
        for (extension, labels) in [("csv", "vi"), ("xlsx", "en"), ("csv", "field")] {
            let first = dir.path().join(format!("a-{labels}.{extension}"));
            let second = dir.path().join(format!("b-{labels}.{extension}"));
            crm(&app, &app.tenant, &["export", "--order-by", "name", "--labels", labels, "-o", text(&first)])
                .await
                .expect_code(0);
            let fresh = new_tenant();
            example_catalog(&app, &fresh).await;
            let run_import = crm(&app, &fresh, &["import", text(&first), "--mode", "create"]).await;
            run_import.expect_code(0);
            assert!(run_import.stderr.contains("11 rows: 11 created"), "{}", run_import.stderr);
            crm(&app, &fresh, &["export", "--order-by", "name", "--labels", labels, "-o", text(&second)])
                .await
                .expect_code(0);
            let (header, rows) = table(&first);
            let (header_again, rows_again) = table(&second);
            assert_eq!(header, header_again);
            assert_eq!(rows.len(), 11);
            // Ids and times differ; everything else is the same.
            let kept: Vec<usize> = header
                .iter()
                .enumerate()
                .filter(|(_, h)| {
                    !["id", "Customer ID", "Mã khách hàng", "create_time", "Created", "Ngày tạo",
                      "update_time", "Updated", "Ngày cập nhật", "last_contact_time",
                      "Last contact", "Lần liên hệ cuối"].contains(&h.as_str())
                })
                .map(|(i, _)| i)
                .collect();
            assert_eq!(kept.len(), 12, "{header:?}");
            let strip = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
                rows.iter().map(|r| kept.iter().map(|&i| r[i].clone()).collect()).collect()
            };
            assert_eq!(strip(&rows), strip(&rows_again), "{labels} {extension}");
            // The codes, not ids, and the attributes as JSON.
            let tuan = rows.iter().find(|r| r[1] == "Mai Anh Tuấn").expect("Tuấn");
            assert_eq!(tuan[4], "u-9");
            assert_eq!(tuan[11], r#"{"ghi_chu":"gọi sau 5h, \"ưu tiên\"","tier":"Kim cương"}"#);
            let an = rows.iter().find(|r| r[1] == "Nguyễn Văn An").expect("An");
            assert_eq!(an[5..8], ["WEBSITE", "HOT", "KHACH_HANG_VIP; KHACH_SI"]);
        }
        // CSV on stdout, filtered by a relationship's code.
        let run = crm(&app, &app.tenant, &["export", "--relationship", "HOT", "--order-by", "name"]).await;
        run.expect_code(0);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert!(lines[0].starts_with("id,name,phone"), "{}", run.stdout);
        assert_eq!(lines.len(), 3, "{}", run.stdout);
        assert!(lines[1].contains("Nguyễn Văn An") && lines[2].contains("Vũ Thị Giang"), "{}", run.stdout);
    }
}

/// Runs the update file of `xlsx_upsert_by_phone_then_update_by_email`
/// again with the row matching nobody removed.
async fn run_again_fixed(app: &TestApp, input: &Path) -> Run {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(0, 0, "email").expect("header");
    sheet.write_string(0, 1, "company").expect("header");
    sheet.write_string(1, 0, "an@example.vn").expect("cell");
    sheet.write_string(1, 1, "An Phát Holdings").expect("cell");
    workbook.save(input).expect("save the workbook");
    crm(
        app,
        &app.tenant,
        &[
            "import",
            text(input),
            "--mode",
            "update",
            "--match-on",
            "email",
        ],
    )
    .await
}

/// Under `--auth jwt` the command sends its `--token`; without one, or
/// with too few scopes, it stops with the server's reason and exit code 2.
async fn the_command_sends_its_token_to_a_server_that_verifies_them(backend: Backend) {
    let app = crate::auth::secret_server(backend).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.csv");
    let reader = crate::auth::hs256(&crate::auth::claims(&app.tenant, "crm.read"));
    let run = crm(
        &app,
        &app.tenant,
        &["export", "-o", text(&output), "--token", &reader],
    )
    .await;
    run.expect_code(0);
    let run = crm(&app, &app.tenant, &["export", "-o", text(&output)]).await;
    run.expect_code(2);
    assert!(run.stderr.contains("Unauthenticated"), "{}", run.stderr);
    let input = example_file(dir.path());
    let run = crm(
        &app,
        &app.tenant,
        &[
            "import",
            text(&input),
            "--mode",
            "create",
            "--token",
            &reader,
        ],
    )
    .await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("PermissionDenied") && run.stderr.contains("crm.write"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&reader), "the token is never printed");
}

crate::on_both_backends!(the_command_sends_its_token_to_a_server_that_verifies_them);
