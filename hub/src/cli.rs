//! The command line: `serve`, `migrate`, `admin create-owner`, `audit verify`, `backup`,
//! `restore`, `verify` (a track-record export, offline: the protocol crate's verifier). Parses flags,
//! loads the configuration (file ← environment ← flags), installs logging, runs the command.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::accounts::{self, NewUser, Role};
use crate::config::{Config, Overrides};

/// Tradecast hub: verifies provider-signed signals and fans them out to subscribers.
#[derive(Debug, Parser)]
#[command(name = "tradecast-hub", version, about)]
pub struct Cli {
    /// TOML configuration file (also `TRADECAST_HUB_CONFIG`).
    #[arg(long, global = true, env = "TRADECAST_HUB_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command understands.
#[derive(Debug, Args)]
pub struct Common {
    /// Data directory (SQLite file, development secrets). Default: the platform data dir.
    #[arg(long = "data", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of SQLite.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (migrations are applied first).
    Serve {
        /// Address to listen on. Default 127.0.0.1:7480.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// UDP address of the nodes' QUIC endpoint. Default: the HTTP address's IP and port.
        #[arg(long)]
        quic_listen: Option<std::net::SocketAddr>,
        /// Share rate limits through Redis.
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
        /// Production mode: every secret provided and strong.
        #[arg(long)]
        production: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Account administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// SQLite: write an online, consistent copy of the database (the hub may run). PostgreSQL:
    /// print the `pg_dump` command to use.
    Backup {
        /// The file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify a provider's track-record export offline (the same checks and output as
    /// `tradecast-verify`): every signature, seq, previous hash and receipt, then every figure
    /// recomputed from the records. Exit 0 when all is equal, 1 naming the first difference.
    Verify {
        /// The export file (`GET /public/v1/providers/{id}/export`).
        file: PathBuf,
        /// Pin the hub's identity key (hex) instead of trusting the export's.
        #[arg(long, value_name = "HEX")]
        hub_key: Option<String>,
    },
    /// SQLite: replace the database with a backup (stop the hub first; the current file is
    /// kept aside). PostgreSQL: print the `pg_restore` command to use.
    Restore {
        /// The backup to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
}

/// `admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the first owner account; the password is read from the first line of stdin.
    CreateOwner {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Name shown to people.
        #[arg(long, default_value = "Owner")]
        display_name: String,
    },
}

/// `audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit hash chain; exit status 1 if it is broken.
    Verify,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// The command line from `args` (the program name first): what `tradecast-hub` runs, and what
/// `tradecast demo` runs in its hub process.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    if let Command::Verify { file, hub_key } = &cli.command {
        return verify_export(file, hub_key.as_deref());
    }
    let mut overrides = Overrides {
        data_dir: cli.common.data_dir.clone(),
        database_url: cli.common.database_url.clone(),
        ..Default::default()
    };
    if let Command::Serve { listen, quic_listen, redis_url, production } = &cli.command {
        overrides.listen = *listen;
        overrides.quic_listen = *quic_listen;
        overrides.redis_url = redis_url.clone();
        overrides.production = *production;
    }
    let config = match Config::load(cli.config.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tradecast-hub: {e}");
            return ExitCode::from(2);
        }
    };
    let _tracing = match crate::telemetry::init_tracing(config.log_format, &config.telemetry) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("tradecast-hub: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tradecast-hub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "tradecast-hub failed");
            eprintln!("tradecast-hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Larger export files are refused before they are read whole.
const MAX_EXPORT_BYTES: u64 = 512 * 1024 * 1024;

/// `verify FILE [--hub-key HEX]`: offline, no configuration or database.
fn verify_export(file: &std::path::Path, hub_key: Option<&str>) -> ExitCode {
    use std::io::Read as _;
    let pin = match hub_key.map(tradecast_protocol::IdentityKey::from_hex).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tradecast-hub verify: --hub-key: {e}");
            return ExitCode::from(2);
        }
    };
    let mut bytes = Vec::new();
    let read = std::fs::File::open(file)
        .and_then(|f| f.take(MAX_EXPORT_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        eprintln!("tradecast-hub verify: {}: {e}", file.display());
        return ExitCode::from(2);
    }
    if bytes.len() as u64 > MAX_EXPORT_BYTES {
        eprintln!("tradecast-hub verify: {}: larger than {MAX_EXPORT_BYTES} bytes", file.display());
        return ExitCode::from(2);
    }
    let report = tradecast_protocol::track::verifier_report(&bytes, pin.as_ref());
    print!("{}", report.text);
    if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { .. } => {
            Box::pin(crate::run(config, std::env::vars(), shutdown_signal())).await?;
        }
        Command::Migrate => {
            let db = crate::open_db(&config).await?;
            db.ready().await?;
            println!("migrations applied ({:?})", db.backend());
        }
        Command::Admin { command: AdminCommand::CreateOwner { email, display_name } } => {
            let db = crate::open_db(&config).await?;
            if accounts::count_role(&db, Role::Owner).await? > 0 {
                anyhow::bail!(
                    "an owner exists already; further accounts are created through the API"
                );
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
            let now = crate::ids::Clock::default().now_ms();
            let new = NewUser {
                email: &email,
                password: &password,
                role: Role::Owner,
                display_name: &display_name,
            };
            let user = accounts::create_user(&db, &config.auth, now, &new, "cli", "cli")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("owner created: {} ({})", user.email, user.id);
        }
        Command::Audit { command: AuditCommand::Verify } => {
            let db = crate::open_db(&config).await?;
            match crate::audit::verify(&db).await {
                Ok(r) => println!("audit chain ok: {} entries, head {}", r.n_entries, r.head_hash),
                Err(e) => {
                    println!("audit chain BROKEN: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Verify { file, hub_key } => return Ok(verify_export(&file, hub_key.as_deref())),
        Command::Backup { out } => println!("{}", crate::backup::backup(&config, &out).await?),
        Command::Restore { from } => {
            println!("{}", crate::backup::restore(&config, &from).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
