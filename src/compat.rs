//! Friendly compatibility: which clients log in, and a warning when one does something this
//! server was not built for (a newer Anki, a newer sync protocol, a request field we do not
//! know). Such a client is still served as far as the protocol allows; the warning exists
//! so that an operator learns why a sync might misbehave. Each distinct warning is written
//! ONCE per process, never per request.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::protocol::MAX_SYNC_VERSION;

/// The newest Anki release this server was tested with (the end-to-end tests' client).
pub(crate) const NEWEST_KNOWN_CLIENT: [u32; 3] = [26, 9, 3];

/// Distinct warnings remembered; past this, further new ones are dropped rather than let a
/// hostile client grow the set (one last line says so).
const MAX_WARNINGS: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct Compat {
    warned: Mutex<HashSet<String>>,
}

impl Compat {
    /// A device logged in: say which client and protocol it speaks.
    pub(crate) fn login(&self, user: &str, client: &str, sync_version: u8) {
        tracing::info!(user, client, sync_version, "login");
        self.client_version(client);
    }

    /// Warn (once per version) about a client newer than any this server was tested with.
    pub(crate) fn client_version(&self, client: &str) {
        let Some(version) = anki_version(client) else {
            return;
        };
        if version.as_slice() > NEWEST_KNOWN_CLIENT.as_slice() {
            let shown = version
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            let [a, b, c] = NEWEST_KNOWN_CLIENT;
            self.warn_once(format!("client {shown}"), || {
                tracing::warn!(
                    client,
                    "Anki {shown} is newer than the newest client this server was tested with ({a}.{b}.{c}); \
                     syncs should work, but if one fails, look for an ankisyncd update"
                )
            });
        }
    }

    /// A client asked for a sync protocol version this server does not speak.
    pub(crate) fn sync_version(&self, version: u8, client: &str) {
        if version > MAX_SYNC_VERSION {
            self.warn_once(format!("sync version {version}"), || {
                tracing::warn!(
                    client,
                    "a client speaks sync protocol version {version}, newer than this server's \
                     {MAX_SYNC_VERSION}: it was refused; look for an ankisyncd update"
                )
            });
        }
    }

    /// A request carried a field this server does not read.
    pub(crate) fn unknown_field(&self, method: &str, field: &str, client: &str) {
        self.warn_once(format!("field {method} {field}"), || {
            tracing::warn!(
                client,
                "{method}: the client sent a field this server does not know, `{field}`; \
                 it was ignored (a newer client?)"
            )
        });
    }

    fn warn_once(&self, key: String, warn: impl FnOnce()) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.len() > MAX_WARNINGS || warned.contains(&key) {
            return;
        }
        if warned.len() == MAX_WARNINGS {
            tracing::warn!(
                "{MAX_WARNINGS} distinct compatibility warnings; no more will be logged"
            );
            warned.insert(String::new());
            return;
        }
        warned.insert(key);
        warn();
    }
}

/// The Anki release in a client version string: `26.9.3,abcdef,linux` (the `anki-sync`
/// header) or `anki,26.9.3 (abcdef),linux` (`meta`, `msync/begin`). Other products
/// (`ankidroid,2.15,...`, `ankidesktop,2.1.49,...`) number their releases their own way and
/// give `None`, as does anything unparsable.
fn anki_version(client: &str) -> Option<Vec<u32>> {
    let client = client.strip_prefix("anki,").unwrap_or(client);
    let version = client.split([',', ' ']).next()?;
    let parts = version
        .split('.')
        .map(|p| p.parse::<u32>().ok())
        .collect::<Option<Vec<_>>>()?;
    (1..=4).contains(&parts.len()).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_both_spellings() {
        assert_eq!(anki_version("26.9.3,abcdef,linux"), Some(vec![26, 9, 3]));
        assert_eq!(anki_version("anki,25.02 (abcd1234),mac"), Some(vec![25, 2]));
        assert_eq!(anki_version("anki,2.1.66 (x),win:10"), Some(vec![2, 1, 66]));
        assert_eq!(anki_version("ankidroid,2.15.6,Android"), None);
        assert_eq!(anki_version("ankidesktop,2.1.49,lin::"), None);
        assert_eq!(anki_version(""), None);
        assert_eq!(anki_version("x.y"), None);
    }

    #[test]
    fn each_warning_once_and_the_set_stays_bounded() {
        let compat = Compat::default();
        let count = || compat.warned.lock().unwrap().len();
        compat.client_version("26.9.3,x,linux");
        compat.client_version("anki,26.08.1 (x),linux");
        assert_eq!(count(), 0);
        compat.client_version("27.1,x,linux");
        compat.client_version("anki,27.1 (y),mac");
        assert_eq!(count(), 1);
        compat.sync_version(11, "c");
        compat.sync_version(12, "c");
        compat.sync_version(12, "c");
        assert_eq!(count(), 2);
        for i in 0..1000 {
            compat.unknown_field("sync/meta", &format!("f{i}"), "c");
        }
        assert_eq!(count(), MAX_WARNINGS + 1);
    }
}
