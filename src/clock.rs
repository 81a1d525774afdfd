//! Wall-clock time in the units the protocol uses. One place, so tests and handlers agree.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn now_secs() -> i64 {
    now_millis() / 1000
}
