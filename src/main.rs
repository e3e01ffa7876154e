//! The `crm-classify` binary: parse options, set up logging, then serve
//! (default), migrate, or check a running server's health; or, as a client
//! of a running server, import or export customers (no logging set up:
//! they print their own progress on stderr, and an export may write its
//! table to stdout).

use std::process::ExitCode;

use clap::Parser;
use crm_classify::{
    Application, cli,
    config::{Cli, Command},
    health,
    store::db::connection as database,
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command, config } = Cli::parse();
    let command = command.unwrap_or(Command::Serve);
    match command {
        Command::Import(args) => return cli::import(*args).await,
        Command::Export(args) => return cli::export(*args).await,
        Command::Token(args) => return cli::token::run(&args, &config),
        Command::Serve | Command::Migrate | Command::HealthCheck => {}
    }
    telemetry::init(config.log_format);
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config.database_url).await,
        Command::HealthCheck => health::check(config.listen).await.map_err(Into::into),
        Command::Import(_) | Command::Export(_) | Command::Token(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "crm-classify failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: crm_classify::Config) -> Result<(), crm_classify::app::StartError> {
    let app = Application::build(config).await?;
    app.run_until_stopped(stop_signal()).await
}

async fn migrate(url: &str) -> Result<(), crm_classify::app::StartError> {
    database::migrate_url(url).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
