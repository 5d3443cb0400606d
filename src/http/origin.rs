/*!
Who may talk to the server from a browser.

The server runs on a developer's desktop, and any web page open in that desktop's browser can
send it requests: a form on another site can post to `localhost`, and a page can rebind its
own DNS name to 127.0.0.1 and then read the answers as its own (DNS rebinding). Two checks stop
that, while curl, scripts and Qt's installer (which send neither `Origin` nor a foreign
`Host`) are unaffected:

- **Known hosts.** A request's `Host` must be a name this server answers to: loopback names
  and addresses, and names without a dot (a container service, a hosts-file alias: only local
  configuration resolves them, so no page can rebind them) always; when it listens on other
  addresses also any IP literal and this machine's own name (and `<name>.local`); and the
  names of `--allowed-hosts`. A rebinding page's requests carry its own name, a public one, so
  they are refused (421).
- **Same-origin writes.** Requests that change the store are refused (403) when a browser says
  they come from elsewhere: an `Origin` that is not this server's own, or `Sec-Fetch-Site:
  cross-site`/`same-site`. The page's own uploads and removals are same-origin.
*/

use std::net::IpAddr;

/// The longest `Host` header taken: a DNS name (253) and a port.
const MAX_HOST: usize = 260;

/// The host names a server answers to.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Listening on loopback addresses only.
    pub loopback_only: bool,
    /// This machine's name, lower case.
    pub machine_name: Option<String>,
    /// `--allowed-hosts`, lower case; `*` allows any.
    pub allowed: Vec<String>,
}

impl HostPolicy {
    pub fn new(loopback_only: bool, allowed: Vec<String>) -> HostPolicy {
        let machine_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty());
        HostPolicy {
            loopback_only,
            machine_name,
            allowed,
        }
    }

    /// Why a request with this `Host` header is refused, or `None` when it is answered. A
    /// request without one (HTTP/1.0) is answered.
    pub fn refusal(&self, host: Option<&str>) -> Option<String> {
        let host = host?;
        if host.len() > MAX_HOST {
            return Some(format!(
                "a host name of {} bytes is none this server answers to",
                host.len()
            ));
        }
        let name = host_name(host).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        let ip = name.parse::<IpAddr>().ok();
        let machine = self.machine_name.as_deref();
        let known = name == "localhost"
            || name.ends_with(".localhost")
            // A name without a dot (a container service, a hosts-file alias) resolves only
            // through local configuration: no page can rebind it.
            || (ip.is_none() && !name.is_empty() && !name.contains('.'))
            || ip.is_some_and(|ip| ip.is_loopback() || !self.loopback_only)
            || (!self.loopback_only
                && machine.is_some_and(|m| name == m || name.strip_suffix(".local") == Some(m)))
            || self.allowed.iter().any(|a| a == "*" || a == name);
        (!known).then(|| {
            format!(
                "this server does not answer to the host name '{name}' (a protection against DNS rebinding): allow it with --allowed-hosts (allowedHosts)"
            )
        })
    }
}

/// The name in a `Host` header: without the port, and without the brackets of an IPv6 literal.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Why a request that changes the store is refused as cross-origin, or `None`.
pub fn cross_origin(
    origin: Option<&str>,
    fetch_site: Option<&str>,
    host: Option<&str>,
) -> Option<String> {
    if let Some(site) = fetch_site
        && matches!(
            site.trim().to_ascii_lowercase().as_str(),
            "cross-site" | "same-site"
        )
    {
        return Some(format!(
            "a request from another site may not change this store (Sec-Fetch-Site: {})",
            site.trim()
        ));
    }
    let origin = origin?.trim();
    let same = host.is_some_and(|host| same_authority(origin, host));
    (!same).then(|| format!("a page from another origin ({origin}) may not change this store"))
}

/// Whether `origin` (`scheme://host[:port]`) is the server reached as `host` (the Host
/// header; a client that leaves out the port, which no browser does, matches any).
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (origin_name, origin_port) = split_port(authority);
    let (host_name, host_port) = split_port(host.trim());
    origin_name.eq_ignore_ascii_case(host_name)
        && host_port.is_none_or(|port| origin_port.unwrap_or(default_port) == port)
}

/// `name` and port of `name[:port]` (`[v6]:port` keeps its brackets in the name).
fn split_port(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((name, port))
            if !name.ends_with(':') && (name.starts_with('[') == name.ends_with(']')) =>
        {
            match port.parse() {
                Ok(port) => (name, Some(port)),
                Err(_) => (authority, None),
            }
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_answer_loopback_names_only() {
        let policy = HostPolicy {
            loopback_only: true,
            machine_name: Some("devbox".into()),
            allowed: vec!["store.lab".into()],
        };
        for host in [
            "localhost:8020",
            "LOCALHOST",
            "127.0.0.1:8020",
            "127.1.2.3",
            "[::1]:8020",
            "app.localhost:8020",
            "store.lab:8020",
            "localhost.",
        ] {
            assert!(policy.refusal(Some(host)).is_none(), "{host}");
        }
        assert!(policy.refusal(None).is_none());
        for host in ["packages:8020", "devbox"] {
            assert!(policy.refusal(Some(host)).is_none(), "{host}");
        }
        for host in [
            "attacker.example:8020",
            "devbox.local:8020",
            "192.168.1.5:8020",
            "[fe80::1]",
            "localhost.attacker.example",
        ] {
            assert!(policy.refusal(Some(host)).is_some(), "{host}");
        }
    }

    #[test]
    fn other_servers_also_answer_ip_literals_and_the_machine_name() {
        let policy = HostPolicy {
            loopback_only: false,
            machine_name: Some("devbox".into()),
            allowed: vec![],
        };
        for host in [
            "192.168.1.5:8020",
            "[fe80::1]:8020",
            "devbox",
            "devbox.local",
            "localhost",
        ] {
            assert!(policy.refusal(Some(host)).is_none(), "{host}");
        }
        assert!(policy.refusal(Some("attacker.example")).is_some());
        let any = HostPolicy {
            allowed: vec!["*".into()],
            ..policy
        };
        assert!(any.refusal(Some("attacker.example")).is_none());
    }

    #[test]
    fn writes_from_other_origins_are_refused() {
        let host = Some("localhost:8020");
        assert!(cross_origin(None, None, host).is_none(), "curl");
        assert!(cross_origin(Some("http://localhost:8020"), Some("same-origin"), host).is_none());
        assert!(cross_origin(None, Some("none"), host).is_none());
        assert!(cross_origin(Some("http://LOCALHOST:8020"), None, host).is_none());
        assert!(cross_origin(Some("http://127.0.0.1:8020"), None, Some("127.0.0.1")).is_none());
        assert!(cross_origin(Some("https://[::1]"), None, Some("[::1]:443")).is_none());
        assert!(cross_origin(Some("http://localhost"), None, host).is_some());
        for (origin, site) in [
            (Some("http://attacker.example"), None),
            (Some("null"), None),
            (Some("http://localhost:8021"), None),
            (None, Some("cross-site")),
            (None, Some("same-site")),
            (Some("http://localhost:8020"), Some("cross-site")),
        ] {
            assert!(
                cross_origin(origin, site, host).is_some(),
                "{origin:?} {site:?}"
            );
        }
    }
}
