//! A fake guest: sparse memory and a record of every call.

use keel_builder::abi::{E820Entry, GrantEntryV1};
use keel_builder::Guest;
use keel_xen_abi::hvm::save::HwCpu;
use std::collections::{BTreeMap, HashMap};

/// Picks calls (for failure injection).
pub type OpMatch = fn(&Op) -> bool;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Populate { first: u64, n: usize, order: u32 },
    Write { gpa: u64, len: u64 },
    Zero { gpa: u64, len: u64 },
    SetMemoryMap(usize),
    SetParam(u32, u64),
    Mtrr(u32, u64),
    Bsp,
    Grants,
}

/// Guest memory as a sparse page map, plus a record of every call.
#[derive(Default)]
pub struct FakeGuest {
    /// Populated GFNs (every page of every extent).
    pub populated: BTreeMap<u64, u32>,
    pub pages: HashMap<u64, Box<[u8; 4096]>>,
    pub ops: Vec<Op>,
    pub e820: Vec<E820Entry>,
    pub params: BTreeMap<u32, u64>,
    pub mtrr: BTreeMap<u32, u64>,
    pub bsp: Option<HwCpu>,
    pub grants: Vec<(u32, GrantEntryV1)>,
    /// Extents above this order are refused (populate returns 0).
    pub max_order: u32,
    /// Fail the `n`th (from 0) call whose op matches this predicate.
    pub fail_on: Option<(OpMatch, usize)>,
    /// Params whose set fails.
    pub bad_params: Vec<u32>,
}

impl FakeGuest {
    pub fn new() -> FakeGuest {
        FakeGuest {
            max_order: 18,
            ..Default::default()
        }
    }

    fn record(&mut self, op: Op) -> Result<(), String> {
        let fail = match &mut self.fail_on {
            Some((pred, n)) if pred(&op) => {
                if *n == 0 {
                    true
                } else {
                    *n -= 1;
                    false
                }
            }
            _ => false,
        };
        let msg = format!("injected failure at {op:?}");
        self.ops.push(op);
        if fail {
            self.fail_on = None;
            return Err(msg);
        }
        Ok(())
    }

    pub fn is_populated(&self, gfn: u64) -> bool {
        self.populated.contains_key(&gfn)
    }

    /// Reads guest memory (unwritten populated pages read as zero).
    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        for a in gpa..gpa + len as u64 {
            assert!(self.is_populated(a / 4096), "read of unpopulated {a:#x}");
            out.push(
                self.pages
                    .get(&(a / 4096))
                    .map_or(0, |p| p[(a % 4096) as usize]),
            );
        }
        out
    }

    pub fn u64_at(&self, gpa: u64) -> u64 {
        u64::from_le_bytes(self.read(gpa, 8).try_into().unwrap())
    }

    fn store(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), String> {
        let mut a = gpa;
        let mut rest = bytes;
        while !rest.is_empty() {
            let gfn = a / 4096;
            if !self.is_populated(gfn) {
                return Err(format!("write to unpopulated GFN {gfn:#x}"));
            }
            let o = (a % 4096) as usize;
            let n = rest.len().min(4096 - o);
            let page = self.pages.entry(gfn).or_insert_with(|| Box::new([0; 4096]));
            page[o..o + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            a += n as u64;
        }
        Ok(())
    }
}

impl Guest for FakeGuest {
    type Error = String;

    fn populate(&mut self, gfns: &[u64], order: u32) -> Result<usize, String> {
        self.record(Op::Populate {
            first: gfns[0],
            n: gfns.len(),
            order,
        })?;
        if order > self.max_order {
            return Ok(0);
        }
        for &g in gfns {
            assert_eq!(g % (1 << order), 0, "unaligned extent {g:#x} order {order}");
            for p in g..g + (1 << order) {
                if self.populated.insert(p, order).is_some() {
                    return Err(format!("GFN {p:#x} populated twice"));
                }
            }
        }
        Ok(gfns.len())
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), String> {
        self.record(Op::Write {
            gpa,
            len: bytes.len() as u64,
        })?;
        self.store(gpa, bytes)
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), String> {
        self.record(Op::Zero { gpa, len })?;
        self.store(gpa, &vec![0u8; len as usize])
    }

    fn set_memory_map(&mut self, e820: &[E820Entry]) -> Result<(), String> {
        self.record(Op::SetMemoryMap(e820.len()))?;
        self.e820 = e820.to_vec();
        Ok(())
    }

    fn set_param(&mut self, index: u32, value: u64) -> Result<(), String> {
        self.record(Op::SetParam(index, value))?;
        if self.bad_params.contains(&index) {
            return Err(format!("param {index} refused"));
        }
        self.params.insert(index, value);
        Ok(())
    }

    fn set_mtrr_def_type(&mut self, vcpu: u32, def_type: u64) -> Result<(), String> {
        self.record(Op::Mtrr(vcpu, def_type))?;
        self.mtrr.insert(vcpu, def_type);
        Ok(())
    }

    fn set_bsp(&mut self, cpu: &HwCpu) -> Result<(), String> {
        self.record(Op::Bsp)?;
        self.bsp = Some(*cpu);
        Ok(())
    }

    fn seed_grant_table(&mut self, entries: &[(u32, GrantEntryV1)]) -> Result<(), String> {
        self.record(Op::Grants)?;
        self.grants = entries.to_vec();
        Ok(())
    }
}
