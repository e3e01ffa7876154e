//! Command line and environment: every option is a `--flag` and a `CRM_*`
//! variable, with the defaults of the API contract.

use std::{net::SocketAddr, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::domain::relationship::SeedLocale;

/// Customer records cached when no other size is configured.
pub const DEFAULT_RECORD_CACHE: usize = 50_000;

/// `crm-classify`: classifies customers by group, source and relationship.
#[derive(Debug, Clone, Parser)]
#[command(name = "crm-classify", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options shared by every command (the server's; `import` and
    /// `export` read only their own).
    #[command(flatten, next_help_heading = "Server options")]
    pub config: Config,
}

/// Exit codes of `import` and `export`, for their help.
const CLI_EXIT_CODES: &str = "Exit codes: 0 when every row succeeded; 1 when the import ran to the end but some rows failed (they are in FILE.errors.csv); 2 for usage, file or connection errors, and a server that refused or cut the call.";

/// The binary's commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Ask the server at `--listen` for its grpc.health.v1 status; exit 0
    /// when SERVING (for container health checks).
    HealthCheck,
    /// Import customers from a CSV or XLSX file into a running server.
    ///
    /// Columns are named by field (id, name, phone, email, owner_id,
    /// source, relationship, groups, province, company, revenue,
    /// attributes, attributes.KEY) or by their Vietnamese or English labels
    /// ("Tên khách hàng", "Số điện thoại", "Customer name", …; the README
    /// lists them). An empty cell leaves the field unset: an updated
    /// customer keeps its value. Groups are a `;`-separated list of codes
    /// or names; sources and relationships a code or a name. Failed rows
    /// are written to FILE.errors.csv with their row number and reason.
    #[command(after_help = CLI_EXIT_CODES)]
    Import(Box<crate::cli::import::ImportArgs>),
    /// Export customers from a running server to CSV or XLSX.
    ///
    /// Writes the importable columns (sources, relationships and groups as
    /// codes, attributes as one JSON object), then profile_completion,
    /// last_contact_time, create_time and update_time, which an import
    /// skips: the file imports into another tenant with the same codes.
    #[command(
        after_help = "Exit codes: 0 when the export was written; 2 for usage, file or connection errors, and a server that refused or cut the call."
    )]
    Export(Box<crate::cli::export::ExportArgs>),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Server configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the log names it).
    #[arg(
        long,
        env = "CRM_LISTEN",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` (created on first start) or `postgres://…`.
    #[arg(
        long,
        env = "CRM_DATABASE_URL",
        default_value = "sqlite://crm-classify.db",
        global = true
    )]
    pub database_url: String,

    /// Apply pending migrations at start.
    #[arg(long, env = "CRM_MIGRATE", default_value_t = true, action = ArgAction::Set, global = true)]
    pub migrate: bool,

    /// Language of the relationship names seeded for new tenants.
    #[arg(
        long,
        env = "CRM_SEED_LOCALE",
        value_enum,
        default_value_t,
        global = true
    )]
    pub seed_locale: SeedLocale,

    /// Customer records kept in memory for fast reads (0: none). Each
    /// takes about 1 KB.
    #[arg(
        long,
        env = "CRM_RECORD_CACHE",
        default_value_t = DEFAULT_RECORD_CACHE,
        global = true
    )]
    pub record_cache: usize,

    /// How often the inactivity rule runs.
    #[arg(long, env = "CRM_SWEEP_INTERVAL", default_value = "60s", value_parser = parse_duration, global = true)]
    pub sweep_interval: Duration,

    /// Idle time before a watcher of the change stream gets a heartbeat.
    #[arg(long, env = "CRM_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_duration, global = true)]
    pub heartbeat_interval: Duration,

    /// How long relationship changes stay replayable.
    #[arg(long, env = "CRM_CHANGE_RETENTION", default_value = "30d", value_parser = parse_duration, global = true)]
    pub change_retention: Duration,

    /// How long shutdown waits for in-flight calls.
    #[arg(long, env = "CRM_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration, global = true)]
    pub shutdown_grace: Duration,

    /// How long one database statement of a request may run before the
    /// database cancels it (DEADLINE_EXCEEDED). Background upkeep has a
    /// bound of its own (see `store::db::connection::background_bound`).
    #[arg(long, env = "CRM_QUERY_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub query_timeout: Duration,

    /// How long a new connection may take to send the HTTP/2 preface;
    /// a connection that sends nothing is closed after it.
    #[arg(long, env = "CRM_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub handshake_timeout: Duration,

    /// Log format.
    #[arg(
        long,
        env = "CRM_LOG_FORMAT",
        value_enum,
        default_value_t,
        global = true
    )]
    pub log_format: LogFormat,

    // Metrics (issue 18).
    /// Address of the Prometheus endpoint (`GET /metrics`); none when
    /// unset. Port 0 picks a free port (the log names it).
    #[arg(long, env = "CRM_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// The defaults, as if no flag and no variable were given.
    pub fn from_defaults() -> Self {
        Cli::parse_from(["crm-classify"]).config
    }
}

/// Parses durations written like `500ms`, `15s`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 500ms, 15s, 30d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_contract_spellings() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn flags_override_defaults_and_migrate_takes_a_value() {
        let cli = Cli::parse_from([
            "crm-classify",
            "migrate",
            "--migrate=false",
            "--seed-locale",
            "vi",
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(cli.command, Some(Command::Migrate));
        assert!(!cli.config.migrate);
        assert_eq!(cli.config.seed_locale, SeedLocale::Vi);
        assert_eq!(cli.config.listen.port(), 0);
        assert_eq!(
            cli.config.change_retention,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(cli.config.query_timeout, Duration::from_secs(10));
    }

    #[test]
    fn import_and_export_take_their_own_flags() {
        let cli = Cli::parse_from(["crm-classify", "import", "khach.csv", "--tenant", "shop"]);
        let Some(Command::Import(args)) = cli.command else {
            panic!("not an import: {:?}", cli.command);
        };
        assert_eq!(args.file, std::path::PathBuf::from("khach.csv"));
        // Upsert on phone unless told otherwise.
        assert_eq!(args.mode, crate::cli::import::Mode::Upsert);
        assert_eq!(args.match_on, crate::cli::import::MatchOn::Phone);
        assert_eq!(args.server.tenant.as_deref(), Some("shop"));
        let cli = Cli::parse_from(["crm-classify", "export", "-o", "out.xlsx", "--labels", "vi"]);
        let Some(Command::Export(args)) = cli.command else {
            panic!("not an export: {:?}", cli.command);
        };
        assert_eq!(args.output, Some(std::path::PathBuf::from("out.xlsx")));
        assert_eq!(args.labels, crate::cli::columns::Labels::Vi);
        assert!(Cli::try_parse_from(["crm-classify", "import"]).is_err());
        assert!(
            Cli::try_parse_from(["crm-classify", "export", "--show-deleted", "--deleted-only"])
                .is_err()
        );
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        assert_eq!(Config::from_defaults().metrics_listen, None);
        let cli = Cli::parse_from(["crm-classify", "--metrics-listen", "127.0.0.1:9464"]);
        assert_eq!(
            cli.config.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(Cli::try_parse_from(["crm-classify", "--metrics-listen", "9464"]).is_err());
    }

    #[test]
    fn the_query_timeout_is_a_duration_flag() {
        let cli = Cli::parse_from(["crm-classify", "--query-timeout", "250ms"]);
        assert_eq!(cli.config.query_timeout, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["crm-classify", "--query-timeout", "soon"]).is_err());
    }
}
