//! The plain page a person opens in a browser, `/`: that the server runs, and the exact
//! address to type into each Anki app.

use std::time::Duration;

/// What `/` shows.
pub(crate) struct Index<'a> {
    /// `http` or `https`, as the visitor reached us (a proxy's `X-Forwarded-Proto` counts).
    pub scheme: &'a str,
    /// `host[:port]` as the visitor reached us: the proxy's `X-Forwarded-Host`, else the
    /// Host header, else the listening address.
    pub host: &'a str,
    /// The normalized `path_prefix`.
    pub prefix: &'a str,
    pub uptime: Duration,
    pub users: usize,
}

impl Index<'_> {
    pub(crate) fn render(&self) -> String {
        let url = format!("{}://{}{}/", self.scheme, self.host, self.prefix);
        let users = match self.users {
            0 => "no users yet (add one with `ankisyncd user add NAME`)".to_string(),
            1 => "1 user".to_string(),
            n => format!("{n} users"),
        };
        format!(
            "ankisyncd {version} is running (up {uptime}, {users}).\n\
             \n\
             This is a self-hosted Anki sync server. To sync with it, enter this address:\n\
             \n\
             \x20   {url}\n\
             \n\
             - Anki desktop: Preferences > Syncing > Self-hosted sync server: {url}\n\
             - AnkiDroid: Settings > Sync > Custom sync server: sync URL {url}, media sync URL {url}msync/\n\
             - AnkiMobile: Settings > Syncing > Header > Self-hosted sync server: {url}\n\
             \n\
             then log in with the user name and password set up on this server.\n",
            version = env!("CARGO_PKG_VERSION"),
            uptime = humanize(self.uptime),
        )
    }
}

/// A header value usable as a host name in the page: nothing that could inject markup or
/// break the URL.
pub(crate) fn plausible_host(value: &str) -> bool {
    !value.is_empty() && value.len() <= 255 && value.chars().all(is_host_char)
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
    fn index_names_the_address_to_enter_in_each_app() {
        let page = Index {
            scheme: "https",
            host: "pi.local:27701",
            prefix: "/anki",
            uptime: Duration::from_secs(3700),
            users: 2,
        }
        .render();
        assert!(page.contains(env!("CARGO_PKG_VERSION")));
        assert!(page.contains("up 1 h 1 min, 2 users"), "{page}");
        assert!(page.contains("desktop: Preferences > Syncing > Self-hosted sync server: https://pi.local:27701/anki/\n"));
        assert!(page.contains("sync URL https://pi.local:27701/anki/, media sync URL https://pi.local:27701/anki/msync/\n"));
        assert!(page.contains("AnkiMobile: Settings > Syncing > Header > Self-hosted sync server: https://pi.local:27701/anki/\n"));
    }

    #[test]
    fn only_plausible_hosts() {
        assert!(plausible_host("pi.local:27701"));
        assert!(plausible_host("[::1]:80"));
        assert!(!plausible_host("<script>"));
        assert!(!plausible_host("a b"));
        assert!(!plausible_host(""));
    }
}
