//! Command line and environment: every option is a `--flag` and a `CRM_*`
//! variable, with the defaults of the API contract.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::{auth::AuthMode, domain::relationship::SeedLocale};

/// Customer records cached when no other size is configured.
pub const DEFAULT_RECORD_CACHE: usize = 50_000;
/// Largest request message when no other is configured: tonic's default.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

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
    /// Print an HS256 token signed with --jwt-secret, for --jwt-issuer and
    /// --jwt-audience (the server's own options), to try `--auth jwt` from
    /// grpcurl or the CLI. Production tokens come from an identity provider.
    Token(crate::cli::token::TokenArgs),
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

    // Authentication and TLS (issue 18).
    /// Who may call: `auto` is `none` on a loopback address and refuses
    /// any other; `none` trusts every caller; `jwt` verifies a bearer
    /// token on every call but health.
    #[arg(long, env = "CRM_AUTH", value_enum, default_value_t, global = true)]
    pub auth: AuthMode,

    /// HS256 secret (at least 32 bytes) that tokens are signed with.
    /// Prefer the environment variable: flags show in process lists.
    #[arg(long, env = "CRM_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,

    /// The identity provider's public keys: a JWKS file or an
    /// `https://` URL, read again every --jwt-jwks-refresh and when a
    /// token names an unknown key id (at most every 30 s).
    #[arg(long, env = "CRM_JWT_JWKS", global = true)]
    pub jwt_jwks: Option<String>,

    /// How often the JWK set is read again.
    #[arg(long, env = "CRM_JWT_JWKS_REFRESH", default_value = "5m", value_parser = parse_duration, global = true)]
    pub jwt_jwks_refresh: Duration,

    /// The accepted `iss`.
    #[arg(long, env = "CRM_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// The `aud` a token must name.
    #[arg(long, env = "CRM_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// The claim naming the token's tenant.
    #[arg(
        long,
        env = "CRM_JWT_TENANT_CLAIM",
        default_value = "tenant_id",
        global = true
    )]
    pub jwt_tenant_claim: String,

    /// Accepted signature algorithms, comma-separated; never taken from
    /// the token. Default: HS256 with --jwt-secret, RS256 with --jwt-jwks.
    #[arg(long, env = "CRM_JWT_ALGORITHMS", value_delimiter = ',', global = true)]
    pub jwt_algorithms: Vec<String>,

    /// Clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "CRM_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration, global = true)]
    pub jwt_leeway: Duration,

    /// Serve gRPC server reflection (v1 and v1alpha).
    #[arg(long, env = "CRM_REFLECTION", default_value_t = true, action = ArgAction::Set, global = true)]
    pub reflection: bool,

    /// PEM certificate chain: serve TLS (with --tls-key).
    #[arg(long, env = "CRM_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "CRM_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate: mutual TLS, only clients presenting a
    /// certificate it issued may connect.
    #[arg(long, env = "CRM_TLS_CLIENT_CA", global = true)]
    pub tls_client_ca: Option<PathBuf>,

    // Limits (issue 18).
    /// Calls per second each tenant may make, health and reflection
    /// excepted; over it a call is RESOURCE_EXHAUSTED with the time to
    /// wait. A stream counts once, when it starts. 0: no limit.
    #[arg(long, env = "CRM_TENANT_RATE", default_value_t = 0.0, global = true)]
    pub tenant_rate: f64,

    /// Calls a tenant may make at once, above its steady rate, after a
    /// quiet spell; twice `--tenant-rate` (at least 1) when not given.
    #[arg(long, env = "CRM_TENANT_BURST", global = true)]
    pub tenant_burst: Option<u32>,

    /// Largest request message, in bytes, of every service; a larger one
    /// is RESOURCE_EXHAUSTED. 4 MiB, tonic's default.
    #[arg(long, env = "CRM_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES, global = true)]
    pub max_request_bytes: usize,

    /// Calls in flight at once on the whole server, change streams and
    /// health excepted; further calls are answered UNAVAILABLE at once,
    /// never queued. 0: no limit.
    #[arg(
        long,
        env = "CRM_MAX_CONCURRENT_CALLS",
        default_value_t = 512,
        global = true
    )]
    pub max_concurrent_calls: usize,

    /// Change streams (both watches together) one tenant may hold open;
    /// one more is RESOURCE_EXHAUSTED. 0: no limit.
    #[arg(
        long,
        env = "CRM_MAX_WATCHES_PER_TENANT",
        default_value_t = 1000,
        global = true
    )]
    pub max_watches_per_tenant: usize,

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
    fn the_limits_are_flags_and_the_rate_is_off_by_default() {
        let defaults = Config::from_defaults();
        assert_eq!(defaults.tenant_rate, 0.0);
        assert_eq!(defaults.tenant_burst, None);
        assert_eq!(defaults.max_request_bytes, 4 * 1024 * 1024);
        assert_eq!(defaults.max_concurrent_calls, 512);
        assert_eq!(defaults.max_watches_per_tenant, 1000);
        let cli = Cli::parse_from([
            "crm-classify",
            "--tenant-rate",
            "2.5",
            "--tenant-burst",
            "4",
            "--max-request-bytes",
            "1024",
            "--max-concurrent-calls",
            "8",
            "--max-watches-per-tenant",
            "3",
        ]);
        assert_eq!(cli.config.tenant_rate, 2.5);
        assert_eq!(cli.config.tenant_burst, Some(4));
        assert_eq!(cli.config.max_request_bytes, 1024);
        assert_eq!(cli.config.max_concurrent_calls, 8);
        assert_eq!(cli.config.max_watches_per_tenant, 3);
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
