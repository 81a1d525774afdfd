//! Server configuration: the keys, their defaults, and the order in which sources override
//! each other. This is a contract (design.md "Configuration and command line"): tools and
//! tests set these names, so a key is renamed only when an issue says so.
//!
//! Precedence, lowest first: built-in defaults < config file (`--config FILE`, else
//! `./ankisyncd.toml` when present) < the official server's variables (`SYNC_HOST`,
//! `SYNC_PORT`, `SYNC_BASE`, `MAX_SYNC_PAYLOAD_MEGS`) < `ANKISYNCD_*` variables <
//! command-line flags. An unknown key or a bad value is an error that names the key; this
//! module never guesses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Name of the config file picked up from the working directory when `--config` is absent.
pub const DEFAULT_CONFIG_FILE: &str = "ankisyncd.toml";

/// Every setting of the server. Field names are the config-file keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub host: IpAddr,
    /// TCP port to listen on.
    pub port: u16,
    /// The one database file holding users, collections and media.
    pub database: PathBuf,
    /// tracing filter: a level (`info`) or directives (`info,ankisyncd=debug`).
    pub log_level: String,
    /// Largest request body accepted from the wire, in MiB; decompressed bodies may be up to
    /// three times this (as in the official server).
    pub max_payload_megs: u64,
    /// Seconds without a request after which a user's in-memory state (actor, sync session in
    /// progress) is dropped.
    pub user_idle_secs: u64,
    /// Failed logins allowed per client address and per user name within
    /// `login_window_secs` before further attempts are refused for the rest of the window.
    pub login_failures: u32,
    pub login_window_secs: u64,
    /// Former collections kept per user after a full upload replaces them, so a mistaken
    /// upload can be undone with `ankisyncd user restore-previous`.
    pub keep_generations: usize,
    /// Rows of a normal sync in progress kept in memory before the rest waits in the
    /// database: bounds the server's memory whatever the size of a sync.
    pub stage_memory_rows: usize,
    /// Database page cache in MiB: more speeds up reads of big collections, less suits small
    /// boards. Memory beyond it is transient.
    pub cache_megs: u64,
    /// A file of `name:PHC-hash` lines (for secrets managers): its users are created,
    /// updated and removed to match it at startup and on SIGHUP. Off when unset.
    pub users_file: Option<PathBuf>,
    /// Scheduled backups (`[backup]`).
    pub backup: BackupConfig,
    /// Per-user limits on stored data (`[quota]`); 0 means no limit.
    pub quota: QuotaConfig,
    /// URL path the server answers under when a reverse proxy forwards a sub-path (e.g.
    /// `/anki`); empty for none. Normalized by `load`: a leading slash, no trailing one.
    /// Requests without the prefix are still served, since a client given
    /// `https://host/anki` (no trailing slash) drops the last path segment.
    pub path_prefix: String,
    /// Serve Prometheus metrics at `/metrics`.
    pub metrics: bool,
    /// Also one series per user (their last sync's age); user names then appear in the
    /// metrics, so it is off unless asked for.
    pub metrics_per_user: bool,
    /// Built-in HTTPS; off while both paths are empty.
    pub tls: TlsFiles,
    /// Threads serving connections; 0 means one per CPU core. It also bounds the threads
    /// that run database work and stream transfers ([`Config::blocking_threads`]), which is
    /// what bounds the server's memory under many simultaneous syncs.
    pub workers: usize,
}

/// The `[tls]` table: PEM files of the certificate chain (leaf first) and its private key.
/// Both are read again on SIGHUP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

/// The `[quota]` section: per-user limits in MiB, 0 (the default) for none. A sync that would
/// take a user over a limit is refused whole (see `crate::quota`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// The user's collection: notes, cards, review log, notetypes, decks and config as stored.
    pub collection_megs: u64,
    /// The user's media files (each file counted once per user).
    pub media_megs: u64,
}

/// Scheduled backups of a running server: off while `dir` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Folder the backups are written to; empty: no scheduled backups.
    pub dir: PathBuf,
    /// Time between two backups.
    pub interval: Interval,
    /// Backups kept in `dir`; older ones (by name) are deleted after each new one.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: PathBuf::new(),
            interval: Interval(Duration::from_secs(24 * 3600)),
            keep: 7,
        }
    }
}

impl BackupConfig {
    /// The folder, when scheduled backups are on.
    pub fn enabled_dir(&self) -> Option<&Path> {
        (!self.dir.as_os_str().is_empty()).then_some(self.dir.as_path())
    }
}

/// A length of time written as a whole number and a unit: `90s`, `30m`, `6h`, `1d` (a bare
/// number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl Interval {
    fn parse(text: &str) -> Result<Interval, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| {
            format!("{text:?} is not a number with a unit s, m, h or d (e.g. \"6h\")")
        })?;
        let seconds = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in {text:?}: use s, m, h or d"
                ))
            }
        };
        number
            .checked_mul(seconds)
            .filter(|s| *s > 0)
            .map(|s| Interval(Duration::from_secs(s)))
            .ok_or_else(|| format!("{text:?} must be at least one second"))
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Seconds(u64),
            Text(String),
        }
        let text = match Given::deserialize(deserializer)? {
            Given::Seconds(secs) => secs.to_string(),
            Given::Text(text) => text,
        };
        Interval::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 27701,
            database: PathBuf::from("./ankisyncd.redb"),
            log_level: "info".to_string(),
            max_payload_megs: 1024,
            user_idle_secs: 600,
            login_failures: 10,
            login_window_secs: 300,
            keep_generations: 1,
            stage_memory_rows: 20_000,
            cache_megs: 16,
            users_file: None,
            backup: BackupConfig::default(),
            quota: QuotaConfig::default(),
            path_prefix: String::new(),
            metrics: true,
            metrics_per_user: false,
            tls: TlsFiles::default(),
            workers: 0,
        }
    }
}

/// Threads for database work and transfers per worker thread. Such a thread may wait on a
/// slow client (a transfer streams through it), so there are more of them than cores;
/// beyond the cap, work waits its turn instead of taking more memory.
const BLOCKING_THREADS_PER_WORKER: usize = 16;

/// The most `workers` accepted: far beyond any machine's cores, low enough that the
/// blocking-thread cap derived from it stays sane.
const MAX_WORKERS: usize = 256;

impl Config {
    /// Threads serving connections: `workers`, or one per CPU core when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The cap on threads running database work, password hashing and streamed transfers.
    pub fn blocking_threads(&self) -> usize {
        self.worker_threads()
            .min(MAX_WORKERS)
            .saturating_mul(BLOCKING_THREADS_PER_WORKER)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        if self.max_payload_megs == 0 {
            return Err(bad("max_payload_megs", "must be at least 1"));
        }
        if self.max_payload_megs > 64 * 1024 {
            return Err(bad("max_payload_megs", "must be at most 65536 (64 GiB)"));
        }
        if self.user_idle_secs == 0 {
            return Err(bad("user_idle_secs", "must be at least 1"));
        }
        if self.cache_megs == 0 || self.cache_megs > 64 * 1024 {
            return Err(bad("cache_megs", "must be between 1 and 65536"));
        }
        if self.stage_memory_rows < 100 {
            return Err(bad("stage_memory_rows", "must be at least 100"));
        }
        if self.workers > MAX_WORKERS {
            return Err(bad(
                "workers",
                &format!("must be at most {MAX_WORKERS} (0 means one per CPU core)"),
            ));
        }
        if self.login_window_secs == 0 {
            return Err(bad("login_window_secs", "must be at least 1"));
        }
        if self.database.as_os_str().is_empty() {
            return Err(bad("database", "must not be empty"));
        }
        if self
            .users_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err(bad(
                "users_file",
                "must not be empty (leave it unset instead)",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(bad("log_level", &e.to_string()));
        }
        if self.backup.keep == 0 {
            return Err(bad("backup.keep", "must be at least 1"));
        }
        // Bytes are counted in u64; beyond this the multiplication by 1 MiB would overflow.
        const MAX_QUOTA_MEGS: u64 = u64::MAX >> 20;
        if self.quota.collection_megs > MAX_QUOTA_MEGS {
            return Err(bad("quota.collection_megs", "is too large"));
        }
        if self.quota.media_megs > MAX_QUOTA_MEGS {
            return Err(bad("quota.media_megs", "is too large"));
        }
        let (cert, key) = (&self.tls.cert, &self.tls.key);
        if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
            let missing = if cert.as_os_str().is_empty() {
                "tls.cert"
            } else {
                "tls.key"
            };
            return Err(bad(missing, "TLS needs both tls.cert and tls.key"));
        }
        Ok(())
    }
}

/// `/anki/`, `anki`, `//anki` → `/anki`; `` and `/` → ``. Segments are plain URL path
/// characters, so the prefix can be matched against a request path as it arrives.
fn normalize_path_prefix(prefix: &str) -> Result<String, ConfigError> {
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    };
    if let Some(bad) = segments
        .iter()
        .find(|s| !plain(s) || **s == "." || **s == "..")
    {
        return Err(ConfigError::Invalid {
            key: "path_prefix".to_string(),
            reason: format!(
                "`{bad}`: use letters, digits and - . _ ~ between slashes, e.g. \"/anki\""
            ),
        });
    }
    Ok(segments.iter().map(|s| format!("/{s}")).collect())
}

/// Values given on the command line; `None` means "not given", so lower sources stay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_payload_megs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: not found")]
    MissingFile { path: PathBuf },
    #[error("configuration: {0}")]
    Figment(String),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl Config {
    /// Load from every source in precedence order. `config_file` is `--config`; `env` is the
    /// process environment (passed in so tests need not mutate the real one).
    pub fn load(
        config_file: Option<&Path>,
        env: &BTreeMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match config_file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::MissingFile {
                    path: path.to_path_buf(),
                })
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        let mut config = figment
            .merge(Serialized::defaults(official_fallbacks(env)))
            .merge(ankisyncd_env(env))
            .merge(Serialized::defaults(overrides))
            .extract::<Config>()
            .map_err(|e| ConfigError::Figment(describe(e)))?;
        config.path_prefix = normalize_path_prefix(&config.path_prefix)?;
        config.validate()?;
        Ok(config)
    }
}

/// The official server's variable names, for drop-in replacement. `SYNC_BASE` names a folder,
/// so the database goes inside it.
fn official_fallbacks(env: &BTreeMap<String, String>) -> Dict {
    let mut dict = Dict::new();
    let mut put = |key: &str, value: &str| {
        dict.insert(key.to_string(), env_value(value));
    };
    if let Some(v) = env.get("SYNC_HOST") {
        put("host", v);
    }
    if let Some(v) = env.get("SYNC_PORT") {
        put("port", v);
    }
    if let Some(v) = env.get("SYNC_BASE") {
        let db = Path::new(v).join("ankisyncd.redb");
        put("database", &db.to_string_lossy());
    }
    if let Some(v) = env.get("MAX_SYNC_PAYLOAD_MEGS") {
        put("max_payload_megs", v);
    }
    dict
}

/// Config-file sections (`[name]` tables) whose keys the environment sets as
/// `ANKISYNCD_<SECTION>_<KEY>`, e.g. `ANKISYNCD_BACKUP_DIR` for `backup.dir`.
const SECTIONS: &[&str] = &["backup", "quota", "tls"];

/// `ANKISYNCD_*` variables, read from the given map rather than the process environment.
/// `ANKISYNCD_TLS_CERT` sets `cert` in the `[tls]` table.
fn ankisyncd_env(env: &BTreeMap<String, String>) -> Serialized<Dict> {
    let mut dict = Dict::new();
    for (name, value) in env {
        let Some(key) = name.strip_prefix("ANKISYNCD_") else {
            continue;
        };
        // Not settings: the path of the config file is a flag, and users come from their own
        // variables.
        if key.is_empty() {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let section = SECTIONS.iter().find_map(|section| {
            key.strip_prefix(section)
                .and_then(|rest| rest.strip_prefix('_'))
                .filter(|rest| !rest.is_empty())
                .map(|rest| (*section, rest.to_string()))
        });
        match section {
            Some((section, inner)) => {
                let entry = dict
                    .entry(section.to_string())
                    .or_insert_with(|| Value::from(Dict::new()));
                if let Value::Dict(_, table) = entry {
                    table.insert(inner, env_value(value));
                }
            }
            None => {
                dict.insert(key, env_value(value));
            }
        }
    }
    Serialized::defaults(dict)
}

/// Environment values are text; read numbers and booleans the way figment's own `Env`
/// provider does, so `ANKISYNCD_PORT=8080` is a number and `ANKISYNCD_PORT=x` an error
/// naming `port`.
fn env_value(text: &str) -> Value {
    match text.parse::<Value>() {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// figment's messages name the key but also its internal profile; keep what a user needs.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match &e.metadata {
                Some(meta) => format!(" (from {})", meta.name),
                None => String::new(),
            };
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("key `{key}`: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The process environment as a map, for `Config::load`.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// An environment map from literal pairs, for tests of everything that reads variables.
#[cfg(test)]
pub(crate) fn env_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&Path>,
        pairs: &[(&str, &str)],
        o: &Overrides,
    ) -> Result<Config, ConfigError> {
        Config::load(file, &env_map(pairs), o)
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.port, 27701);
        assert_eq!(c.database, PathBuf::from("./ankisyncd.redb"));
        assert_eq!(c.max_payload_megs, 1024);
    }

    #[test]
    fn each_source_overrides_the_one_below() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "port = 1001\nhost = \"0.0.0.0\"\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let f = Some(file.as_path());
        let none = Overrides::default();

        assert_eq!(load(f, &[], &none).unwrap().port, 1001);
        assert_eq!(load(f, &[("SYNC_PORT", "1002")], &none).unwrap().port, 1002);
        let both = [("SYNC_PORT", "1002"), ("ANKISYNCD_PORT", "1003")];
        assert_eq!(load(f, &both, &none).unwrap().port, 1003);
        let flag = Overrides {
            port: Some(1004),
            ..Default::default()
        };
        assert_eq!(load(f, &both, &flag).unwrap().port, 1004);
        // Keys not overridden keep the file's value.
        let c = load(f, &both, &flag).unwrap();
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn official_server_variables_are_fallbacks() {
        let c = load(
            None,
            &[
                ("SYNC_HOST", "0.0.0.0"),
                ("SYNC_BASE", "/srv/anki"),
                ("MAX_SYNC_PAYLOAD_MEGS", "100"),
            ],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.database, PathBuf::from("/srv/anki/ankisyncd.redb"));
        assert_eq!(c.max_payload_megs, 100);
        let c = load(
            None,
            &[("SYNC_BASE", "/a"), ("ANKISYNCD_DATABASE", "/b/x.redb")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.database, PathBuf::from("/b/x.redb"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load(None, &[("ANKISYNCD_PROT", "1")], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "databse = \"x\"\n").unwrap();
        let err = load(Some(&file), &[], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("databse"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        for (var, key) in [
            ("ANKISYNCD_PORT", "port"),
            ("SYNC_PORT", "port"),
            ("ANKISYNCD_HOST", "host"),
            ("ANKISYNCD_MAX_PAYLOAD_MEGS", "max_payload_megs"),
        ] {
            let err = load(None, &[(var, "not-a-value")], &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{var}: {err}");
        }
        let err = load(None, &[("ANKISYNCD_PORT", "70000")], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        let err = load(
            None,
            &[("ANKISYNCD_MAX_PAYLOAD_MEGS", "0")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_payload_megs"), "{err}");
        let err = load(
            None,
            &[("ANKISYNCD_LOG_LEVEL", "info,=[")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("log_level"), "{err}");
    }

    #[test]
    fn workers_set_both_thread_pools() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let c = load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.worker_threads(), cores);
        assert_eq!(c.blocking_threads(), cores * BLOCKING_THREADS_PER_WORKER);

        let c = load(None, &[("ANKISYNCD_WORKERS", "2")], &Overrides::default()).unwrap();
        assert_eq!(c.worker_threads(), 2);
        assert_eq!(c.blocking_threads(), 32);

        let err = load(None, &[("ANKISYNCD_WORKERS", "257")], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("workers"), "{err}");
        let err = load(None, &[("ANKISYNCD_WORKERS", "-1")], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("workers"), "{err}");
    }

    #[test]
    fn a_missing_or_malformed_config_file_is_an_error() {
        let err = load(
            Some(Path::new("/nonexistent/x.toml")),
            &[],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "port = [").unwrap();
        assert!(load(Some(&file), &[], &Overrides::default()).is_err());
    }

    #[test]
    fn scheduled_backups_are_off_by_default_and_set_per_key() {
        let c = load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.backup.enabled_dir(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[backup]\ndir = \"/srv/backups\"\ninterval = \"6h\"\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            &[("ANKISYNCD_BACKUP_KEEP", "3")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.backup.enabled_dir(), Some(Path::new("/srv/backups")));
        assert_eq!(c.backup.interval, Interval(Duration::from_secs(6 * 3600)));
        assert_eq!(c.backup.keep, 3);
        for (text, secs) in [("90s", 90), ("30m", 1800), ("1d", 86_400), ("45", 45)] {
            let c = load(
                None,
                &[("ANKISYNCD_BACKUP_INTERVAL", text)],
                &Overrides::default(),
            )
            .unwrap();
            assert_eq!(c.backup.interval.0.as_secs(), secs, "{text}");
            let shown = c.backup.interval.to_string();
            assert_eq!(Interval::parse(&shown), Ok(c.backup.interval), "{shown}");
        }
        for (var, value, key) in [
            ("ANKISYNCD_BACKUP_INTERVAL", "6 hours", "interval"),
            ("ANKISYNCD_BACKUP_INTERVAL", "0s", "interval"),
            ("ANKISYNCD_BACKUP_KEEP", "0", "backup.keep"),
            ("ANKISYNCD_BACKUP_KEPT", "1", "kept"),
        ] {
            let err = load(None, &[(var, value)], &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{var}={value}: {err}");
        }
    }

    #[test]
    fn quota_comes_from_its_section_or_the_environment() {
        let c = load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.quota, QuotaConfig::default(), "off by default");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[quota]\ncollection_megs = 200\n").unwrap();
        let c = load(
            Some(&file),
            &[("ANKISYNCD_QUOTA_MEDIA_MEGS", "500")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.quota,
            QuotaConfig {
                collection_megs: 200,
                media_megs: 500
            }
        );
        let err = load(
            None,
            &[("ANKISYNCD_QUOTA_MEDIA_MGES", "5")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("media_mges"), "{err}");
        std::fs::write(&file, "[quota]\nmedia_megs = -1\n").unwrap();
        let err = load(Some(&file), &[], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("media_megs"), "{err}");
    }

    #[test]
    fn tls_comes_from_its_table_or_the_environment_and_needs_both_files() {
        assert!(!Config::default().tls.enabled());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n").unwrap();
        let c = load(Some(&file), &[], &Overrides::default()).unwrap();
        assert!(c.tls.enabled());
        assert_eq!(c.tls.cert, PathBuf::from("/c.pem"));
        let c = load(
            Some(&file),
            &[("ANKISYNCD_TLS_CERT", "/other.pem")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (c.tls.cert, c.tls.key),
            (PathBuf::from("/other.pem"), PathBuf::from("/k.pem"))
        );
        let err = load(
            None,
            &[("ANKISYNCD_TLS_CERT", "/c.pem")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("tls.key"), "{err}");
        let err = load(
            None,
            &[("ANKISYNCD_TLS_CRT", "/c.pem")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("crt"), "{err}");
    }

    #[test]
    fn path_prefix_is_normalized_or_refused() {
        for (given, normal) in [
            ("", ""),
            ("/", ""),
            ("/anki", "/anki"),
            ("anki/", "/anki"),
            ("//a//b.c/", "/a/b.c"),
        ] {
            let c = load(
                None,
                &[("ANKISYNCD_PATH_PREFIX", given)],
                &Overrides::default(),
            )
            .unwrap();
            assert_eq!(c.path_prefix, normal, "{given}");
        }
        for bad in ["/a b", "/a?x", "/../x", "/%2e"] {
            let err = load(
                None,
                &[("ANKISYNCD_PATH_PREFIX", bad)],
                &Overrides::default(),
            )
            .unwrap_err();
            assert!(err.to_string().contains("path_prefix"), "{bad}: {err}");
        }
    }

    #[test]
    fn metrics_switches() {
        let c = load(
            None,
            &[("ANKISYNCD_METRICS", "false")],
            &Overrides::default(),
        )
        .unwrap();
        assert!(!c.metrics && !c.metrics_per_user);
        let c = load(
            None,
            &[("ANKISYNCD_METRICS_PER_USER", "true")],
            &Overrides::default(),
        )
        .unwrap();
        assert!(c.metrics && c.metrics_per_user);
    }

    #[test]
    fn the_example_config_lists_every_key_with_its_default() {
        let text = include_str!("../config.example.toml");
        let example: Config = toml_like(text);
        assert_eq!(example, Config::default());
        // Keys that are off by default appear commented out, with an example value.
        let listed = |key: &str| {
            text.lines().any(|line| {
                let line = line.trim_start_matches("# ");
                line.starts_with(&format!("{key} ="))
            })
        };
        let keys = serde_json::to_value(Config::default()).unwrap();
        for (key, value) in keys.as_object().unwrap() {
            match value.as_object() {
                // A section: its header, then each of its keys.
                Some(section) => {
                    assert!(
                        text.lines().any(|line| line == format!("[{key}]")),
                        "config.example.toml has no [{key}] section"
                    );
                    for inner in section.keys() {
                        assert!(
                            listed(inner),
                            "config.example.toml does not list `{key}.{inner}`"
                        );
                    }
                }
                None => assert!(listed(key), "config.example.toml does not list `{key}`"),
            }
        }
    }

    #[test]
    fn the_users_file_is_optional() {
        let c = load(
            None,
            &[("ANKISYNCD_USERS_FILE", "/run/secrets/users")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.users_file, Some(PathBuf::from("/run/secrets/users")));
        let err = load(None, &[("ANKISYNCD_USERS_FILE", "")], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("users_file"), "{err}");
    }

    /// Parse the example file through figment, so the test fails if it names an unknown key
    /// or a default differs.
    fn toml_like(text: &str) -> Config {
        Figment::from(Toml::string(text)).extract().unwrap()
    }
}
