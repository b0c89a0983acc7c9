//! Watches: matching modification events against registered watch paths.

use crate::path::{domain_path, is_child};
use crate::store::Change;

/// Special watch fired on INTRODUCE.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Special watch fired on RELEASE (and domain death).
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A registered watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Absolute path, or `@special`.
    pub path: String,
    pub token: Vec<u8>,
    /// Registered with a relative path: events are reported relative too.
    pub relative: bool,
}

impl Watch {
    /// The (absolute) event path to report for `change`, if it matches.
    pub fn matches(&self, change: &Change) -> Option<String> {
        let special = |p: &str| p.starts_with('@');
        if special(&self.path) || special(&change.path) {
            return (self.path == change.path).then(|| change.path.clone());
        }
        if is_child(&change.path, &self.path) {
            return Some(change.path.clone());
        }
        // Recursive removal of a parent of the watched path.
        if change.removed && is_child(&self.path, &change.path) {
            return Some(self.path.clone());
        }
        None
    }

    /// WATCH_EVENT payload for an absolute event path, as seen by `domid`.
    pub fn event_payload(&self, abs: &str, domid: u32) -> Vec<u8> {
        let mut p = abs;
        let home = domain_path(domid);
        if self.relative {
            if let Some(rest) = abs
                .strip_prefix(home.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                p = rest;
            }
        }
        let mut v = Vec::with_capacity(p.len() + self.token.len() + 2);
        v.extend_from_slice(p.as_bytes());
        v.push(0);
        v.extend_from_slice(&self.token);
        v.push(0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Perms;

    fn ch(p: &str, removed: bool) -> Change {
        Change {
            path: p.into(),
            perms: Perms::owned_by(0),
            removed,
        }
    }

    fn w(p: &str, rel: bool) -> Watch {
        Watch {
            path: p.into(),
            token: b"tok".to_vec(),
            relative: rel,
        }
    }

    #[test]
    fn matching() {
        assert_eq!(
            w("/a", false).matches(&ch("/a/b", false)).as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            w("/a", false).matches(&ch("/a", false)).as_deref(),
            Some("/a")
        );
        assert_eq!(w("/a", false).matches(&ch("/ab", false)), None);
        assert_eq!(w("/a/b/c", false).matches(&ch("/a", false)), None);
        assert_eq!(
            w("/a/b/c", false).matches(&ch("/a", true)).as_deref(),
            Some("/a/b/c")
        );
        assert_eq!(
            w("/", false).matches(&ch("/x", false)).as_deref(),
            Some("/x")
        );
        assert!(w(RELEASE_DOMAIN, false)
            .matches(&ch(RELEASE_DOMAIN, false))
            .is_some());
        assert!(w(RELEASE_DOMAIN, false)
            .matches(&ch(INTRODUCE_DOMAIN, false))
            .is_none());
        assert!(w("/", false)
            .matches(&ch(INTRODUCE_DOMAIN, false))
            .is_none());
    }

    #[test]
    fn relative_payload() {
        let wr = w("/local/domain/3/dev", true);
        assert_eq!(
            wr.event_payload("/local/domain/3/dev/x", 3),
            b"dev/x\0tok\0"
        );
        let wa = w("/local/domain/3/dev", false);
        assert_eq!(
            wa.event_payload("/local/domain/3/dev/x", 3),
            b"/local/domain/3/dev/x\0tok\0"
        );
    }
}
