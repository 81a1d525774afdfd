//! Per-user quotas (`[quota]` in the config): the limits in bytes, the one rule that says
//! when a change breaks a limit, and the messages the user's Anki shows when a sync is
//! refused for it.
//!
//! Pure: no I/O. The store applies the rule inside the transaction that would store the
//! change (so a refused change leaves nothing behind), and full upload applies it while it
//! ingests.

use crate::config::QuotaConfig;

const MIB: u64 = 1024 * 1024;

/// The limits of every user, in bytes; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quota {
    /// The collection as stored: rows and objects (the store's `data_bytes`).
    pub collection: Option<u64>,
    /// Present media files, each counted at its size.
    pub media: Option<u64>,
}

impl Quota {
    pub(crate) fn from_config(config: &QuotaConfig) -> Self {
        let limit = |megs: u64| (megs > 0).then(|| megs.saturating_mul(MIB));
        Quota {
            collection: limit(config.collection_megs),
            media: limit(config.media_megs),
        }
    }
}

/// Whether going from `before` to `after` bytes breaks `limit`. Only growth past the limit
/// does: a user already over it (the limit was lowered) may still delete things.
pub fn breaks(limit: Option<u64>, before: u64, after: u64) -> bool {
    limit.is_some_and(|limit| after > limit && after > before)
}

/// A change refused by a quota, in numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: u64,
    /// What the user has stored now.
    pub current: u64,
    /// What the user would have after the change; `None` when the change was refused before
    /// all of it was counted (a full upload stops at the limit).
    pub after: Option<u64>,
}

impl Exceeded {
    /// The text of a refused collection sync or full upload.
    pub fn collection_message(&self) -> String {
        format!(
            "This sync was refused: the collection would need {} on this server, over your \
             quota of {} (the collection stored there now uses {}). Delete notes you no longer \
             need, run Tools > Check Database, then sync again.",
            self.needed(),
            megs(self.limit),
            megs(self.current)
        )
    }

    /// The text of a refused media upload.
    pub fn media_message(&self) -> String {
        format!(
            "Media sync refused: these files would need {} on this server, over your media \
             quota of {} (your media there now uses {}). Delete unused files with Tools > \
             Check Media, then sync again.",
            self.needed(),
            megs(self.limit),
            megs(self.current)
        )
    }

    fn needed(&self) -> String {
        match self.after {
            Some(after) => megs(after),
            None => format!("more than {}", megs(self.limit)),
        }
    }
}

/// Bytes as the MiB figure the settings use, e.g. `12.3 MB`.
fn megs(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / MIB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_no_limit() {
        let quota = Quota::from_config(&QuotaConfig {
            collection_megs: 0,
            media_megs: 3,
        });
        assert_eq!(quota.collection, None);
        assert_eq!(quota.media, Some(3 * MIB));
    }

    #[test]
    fn only_growth_past_the_limit_breaks_it() {
        assert!(!breaks(None, 0, u64::MAX));
        assert!(!breaks(Some(100), 50, 100), "reaching the limit is allowed");
        assert!(breaks(Some(100), 50, 101));
        assert!(
            !breaks(Some(100), 200, 150),
            "shrinking while over is allowed"
        );
        assert!(breaks(Some(100), 200, 201));
    }

    #[test]
    fn messages_name_the_quota_and_the_usage() {
        let exceeded = Exceeded {
            limit: 2 * MIB,
            current: MIB / 2,
            after: Some(3 * MIB),
        };
        let text = exceeded.media_message();
        assert!(text.contains("3.0 MB"), "{text}");
        assert!(text.contains("quota of 2.0 MB"), "{text}");
        assert!(text.contains("now uses 0.5 MB"), "{text}");
        let text = Exceeded {
            after: None,
            ..exceeded
        }
        .collection_message();
        assert!(text.contains("more than 2.0 MB"), "{text}");
    }
}
