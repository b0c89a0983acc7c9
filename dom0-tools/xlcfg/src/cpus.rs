//! CPU lists: `"all"`, `"0-3,5,^1"`, `"nodes:0-1,^node:2"`.

use std::collections::BTreeSet;
use std::fmt;

/// Highest CPU / node number accepted (keeps ranges bounded).
pub const MAX_CPU: u32 = 4095;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuTarget {
    /// Every host CPU.
    All,
    /// Host CPUs `first..=last`.
    Cpus { first: u32, last: u32 },
    /// CPUs of NUMA nodes `first..=last`.
    Nodes { first: u32, last: u32 },
}

/// One comma-separated term; `exclude` is the `^` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTerm {
    pub exclude: bool,
    pub target: CpuTarget,
}

/// A parsed CPU list, terms applied left to right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList {
    pub terms: Vec<CpuTerm>,
}

impl CpuList {
    /// Parse a CPULIST string as described in xl.cfg(5).
    pub fn parse(s: &str) -> Result<CpuList, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Err("empty CPU list".into());
        }
        for raw in s.split(',') {
            let t = raw.trim();
            if t.is_empty() {
                return Err("empty element in CPU list".into());
            }
            let (exclude, t) = match t.strip_prefix('^') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, t),
            };
            let target = if t == "all" {
                CpuTarget::All
            } else if let Some(r) = t.strip_prefix("nodes:").or_else(|| t.strip_prefix("node:")) {
                let (first, last) = parse_range(r)?;
                CpuTarget::Nodes { first, last }
            } else {
                let (first, last) = parse_range(t)?;
                CpuTarget::Cpus { first, last }
            };
            if exclude && target == CpuTarget::All {
                return Err("'^all' excludes everything".into());
            }
            terms.push(CpuTerm { exclude, target });
        }
        if terms.iter().all(|t| t.exclude) {
            return Err("the list only excludes CPUs; nothing is included".into());
        }
        Ok(CpuList { terms })
    }

    /// Resolve to concrete CPUs on a host with `ncpus` CPUs, where
    /// `node_cpus(n)` lists the CPUs of NUMA node `n`.
    pub fn resolve(&self, ncpus: u32, node_cpus: impl Fn(u32) -> Vec<u32>) -> BTreeSet<u32> {
        let mut set = BTreeSet::new();
        for term in &self.terms {
            let cpus: Vec<u32> = match term.target {
                CpuTarget::All => (0..ncpus).collect(),
                CpuTarget::Cpus { first, last } => (first..=last).filter(|c| *c < ncpus).collect(),
                CpuTarget::Nodes { first, last } => (first..=last).flat_map(&node_cpus).collect(),
            };
            for c in cpus {
                if term.exclude {
                    set.remove(&c);
                } else {
                    set.insert(c);
                }
            }
        }
        set
    }
}

fn parse_num(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("'{s}' is not a CPU number"));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_CPU => Ok(n),
        _ => Err(format!("{s} is above the maximum of {MAX_CPU}")),
    }
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_num(a)?, parse_num(b)?);
            if a > b {
                return Err(format!("range {a}-{b} is reversed"));
            }
            Ok((a, b))
        }
        None => {
            let n = parse_num(s)?;
            Ok((n, n))
        }
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if t.exclude {
                f.write_str("^")?;
            }
            match t.target {
                CpuTarget::All => f.write_str("all")?,
                CpuTarget::Cpus { first, last } if first == last => write!(f, "{first}")?,
                CpuTarget::Cpus { first, last } => write!(f, "{first}-{last}")?,
                CpuTarget::Nodes { first, last } if first == last => write!(f, "node:{first}")?,
                CpuTarget::Nodes { first, last } => write!(f, "nodes:{first}-{last}")?,
            }
        }
        Ok(())
    }
}

/// The `cpus` / `cpus_soft` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuAffinity {
    /// A string: every vCPU may run on these CPUs.
    AllVcpus(CpuList),
    /// A list: element *i* is the affinity of vCPU *i*.
    PerVcpu(Vec<CpuList>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        let l = CpuList::parse("0-3,5,^1").unwrap();
        assert_eq!(
            l.resolve(8, |_| vec![]).into_iter().collect::<Vec<_>>(),
            vec![0, 2, 3, 5]
        );
        assert_eq!(l.to_string(), "0-3,5,^1");
        let l = CpuList::parse("all,^7").unwrap();
        assert_eq!(l.resolve(8, |_| vec![]).len(), 7);
        let l = CpuList::parse("1,node:1,^6").unwrap();
        let nodes = |n: u32| (n * 4..n * 4 + 4).collect::<Vec<_>>();
        assert_eq!(
            l.resolve(16, nodes).into_iter().collect::<Vec<_>>(),
            vec![1, 4, 5, 7]
        );
        let l = CpuList::parse("nodes:0-3,^node:2").unwrap();
        assert_eq!(l.resolve(16, nodes).len(), 12);
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in ["", "3-1", "a", "0,,1", "^1", "^all", "99999", "1-", "node:"] {
            assert!(CpuList::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
