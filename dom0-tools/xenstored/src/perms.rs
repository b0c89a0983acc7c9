//! Node permissions: `<letter><domid>` entries, the first naming the owner
//! (who always has full access) and the default access for everyone else.

use crate::wire::XsError;

/// Access bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

impl Access {
    pub const NONE: Access = Access {
        read: false,
        write: false,
    };
    pub const ALL: Access = Access {
        read: true,
        write: true,
    };

    fn letter(self) -> char {
        match (self.read, self.write) {
            (false, false) => 'n',
            (true, false) => 'r',
            (false, true) => 'w',
            (true, true) => 'b',
        }
    }

    fn union(self, o: Access) -> Access {
        Access {
            read: self.read || o.read,
            write: self.write || o.write,
        }
    }
}

/// One ACL entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub domid: u32,
    pub access: Access,
}

/// A node's permission list; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perms(Vec<Perm>);

/// The largest domid accepted in an ACL (DOMID_FIRST_RESERVED - 1 ...
/// up to the special ids; xenstored accepts any 16-bit value).
const MAX_DOMID: u32 = 0xffff;

impl Perms {
    /// Owner `domid`, nobody else has access.
    pub fn owned_by(domid: u32) -> Perms {
        Perms(vec![Perm {
            domid,
            access: Access::NONE,
        }])
    }

    pub fn owner(&self) -> u32 {
        self.0[0].domid
    }

    pub fn entries(&self) -> &[Perm] {
        &self.0
    }

    pub fn set_owner(&mut self, domid: u32) {
        self.0[0].domid = domid;
    }

    /// Parses one `<letter><domid>` string.
    pub fn parse_one(s: &[u8]) -> Result<Perm, XsError> {
        let (&l, num) = s.split_first().ok_or(XsError::EINVAL)?;
        let access = match l {
            b'n' => Access::NONE,
            b'r' => Access {
                read: true,
                write: false,
            },
            b'w' => Access {
                read: false,
                write: true,
            },
            b'b' => Access::ALL,
            _ => return Err(XsError::EINVAL),
        };
        if num.is_empty() || num.len() > 10 || !num.iter().all(u8::is_ascii_digit) {
            return Err(XsError::EINVAL);
        }
        let domid: u64 = std::str::from_utf8(num)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(XsError::EINVAL)?;
        if domid > MAX_DOMID as u64 {
            return Err(XsError::EINVAL);
        }
        Ok(Perm {
            domid: domid as u32,
            access,
        })
    }

    /// Parses a list of entries (at least one).
    pub fn parse(list: &[&[u8]]) -> Result<Perms, XsError> {
        if list.is_empty() {
            return Err(XsError::EINVAL);
        }
        Ok(Perms(
            list.iter()
                .map(|s| Perms::parse_one(s))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Parses a comma-separated list (persistence format).
    pub fn parse_csv(s: &str) -> Result<Perms, XsError> {
        let parts: Vec<&[u8]> = s.split(',').map(str::as_bytes).collect();
        Perms::parse(&parts)
    }

    /// Entries as strings, e.g. `["b0", "r3"]`.
    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|p| format!("{}{}", p.access.letter(), p.domid))
            .collect()
    }

    /// `GET_PERMS` payload: each entry nul-terminated.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for s in self.to_strings() {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        v
    }

    fn access_for_domid(&self, domid: u32) -> Access {
        if self.0[0].domid == domid {
            return Access::ALL;
        }
        self.0[1..]
            .iter()
            .find(|p| p.domid == domid)
            .map(|p| p.access)
            .unwrap_or(self.0[0].access)
    }

    /// Effective access of a caller.
    pub fn access(&self, who: &Caller) -> Access {
        if who.privileged {
            return Access::ALL;
        }
        let mut a = self.access_for_domid(who.domid);
        if let Some(t) = who.target {
            a = a.union(self.access_for_domid(t));
        }
        a
    }
}

/// Identity used for permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub domid: u32,
    /// dom0 (and socket clients): bypasses all checks and quotas.
    pub privileged: bool,
    /// SET_TARGET: this domain acts on behalf of `target`.
    pub target: Option<u32>,
}

impl Caller {
    pub fn dom0() -> Caller {
        Caller {
            domid: 0,
            privileged: true,
            target: None,
        }
    }

    pub fn domain(domid: u32) -> Caller {
        Caller {
            domid,
            privileged: domid == 0,
            target: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Perms {
        let v: Vec<&[u8]> = list.iter().map(|s| s.as_bytes()).collect();
        Perms::parse(&v).unwrap()
    }

    #[test]
    fn parse_format() {
        let ps = p(&["n0", "r1", "w2", "b3"]);
        assert_eq!(ps.to_strings(), ["n0", "r1", "w2", "b3"]);
        assert_eq!(ps.to_payload(), b"n0\0r1\0w2\0b3\0");
        assert_eq!(ps.owner(), 0);
        for bad in [
            &b""[..],
            b"x1",
            b"r",
            b"r-1",
            b"r99999999999",
            b"r70000",
            b"r1a",
        ] {
            assert_eq!(Perms::parse_one(bad), Err(XsError::EINVAL), "{bad:?}");
        }
        assert!(Perms::parse(&[]).is_err());
        assert_eq!(Perms::parse_csv("b5,r1").unwrap(), p(&["b5", "r1"]));
    }

    #[test]
    fn access_rules() {
        let ps = p(&["r5", "n1", "w2", "b3"]);
        let d = |id| Caller::domain(id);
        assert_eq!(ps.access(&d(5)), Access::ALL); // owner
        assert_eq!(ps.access(&d(1)), Access::NONE);
        assert_eq!(
            ps.access(&d(2)),
            Access {
                read: false,
                write: true
            }
        );
        assert_eq!(ps.access(&d(3)), Access::ALL);
        assert_eq!(
            ps.access(&d(9)),
            Access {
                read: true,
                write: false
            }
        ); // default
        assert_eq!(ps.access(&Caller::dom0()), Access::ALL);
        let t = Caller {
            domid: 1,
            privileged: false,
            target: Some(5),
        };
        assert_eq!(ps.access(&t), Access::ALL); // acts for its target, the owner
    }
}
