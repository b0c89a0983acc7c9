//! Path validation and resolution of relative paths.

use crate::wire::{XsError, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};

/// Home directory of a domain (`GET_DOMAIN_PATH`, base of relative paths).
pub fn domain_path(domid: u32) -> String {
    format!("/local/domain/{domid}")
}

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Validates the raw bytes of a path and resolves it to an absolute path.
/// Relative paths are taken relative to `/local/domain/<domid>`.
/// Returns `(absolute, was_relative)`.
pub fn resolve(raw: &[u8], domid: u32) -> Result<(String, bool), XsError> {
    if raw.is_empty() || !raw.iter().all(|&c| valid_char(c)) {
        return Err(XsError::EINVAL);
    }
    // Only ASCII is accepted above, so this cannot fail.
    let s = std::str::from_utf8(raw).map_err(|_| XsError::EINVAL)?;
    let (abs, rel) = if s.starts_with('/') {
        if s.len() > XENSTORE_ABS_PATH_MAX {
            return Err(XsError::EINVAL);
        }
        (s.to_string(), false)
    } else {
        if s.len() > XENSTORE_REL_PATH_MAX {
            return Err(XsError::EINVAL);
        }
        (format!("{}/{}", domain_path(domid), s), true)
    };
    if abs.len() > XENSTORE_ABS_PATH_MAX {
        return Err(XsError::EINVAL);
    }
    if abs != "/" && (abs.ends_with('/') || abs.contains("//")) {
        return Err(XsError::EINVAL);
    }
    Ok((abs, rel))
}

/// Validates a watch path: a node path or a special `@name`.
pub fn resolve_watch(raw: &[u8], domid: u32) -> Result<(String, bool), XsError> {
    if raw.first() == Some(&b'@') {
        if raw.len() > XENSTORE_REL_PATH_MAX || !raw.iter().all(|&c| valid_char(c)) {
            return Err(XsError::EINVAL);
        }
        return Ok((
            String::from_utf8(raw.to_vec()).map_err(|_| XsError::EINVAL)?,
            false,
        ));
    }
    resolve(raw, domid)
}

/// Parent of an absolute path (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// Last component of an absolute path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// Joins a parent and a child name.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// True if `child` is `parent` or lies below it (xenstore.txt's "child").
pub fn is_child(child: &str, parent: &str) -> bool {
    if parent == "/" {
        return child.starts_with('/');
    }
    child == parent
        || (child.len() > parent.len()
            && child.starts_with(parent)
            && child.as_bytes()[parent.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves() {
        assert_eq!(resolve(b"/a/b", 3).unwrap(), ("/a/b".into(), false));
        assert_eq!(
            resolve(b"x/y", 3).unwrap(),
            ("/local/domain/3/x/y".into(), true)
        );
        assert_eq!(resolve(b"/", 0).unwrap(), ("/".into(), false));
        for bad in [
            &b""[..],
            b"/a/",
            b"/a//b",
            b"/a b",
            b"/\xff",
            b"/a\0",
            b"a/",
        ] {
            assert_eq!(resolve(bad, 0), Err(XsError::EINVAL), "{bad:?}");
        }
        assert!(resolve(&vec![b'a'; 3000], 0).is_err());
        let mut long = b"/".to_vec();
        long.extend(vec![b'a'; 3072]);
        assert!(resolve(&long, 0).is_err());
        assert_eq!(
            resolve_watch(b"@releaseDomain", 1).unwrap().0,
            "@releaseDomain"
        );
    }

    #[test]
    fn tree_helpers() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(basename("/a/bc"), "bc");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(!is_child("/ab", "/a"));
        assert!(is_child("/ab", "/"));
    }
}
