//! The command line: `ankisyncd [serve]` and `ankisyncd user add|list|passwd|remove`. Flags
//! here are the top layer of the configuration (see `config`). User commands work on the
//! database file directly; while a server holds the file they fail with a message that says
//! so.

use std::io::{IsTerminal, Read};
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::{hash_password, validate_user_name, PasswordError};
use crate::config::{process_env, Config, ConfigError, Overrides};
use crate::store::{RestoreOutcome, Store, StoreError, UserUpsert};

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
    /// List users and how many devices each has logged in.
    List,
    /// Set a new password; every device of the user must log in again.
    Passwd {
        name: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user and all their data.
    Remove { name: String },
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
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
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
    }
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
    let store = Store::open(&config.database)?;
    let now = crate::clock::now_millis();
    match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            validate_user_name(&name).map_err(CliError::Usage)?;
            if store.user(&name)?.is_some() {
                return Err(CliError::Usage(format!(
                    "user {name} already exists; use `ankisyncd user passwd {name}` to change the password"
                )));
            }
            let hash = hash_password(&read_password(&name, password_stdin)?)?;
            store.set_user(&name, &hash, now)?;
            println!("user {name} added");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            if store.user(&name)?.is_none() {
                return Err(CliError::Usage(format!("no user named {name}")));
            }
            let hash = hash_password(&read_password(&name, password_stdin)?)?;
            if let UserUpsert::PasswordChanged { revoked_keys, .. } =
                store.set_user(&name, &hash, now)?
            {
                println!("password of {name} changed; {revoked_keys} device(s) must log in again");
            }
        }
        UserCommand::Remove { name } => {
            if !store.remove_user(&name)? {
                return Err(CliError::Usage(format!("no user named {name}")));
            }
            println!("user {name} removed");
        }
        UserCommand::RestorePrevious { name } => match store.restore_previous(&name, now)? {
            RestoreOutcome::NoSuchUser => {
                return Err(CliError::Usage(format!("no user named {name}")))
            }
            RestoreOutcome::NothingToRestore => {
                return Err(CliError::Usage(format!(
                    "{name} has no previous collection to restore (keep_generations keeps one per full upload)"
                )))
            }
            RestoreOutcome::Restored { .. } => {
                println!("the previous collection of {name} is current again; devices will ask for a full sync");
            }
        },
        UserCommand::List => {
            println!("{:<24} {:>8} {:>8}  created", "user", "id", "devices");
            for user in store.list_users()? {
                println!(
                    "{:<24} {:>8} {:>8}  {}",
                    user.name,
                    user.id,
                    user.devices,
                    format_time(user.created)
                );
            }
        }
    }
    Ok(())
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

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`, without a date crate.
fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
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
        assert!(Cli::try_parse_from(["ankisyncd", "--port", "99999"]).is_err());
    }
}
