//! What `/metrics` reports, in the Prometheus text format: the counters and histograms the
//! HTTP layer updates as requests end, and the gauges read when a scrape comes in (actors,
//! sessions, users, per-user last-sync age). Every label takes values from a fixed set
//! (method names, status codes, directions), except `user`, which is off unless
//! `metrics_per_user` is set and then has one value per user.
//!
//! Recording is a few atomic additions per request, so it runs even when `metrics` is off;
//! the switch only hides the page.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Media type of the page `render` writes (OpenMetrics text, which Prometheus reads).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

/// What a sync-duration observation measured.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the values as they appear in the metrics
pub(crate) enum SyncKind {
    /// A normal sync, `start` to `finish`.
    normal,
    full_upload,
    full_download,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: SyncKind,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Direction {
    upload,
    download,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SupervisorLabel {
    supervisor: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UserLabel {
    user: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request and sync durations: 5 ms to about 20 min, each bucket twice the one before.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

/// Database commits: 50 µs to about 3 s.
fn commit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// What a scrape reads from the rest of the server.
pub(crate) struct Readings {
    /// Live user actors per supervisor ("collection", "media").
    pub actors: Vec<(&'static str, usize)>,
    pub sessions: usize,
    pub users: usize,
    /// Unix seconds now, for the per-user ages.
    pub now_secs: i64,
    /// Names of the users that exist now: series of removed users are dropped.
    pub user_names: Vec<String>,
}

pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<MethodLabel>,
    sync_seconds: Histograms<KindLabel>,
    received_bytes: Family<MethodLabel, Counter>,
    sent_bytes: Family<MethodLabel, Counter>,
    full_syncs: Family<DirectionLabel, Counter>,
    tls_handshakes: Family<VersionLabel, Counter>,
    commit_seconds: Histogram,
    actors: Family<SupervisorLabel, Gauge>,
    sessions: Gauge,
    users: Gauge,
    /// `None` unless `metrics_per_user`.
    per_user: Option<PerUser>,
    /// One scrape at a time: the gauges are set, then encoded.
    scrape: Mutex<()>,
}

struct PerUser {
    age: Family<UserLabel, Gauge>,
    /// User name → Unix seconds of their last sync (since this process started).
    last_sync: Mutex<HashMap<String, i64>>,
}

impl Metrics {
    pub(crate) fn new(per_user: bool) -> Metrics {
        let mut registry = Registry::with_prefix("ankisyncd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by protocol method (or page) and status",
            requests.clone(),
        );
        let request_seconds = Histograms::<MethodLabel>::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its answer (a download's stream excluded)",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let sync_seconds = Histograms::<KindLabel>::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "sync_duration",
            "Completed syncs: a normal sync from start to finish, a full upload or download",
            Unit::Seconds,
            sync_seconds.clone(),
        );
        let received_bytes = Family::<MethodLabel, Counter>::default();
        registry.register_with_unit(
            "received",
            "Request body bytes as received (compressed), by method",
            Unit::Bytes,
            received_bytes.clone(),
        );
        let sent_bytes = Family::<MethodLabel, Counter>::default();
        registry.register_with_unit(
            "sent",
            "Response body bytes as sent (compressed), by method",
            Unit::Bytes,
            sent_bytes.clone(),
        );
        let full_syncs = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "full_syncs",
            "Full syncs completed, by direction",
            full_syncs.clone(),
        );
        let tls_handshakes = Family::<VersionLabel, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed, by protocol version",
            tls_handshakes.clone(),
        );
        let commit_seconds = commit_histogram();
        registry.register_with_unit(
            "db_commit_duration",
            "Database write-transaction commits",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        let actors = Family::<SupervisorLabel, Gauge>::default();
        registry.register(
            "actors",
            "Live user actors, by supervisor (collection, media)",
            actors.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "sync_sessions",
            "Normal syncs in progress (started, not yet finished or discarded)",
            sessions.clone(),
        );
        let users = Gauge::default();
        registry.register("users", "Users", users.clone());
        let per_user = per_user.then(|| {
            let age = Family::<UserLabel, Gauge>::default();
            registry.register_with_unit(
                "user_last_sync_age",
                "Time since each user's last sync (users who synced since the server started)",
                Unit::Seconds,
                age.clone(),
            );
            PerUser {
                age,
                last_sync: Mutex::new(HashMap::new()),
            }
        });
        Metrics {
            registry,
            requests,
            request_seconds,
            sync_seconds,
            received_bytes,
            sent_bytes,
            full_syncs,
            tls_handshakes,
            commit_seconds,
            actors,
            sessions,
            users,
            per_user,
            scrape: Mutex::new(()),
        }
    }

    /// A request has been answered (its body may still be streaming).
    pub(crate) fn request(&self, method: &str, status: u16, took: Duration, received: u64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                status,
            })
            .inc();
        let method = MethodLabel {
            method: method.to_string(),
        };
        self.request_seconds
            .get_or_create(&method)
            .observe(took.as_secs_f64());
        self.received_bytes.get_or_create(&method).inc_by(received);
    }

    /// The counter of response bytes sent for `method`, to add to as a body streams out.
    pub(crate) fn sent(&self, method: &str) -> Counter {
        self.sent_bytes.get_or_create_owned(&MethodLabel {
            method: method.to_string(),
        })
    }

    /// A sync completed.
    pub(crate) fn sync(&self, kind: SyncKind, took: Duration) {
        self.sync_seconds
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
        let direction = match kind {
            SyncKind::normal => None,
            SyncKind::full_upload => Some(Direction::upload),
            SyncKind::full_download => Some(Direction::download),
        };
        if let Some(direction) = direction {
            self.full_syncs
                .get_or_create(&DirectionLabel { direction })
                .inc();
        }
    }

    /// `user` synced (every sync of a client begins with `meta`, also one that finds
    /// nothing to do).
    pub(crate) fn synced(&self, user: &str, now_secs: i64) {
        if let Some(per_user) = &self.per_user {
            lock(&per_user.last_sync).insert(user.to_string(), now_secs);
        }
    }

    pub(crate) fn tls_handshake(&self, version: &'static str) {
        self.tls_handshakes
            .get_or_create(&VersionLabel { version })
            .inc();
    }

    pub(crate) fn commit(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// The page: every series, with the gauges set from `readings`.
    pub(crate) fn render(&self, readings: &Readings) -> String {
        let _one_scrape = lock(&self.scrape);
        for (supervisor, count) in &readings.actors {
            self.actors
                .get_or_create(&SupervisorLabel { supervisor })
                .set(gauge(*count));
        }
        self.sessions.set(gauge(readings.sessions));
        self.users.set(gauge(readings.users));
        if let Some(per_user) = &self.per_user {
            let mut last = lock(&per_user.last_sync);
            last.retain(|name, _| readings.user_names.contains(name));
            per_user.age.clear();
            for (name, at) in last.iter() {
                per_user
                    .age
                    .get_or_create(&UserLabel { user: name.clone() })
                    .set(readings.now_secs.saturating_sub(*at).max(0));
            }
        }
        let mut page = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut page, &self.registry);
        page
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The maps behind these locks stay consistent whatever a panicking holder did.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(users: &[&str]) -> Readings {
        Readings {
            actors: vec![("collection", 2), ("media", 1)],
            sessions: 1,
            users: users.len(),
            now_secs: 1_000,
            user_names: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn the_page_carries_what_was_recorded() {
        let m = Metrics::new(false);
        m.request("sync/meta", 200, Duration::from_millis(3), 120);
        m.request("sync/meta", 200, Duration::from_millis(3), 80);
        m.request("sync/meta", 403, Duration::from_millis(1), 50);
        m.sent("sync/meta").inc_by(999);
        m.sync(SyncKind::full_upload, Duration::from_secs(2));
        m.sync(SyncKind::normal, Duration::from_secs(1));
        m.commit(Duration::from_micros(300));
        m.tls_handshake("TLSv1.2");
        let page = m.render(&readings(&["me"]));
        for line in [
            "ankisyncd_requests_total{method=\"sync/meta\",status=\"200\"} 2",
            "ankisyncd_requests_total{method=\"sync/meta\",status=\"403\"} 1",
            "ankisyncd_received_bytes_total{method=\"sync/meta\"} 250",
            "ankisyncd_sent_bytes_total{method=\"sync/meta\"} 999",
            "ankisyncd_request_duration_seconds_count{method=\"sync/meta\"} 3",
            "ankisyncd_full_syncs_total{direction=\"upload\"} 1",
            "ankisyncd_sync_duration_seconds_count{kind=\"normal\"} 1",
            "ankisyncd_sync_duration_seconds_count{kind=\"full_upload\"} 1",
            "ankisyncd_db_commit_duration_seconds_count 1",
            "ankisyncd_tls_handshakes_total{version=\"TLSv1.2\"} 1",
            "ankisyncd_actors{supervisor=\"collection\"} 2",
            "ankisyncd_sync_sessions 1",
            "ankisyncd_users 1",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line}:\n{page}");
        }
        assert!(!page.contains("user_last_sync_age"), "{page}");
        assert!(page.ends_with("# EOF\n"));
    }

    #[test]
    fn per_user_ages_only_when_asked_and_only_for_existing_users() {
        let m = Metrics::new(true);
        m.synced("alice", 900);
        m.synced("bob", 990);
        let page = m.render(&readings(&["alice", "bob"]));
        assert!(page.contains("ankisyncd_user_last_sync_age_seconds{user=\"alice\"} 100"));
        assert!(page.contains("ankisyncd_user_last_sync_age_seconds{user=\"bob\"} 10"));
        let page = m.render(&readings(&["bob"]));
        assert!(!page.contains("alice"), "{page}");
    }
}
