/*!
The Deployment Server's session: what `/hello` set (architecture, required and conflicting tags)
and the user `/login` logged in, kept by the client in a cookie.

The cookie is the session itself, signed (HMAC-SHA256 with the server's key) and carrying its
expiry: the server keeps nothing per client, so sessions are bounded in number by nothing a
client can grow, bounded in age by `MAX_AGE`, and survive a restart (the key is kept in the
data directory). A forged, expired or malformed cookie is simply no session: the request is
served as a new one, never refused.
*/

use super::Key;
use crate::package::digest::to_hex;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The cookie's name (the Deployment Server's, Django's).
pub const COOKIE: &str = "sessionid";
/// How long a session lasts after its last change, seconds.
pub const MAX_AGE: u64 = 24 * 3600;
/// Longest cookie value read (a session of the largest allowed fields is well below).
const MAX_COOKIE: usize = 4096;
/// Most tags a session keeps of each kind, and the longest user name.
pub const MAX_TAGS: usize = 32;
pub const MAX_USER: usize = 256;

/// One client's session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The architecture `/hello` gave, normalized (`x86_64-little_endian-64-elf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Seconds since the epoch when it ends.
    #[serde(default)]
    pub expires: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Session {
    /// The session a cookie header carries, if it carries a valid one.
    pub fn from_cookies(header: Option<&str>, key: &Key) -> Option<Session> {
        let value = cookie_value(header?)?;
        if value.len() > MAX_COOKIE {
            return None;
        }
        let (payload, mac) = value.split_once('.')?;
        let expected = key.mac(payload.as_bytes())?;
        if expected.len() != mac.len() || !openssl::memcmp::eq(expected.as_bytes(), mac.as_bytes())
        {
            return None;
        }
        let json = crate::package::digest::hex_bytes(payload)?;
        let session: Session = serde_json::from_slice(&json).ok()?;
        (session.expires > now()).then_some(session)
    }

    /// The `Set-Cookie` value carrying this session, renewed for `MAX_AGE`.
    pub fn set_cookie(&self, key: &Key) -> String {
        let mut session = self.clone();
        session.expires = now() + MAX_AGE;
        let json = serde_json::to_vec(&session).unwrap_or_default();
        let payload = to_hex(&json);
        // Without a MAC (openssl failed) the cookie is simply never valid.
        let mac = key.mac(payload.as_bytes()).unwrap_or_default();
        format!("{COOKIE}={payload}.{mac}; Path=/; Max-Age={MAX_AGE}; HttpOnly; SameSite=Lax")
    }
}

/// Whether the request carries a session cookie at all (valid or not): such a client speaks
/// the Deployment Server's API.
pub fn has_cookie(header: Option<&str>) -> bool {
    header.and_then(cookie_value).is_some()
}

/// The value of our cookie in a `Cookie` header (`a=1; sessionid=...; b=2`).
fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_string()
    }

    #[test]
    fn a_session_round_trips_and_forgeries_are_no_session() {
        let key = Key::new([7u8; 32]);
        let session = Session {
            architecture: Some("x86_64-little_endian-64-elf".into()),
            require_tags: vec!["qt:6.8".into()],
            user: Some("t".into()),
            ..Session::default()
        };
        let cookie = value(&session.set_cookie(&key));
        let back = Session::from_cookies(Some(&format!("a=b; {cookie}")), &key).unwrap();
        assert_eq!(back.user.as_deref(), Some("t"));
        assert_eq!(back.require_tags, ["qt:6.8"]);
        // Another key, a changed payload, garbage: no session.
        assert!(Session::from_cookies(Some(&cookie), &Key::new([8u8; 32])).is_none());
        let forged = cookie.replacen("sessionid=7b", "sessionid=7c", 1);
        assert!(Session::from_cookies(Some(&forged), &key).is_none());
        assert!(Session::from_cookies(Some("sessionid=zz.zz"), &key).is_none());
        assert!(has_cookie(Some("sessionid=zz")));
        // Expired: authentic, but past its time.
        let old = serde_json::to_vec(&Session {
            expires: 1,
            ..session.clone()
        })
        .unwrap();
        let payload = to_hex(&old);
        let expired = format!(
            "sessionid={payload}.{}",
            key.mac(payload.as_bytes()).unwrap()
        );
        assert!(Session::from_cookies(Some(&expired), &key).is_none());
        // Larger than MAX_COOKIE, even if authentic: not read.
        let big = Session {
            user: Some("u".repeat(MAX_COOKIE)),
            ..session
        };
        let cookie = value(&big.set_cookie(&key));
        assert!(Session::from_cookies(Some(&cookie), &key).is_none());
        assert!(!has_cookie(Some("other=1")));
    }
}
