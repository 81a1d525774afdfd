//! The command line: `ankisyncd [serve]`, `ankisyncd user add|list|devices|passwd|remove|
//! revoke|restore-previous`, `ankisyncd healthcheck`, the maintenance of the database file
//! (`backup OUT`, `check [--repair]`, `compact`), and moving users from and to the official
//! server (`import|export DIR`, its data folder). Flags here are the top layer of the configuration
//! (see `config`). A user command (and `backup`) is one admin request: sent to the running
//! server through its admin socket when one answers, else carried out on the database file
//! directly. `check`, `compact`, `import` and `export` need a stopped server.

use std::io::{IsTerminal, Read};
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::admin::{execute, socket_path, AdminError, ClientError, Context, Reply, Request};
use crate::auth::{env_users, hash_password, validate_user_name, EnvUserError, PasswordError};
use crate::config::{process_env, Config, ConfigError, Overrides};
use crate::fullsync::Scratch;
use crate::migrate::{export_official, import_official, ImportOptions, MigrateError};
use crate::store::{Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "ankisyncd",
    version,
    about = "A self-hosted sync server for Anki"
)]
pub struct Cli {
    /// Config file (default: ./ankisyncd.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [config: host].
    #[arg(long, global = true)]
    host: Option<IpAddr>,
    /// Port to listen on [config: port].
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Database file [config: database].
    #[arg(long, global = true, value_name = "FILE")]
    database: Option<PathBuf>,
    /// Log filter, e.g. info or debug [config: log_level].
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Largest request body in MiB [config: max_payload_megs].
    #[arg(long, global = true)]
    max_payload_megs: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sync server (the default).
    Serve,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Write a consistent copy of the database to OUT (atomically: OUT is complete or
    /// untouched). A running server writes it (through its admin socket) while syncs go
    /// on; with no server running, the command copies the file itself.
    Backup { out: PathBuf },
    /// Verify the database of a stopped server: redb's own integrity check, then
    /// ankisyncd's invariants. Exits non-zero when something is wrong.
    Check {
        /// Rebuild what is wrong where it is derived data (counts, indexes, reference
        /// counts) and remove what nothing refers to; users' rows are never changed.
        #[arg(long)]
        repair: bool,
    },
    /// Shrink the database file of a stopped server (after users or uploads were removed).
    Compact,
    /// Take users over from the official sync server's data folder (its SYNC_BASE): their
    /// collections and media, so devices carry on without a full sync. Users missing here are
    /// created from SYNC_USER1.. (set them as the official server had them).
    #[command(visible_alias = "import-official")]
    Import {
        /// The official server's data folder: one folder per user.
        dir: PathBuf,
        /// Replace the collection and media of users that already have some here.
        #[arg(long)]
        force: bool,
        /// Do not accept the logins devices got from the official server: every device must
        /// log in again (with the same password).
        #[arg(long)]
        require_login: bool,
    },
    /// Write every user out as the official sync server's data folder, which that server can
    /// then serve to the same devices without a full sync.
    #[command(visible_alias = "export-official")]
    Export {
        /// The folder to write (the official server's SYNC_BASE).
        dir: PathBuf,
        /// Replace user folders that already exist there.
        #[arg(long)]
        force: bool,
    },
    /// Ask the configured server for /health (over TLS when configured): exit status 0 when
    /// it answers 200, 1 otherwise. For container health checks.
    Healthcheck,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users: devices logged in, last sync, client versions, who manages them.
    List,
    /// List a user's logged-in devices, with the ids `user revoke --device` takes.
    Devices { name: String },
    /// Set a new password; every device of the user must log in again.
    Passwd {
        name: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user and all their data.
    Remove { name: String },
    /// Log a user's devices out (they must log in again): all of them, or one.
    Revoke {
        name: String,
        /// Only this device (an id from `ankisyncd user devices NAME`).
        #[arg(long, value_name = "ID")]
        device: Option<String>,
    },
    /// Undo the last full upload: the collection it replaced becomes current again (devices
    /// then full-sync; running it twice undoes the undo).
    RestorePrevious { name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serve(#[from] crate::app::ServeError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Users(#[from] EnvUserError),
    #[error("scratch directory next to the database: {0}")]
    Scratch(#[source] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Socket(#[from] ClientError),
    /// The server refused or failed the request; its message.
    #[error("{0}")]
    Refused(String),
    #[error(
        "database {} is held by a running server, but its admin socket {} does not answer \
         ({source}). A server starting or stopping opens it a moment later; one older than \
         this command has none: restart it, or stop it and run the command again",
        database.display(),
        socket.display()
    )]
    Unreachable {
        database: PathBuf,
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Backup(#[from] crate::store::BackupError),
    #[error("{problems} problem(s) found in {}", path.display())]
    CheckFailed { path: PathBuf, problems: usize },
    #[error("unhealthy: {0}")]
    Unhealthy(#[from] crate::healthcheck::HealthError),
}

/// Parse the process's arguments and run the command.
pub fn run() -> Result<(), CliError> {
    let cli = Cli::parse();
    let env = process_env();
    let overrides = Overrides {
        host: cli.host,
        port: cli.port,
        database: cli.database.clone(),
        log_level: cli.log_level.clone(),
        max_payload_megs: cli.max_payload_megs,
    };
    let config = Config::load(cli.config.as_deref(), &env, &overrides)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_logging(&config.log_level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.worker_threads())
                .max_blocking_threads(config.blocking_threads())
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            runtime.block_on(crate::app::serve(config, env))?;
            Ok(())
        }
        Command::User(command) => {
            init_logging("warn");
            user_command(&config, command)
        }
        Command::Backup { out } => {
            init_logging("warn");
            // The server resolves the path in its own working folder.
            let out = std::path::absolute(&out)
                .map_err(|e| CliError::Usage(format!("backup path {}: {e}", out.display())))?;
            print!("{}", show(&submit(&config, Request::Backup { out })?));
            Ok(())
        }
        Command::Check { repair } => {
            init_logging("warn");
            crate::maintenance::check(&config.database, repair)
        }
        Command::Compact => {
            init_logging("warn");
            crate::maintenance::compact(&config.database)
        }
        Command::Import {
            dir,
            force,
            require_login,
        } => {
            init_logging("warn");
            import(&config, &env, &dir, force, require_login)
        }
        Command::Export { dir, force } => {
            init_logging("warn");
            export(&config, &dir, force)
        }
        Command::Healthcheck => {
            crate::healthcheck::check(&config)?;
            println!("healthy");
            Ok(())
        }
    }
}

fn import(
    config: &Config,
    env: &std::collections::BTreeMap<String, String>,
    dir: &std::path::Path,
    force: bool,
    require_login: bool,
) -> Result<(), CliError> {
    let declared = env_users(env)?;
    // The database first: it is the lock that keeps a server (and its scratch files) away.
    let store = Store::open(&config.database)?;
    let scratch = Scratch::open(&config.database).map_err(CliError::Scratch)?;
    let options = ImportOptions {
        declared: &declared,
        force,
        require_login,
        keep_generations: config.keep_generations,
        now_ms: crate::clock::now_millis(),
    };
    for user in import_official(&store, &scratch, dir, &options)? {
        let collection = match user.collection {
            Some(c) => format!("{} notes, {} cards, {} reviews", c.notes, c.cards, c.revlog),
            None => "no collection".into(),
        };
        let login = if user.official_key {
            "devices keep their login"
        } else {
            "devices log in again"
        };
        println!(
            "{}{}: {collection}; {} media files ({}); {login}",
            user.name,
            if user.created { " (created)" } else { "" },
            user.media_files,
            format_bytes(user.media_bytes),
        );
    }
    Ok(())
}

fn export(config: &Config, dir: &std::path::Path, force: bool) -> Result<(), CliError> {
    let store = Store::open(&config.database)?;
    for user in export_official(&store, dir, force)? {
        let collection = match user.collection {
            Some(c) => format!("{} notes, {} cards, {} reviews", c.notes, c.cards, c.revlog),
            None => "no collection".into(),
        };
        println!(
            "{}: {collection}; {} media files ({})",
            user.name,
            user.media_files,
            format_bytes(user.media_bytes)
        );
    }
    Ok(())
}

fn format_bytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn user_command(config: &Config, command: UserCommand) -> Result<(), CliError> {
    let request = match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            // Checked before the password is asked for.
            validate_user_name(&name).map_err(CliError::Usage)?;
            let password_hash = hash_password(&read_password(&name, password_stdin)?)?;
            Request::AddUser {
                name,
                password_hash,
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password_hash = hash_password(&read_password(&name, password_stdin)?)?;
            Request::SetPassword {
                name,
                password_hash,
            }
        }
        UserCommand::Remove { name } => Request::RemoveUser { name },
        UserCommand::List => Request::ListUsers,
        UserCommand::Devices { name } => Request::ListDevices { name },
        UserCommand::Revoke { name, device } => Request::Revoke { name, device },
        UserCommand::RestorePrevious { name } => Request::RestorePrevious { name },
    };
    print!("{}", show(&submit(config, request)?));
    Ok(())
}

/// Carry a request out: through the admin socket when a server answers on it, on the file
/// directly when no server holds it.
fn submit(config: &Config, request: Request) -> Result<Reply, CliError> {
    let socket = socket_path(&config.database);
    let why_not = match crate::admin::send(&socket, &request) {
        Ok(response) => return response.map_err(CliError::Refused),
        Err(ClientError::NoServer { source, .. }) => source,
        Err(e) => return Err(e.into()),
    };
    let store = Store::open(&config.database).map_err(|e| match e {
        StoreError::Locked { path } => CliError::Unreachable {
            database: path,
            socket,
            source: why_not,
        },
        e => e.into(),
    })?;
    let cx = Context {
        store: &store,
        users_file: config.users_file.as_deref(),
        now_ms: crate::clock::now_millis(),
    };
    Ok(execute(&cx, request)?.reply)
}

/// What the command prints for a reply.
fn show(reply: &Reply) -> String {
    match reply {
        Reply::UserAdded { name } => format!("user {name} added\n"),
        Reply::PasswordChanged {
            name,
            devices_logged_out,
        } => format!(
            "password of {name} changed; {devices_logged_out} device(s) must log in again\n"
        ),
        Reply::UserRemoved { name } => format!("user {name} removed\n"),
        Reply::Revoked { name, devices } => {
            format!("{devices} device(s) of {name} logged out; they must log in again\n")
        }
        Reply::BackupWritten {
            path,
            bytes,
            elapsed_ms,
            users,
            rows,
        } => format!(
            "backup written to {}: {users} user(s), {rows} rows, {:.1} MiB ({bytes} bytes) in \
             {:.1} s\n",
            path.display(),
            *bytes as f64 / (1024.0 * 1024.0),
            *elapsed_ms as f64 / 1000.0
        ),
        Reply::Restored { name } => format!(
            "the previous collection of {name} is current again; devices will ask for a full sync\n"
        ),
        Reply::Users { users } => {
            let mut out = format!(
                "{:<24} {:>8} {:>8}  {:<20}  {:<7}  clients\n",
                "user", "id", "devices", "last sync", "source"
            );
            for user in users {
                out.push_str(&format!(
                    "{:<24} {:>8} {:>8}  {:<20}  {:<7}  {}\n",
                    user.name,
                    user.id,
                    user.devices,
                    user.last_seen.map_or("-".to_string(), format_time),
                    user.source,
                    if user.client_versions.is_empty() {
                        "-".to_string()
                    } else {
                        user.client_versions.join(", ")
                    }
                ));
            }
            out
        }
        Reply::Devices { name, devices } => {
            if devices.is_empty() {
                return format!("{name} has no device logged in\n");
            }
            let mut out = format!(
                "{:<12}  {:<20}  {:<20}  client\n",
                "device", "first seen", "last seen"
            );
            for device in devices {
                out.push_str(&format!(
                    "{:<12}  {:<20}  {:<20}  {}\n",
                    device.id,
                    format_time(device.first_seen),
                    format_time(device.last_seen),
                    if device.client_version.is_empty() {
                        "-"
                    } else {
                        &device.client_version
                    }
                ));
            }
            out
        }
    }
}

/// The password from standard input (first line) or from a prompt on the terminal, asked
/// twice.
fn read_password(name: &str, from_stdin: bool) -> Result<String, CliError> {
    let password = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read the password from stdin: {e}")))?;
        text.lines().next().unwrap_or("").to_string()
    } else if std::io::stdin().is_terminal() {
        let prompt = |p: &str| {
            rpassword::prompt_password(p)
                .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))
        };
        let first = prompt(&format!("Password for {name}: "))?;
        if prompt("Again: ")? != first {
            return Err(CliError::Usage("the passwords differ".into()));
        }
        first
    } else {
        return Err(CliError::Usage(
            "no terminal to ask for a password: pass --password-stdin and pipe it in".into(),
        ));
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password must not be empty".into()));
    }
    Ok(password)
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`.
fn format_time(secs: i64) -> String {
    let t = crate::clock::civil(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn cli_shape() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "ankisyncd",
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--database",
            "/x",
        ])
        .unwrap();
        assert_eq!(cli.database, Some(PathBuf::from("/x")));
        let cli = Cli::try_parse_from(["ankisyncd", "check", "--repair"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Check { repair: true })));
        let cli = Cli::try_parse_from(["ankisyncd", "backup", "/b/x.redb"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Backup { out }) if out == std::path::Path::new("/b/x.redb"))
        );
        assert!(Cli::try_parse_from(["ankisyncd", "backup"]).is_err());
        assert!(Cli::try_parse_from(["ankisyncd", "--port", "99999"]).is_err());
        for name in ["import", "import-official"] {
            let cli = Cli::try_parse_from(["ankisyncd", name, "/base", "--force"]).unwrap();
            assert!(matches!(
                cli.command,
                Some(Command::Import {
                    force: true,
                    require_login: false,
                    ..
                })
            ));
        }
        for name in ["export", "export-official"] {
            let cli = Cli::try_parse_from(["ankisyncd", name, "/base"]).unwrap();
            assert!(matches!(
                cli.command,
                Some(Command::Export { force: false, .. })
            ));
        }
    }
}
