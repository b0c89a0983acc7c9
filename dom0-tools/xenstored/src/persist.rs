//! Optional persistence: a text snapshot of the tree, written atomically
//! (temp file + rename) on clean shutdown and loaded at start-up.
//!
//! Format (one node per line, parents before children):
//! `keel-xenstored-snapshot 1` header, then `<path> <perms,csv> <hex value>`.
//! Domains, connections, watches and open transactions are runtime state
//! and are not saved (as with C xenstored without live-update).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::perms::Perms;
use crate::store::Store;

const MAGIC: &str = "keel-xenstored-snapshot 1";

fn hex(v: &[u8]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Serialises the store.
pub fn to_string(store: &Store) -> String {
    let mut out = String::from(MAGIC);
    out.push('\n');
    for p in store.walk() {
        let n = store.node(&p).expect("walked node exists");
        out.push_str(&format!(
            "{} {} {}\n",
            p,
            n.perms.to_strings().join(","),
            hex(&n.value)
        ));
    }
    out
}

/// Parses a snapshot.
pub fn from_str(s: &str) -> io::Result<Store> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut lines = s.lines();
    if lines.next() != Some(MAGIC) {
        return Err(bad("not a keel-xenstored snapshot"));
    }
    let mut store = Store::empty();
    for (i, line) in lines.enumerate() {
        let mut f = line.split(' ');
        let (Some(p), Some(perms), Some(v), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(bad(&format!("line {}: malformed", i + 2)));
        };
        let (path, _) = crate::path::resolve(p.as_bytes(), 0).map_err(|_| bad("bad path"))?;
        let perms = Perms::parse_csv(perms).map_err(|_| bad("bad perms"))?;
        let value = unhex(v).ok_or_else(|| bad("bad value"))?;
        store
            .load_node(&path, value, perms)
            .map_err(|_| bad("node before its parent"))?;
    }
    if store.node("/").is_none() {
        return Err(bad("snapshot has no root"));
    }
    Ok(store)
}

/// Writes the snapshot atomically.
pub fn save(store: &Store, file: &Path) -> io::Result<()> {
    let tmp = file.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(to_string(store).as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, file)
}

/// Loads a snapshot; `Ok(None)` if the file does not exist.
pub fn load(file: &Path) -> io::Result<Option<Store>> {
    match fs::read_to_string(file) {
        Ok(s) => from_str(&s).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Caller;
    use crate::quota::Quota;
    use crate::store::{self, Tree};

    #[test]
    fn roundtrip() {
        let mut s = Store::new();
        let c = Caller::dom0();
        let q = Quota::default();
        store::write(&mut s, &c, &q, "/a/b", b"bin\0\xff").unwrap();
        store::write(&mut s, &c, &q, "/a/c", b"").unwrap();
        store::set_perms(&mut s, &c, "/a/c", Perms::parse_csv("b3,r4").unwrap()).unwrap();
        let text = to_string(&s);
        let mut t = from_str(&text).unwrap();
        assert_eq!(t.walk(), s.walk());
        assert_eq!(store::read(&mut t, &c, "/a/b").unwrap(), b"bin\0\xff");
        assert_eq!(
            store::get_perms(&mut t, &c, "/a/c").unwrap().to_strings(),
            ["b3", "r4"]
        );
        assert_eq!(t.owned(3), 1);
        let dir = std::env::temp_dir().join(format!("keel-xs-persist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("db");
        assert!(load(&f).unwrap().is_none());
        save(&s, &f).unwrap();
        assert_eq!(load(&f).unwrap().unwrap().walk(), s.walk());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_garbage() {
        assert!(from_str("").is_err());
        assert!(from_str("hello\n").is_err());
        assert!(from_str(&format!("{MAGIC}\n/a n0 -\n")).is_err()); // no root
        assert!(from_str(&format!("{MAGIC}\n/ n0 zz\n")).is_err());
        assert!(from_str(&format!("{MAGIC}\n/ n0 -\n/x/y n0 -\n")).is_err());
    }
}
