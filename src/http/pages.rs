//! The two plain pages a person or a probe may fetch: `/health` and `/`.

use std::time::Duration;

/// What `/` says: that the server runs, which version, and the exact address to type into
/// Anki. The address comes from the request's Host header (what the visitor reached), when
/// it is a plausible host name, else from the listening address.
pub(crate) fn index(host_header: Option<&str>, listen: &str, uptime: Duration) -> String {
    let host = host_header
        .filter(|h| !h.is_empty() && h.len() <= 255 && h.chars().all(is_host_char))
        .unwrap_or(listen);
    format!(
        "ankisyncd {version} is running (up {uptime}).\n\
         \n\
         This is a self-hosted Anki sync server. To sync with it, enter this address in\n\
         \n\
         \x20   http://{host}/\n\
         \n\
         - Anki desktop: Preferences > Syncing > Self-hosted sync server\n\
         - AnkiDroid: Settings > Sync > Custom sync server (sync URL; media URL http://{host}/msync/)\n\
         - AnkiMobile: Settings > Syncing > Header > Self-hosted sync server\n\
         \n\
         then log in with the user name and password set up on this server.\n",
        version = env!("CARGO_PKG_VERSION"),
        uptime = humanize(uptime),
    )
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_')
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_the_address_to_enter() {
        let page = index(
            Some("pi.local:27701"),
            "127.0.0.1:27701",
            Duration::from_secs(5),
        );
        assert!(page.contains("http://pi.local:27701/"));
        assert!(page.contains(env!("CARGO_PKG_VERSION")));
        let page = index(Some("<script>"), "127.0.0.1:27701", Duration::ZERO);
        assert!(page.contains("http://127.0.0.1:27701/"));
        assert!(!page.contains("<script>"));
    }
}
