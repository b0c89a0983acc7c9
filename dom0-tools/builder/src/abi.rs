//! The guest-visible structures the builder writes, as typed `#[repr(C)]` structs with a
//! little-endian byte encoding (`to_bytes`/`from_bytes`, field by field at `offset_of!`, padding
//! zero): written from Xen's public headers `arch-x86/hvm/start_info.h`, `grant_table.h`,
//! `hvm/e820.h`-style e820 entries, and the ACPI 6 specification. Sizes and offsets are
//! asserted in the tests against the numbers in those headers.

/// A field type with a little-endian encoding.
pub trait Field: Sized + Copy {
    fn put(&self, out: &mut [u8]);
    fn get(b: &[u8]) -> Self;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, out: &mut [u8]) {
                out[..core::mem::size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b[..core::mem::size_of::<$t>()].try_into().unwrap())
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64);

impl<const N: usize> Field for [u8; N] {
    fn put(&self, out: &mut [u8]) {
        out[..N].copy_from_slice(self);
    }
    fn get(b: &[u8]) -> Self {
        b[..N].try_into().unwrap()
    }
}

/// Defines a struct (the caller gives its `#[repr]`) with `SIZE`, `to_bytes` and `from_bytes`.
macro_rules! le_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }

        impl $name {
            /// The C `sizeof`.
            pub const SIZE: usize = core::mem::size_of::<$name>();

            /// The memory image: each field little-endian at its offset, padding zero.
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut b = vec![0u8; Self::SIZE];
                $( Field::put(&{ self.$f }, &mut b[core::mem::offset_of!($name, $f)..]); )*
                b
            }

            /// Decodes the first `SIZE` bytes; `None` when `b` is shorter.
            pub fn from_bytes(b: &[u8]) -> Option<Self> {
                if b.len() < Self::SIZE {
                    return None;
                }
                Some(Self { $($f: Field::get(&b[core::mem::offset_of!($name, $f)..])),* })
            }
        }
    };
}

// ------------------------------------------------------------------ hvm_start_info

/// The PVH boot ABI's structures and the grant table's v1 entry are keel-xen-abi's (the
/// hypervisor's too), whose layouts are checked against Xen's headers.
pub use keel_xen_abi::grant::{
    GrantEntryV1, GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GTF_PERMIT_ACCESS,
};
pub use keel_xen_abi::hvm::start_info::{
    HvmMemmapTableEntry as HvmMemmapEntry, HvmModlistEntry, HvmStartInfo,
    MAGIC_VALUE as XEN_HVM_START_MAGIC_VALUE,
};

/// `to_bytes` for keel-xen-abi's structs, as the builder's own have it.
pub trait ToBytes: keel_xen_abi::Pod {
    /// The memory image: each field little-endian at its offset, padding zero.
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; Self::SIZE];
        self.write_to(&mut b).expect("sized");
        b
    }
}

impl<T: keel_xen_abi::Pod> ToBytes for T {}

le_struct! {
    /// `struct e820entry` as `XENMEM_set_memory_map` takes it (packed, 20 bytes).
    #[repr(C, packed)]
    pub struct E820Raw {
        pub addr: u64,
        pub size: u64,
        pub kind: u32,
    }
}

/// e820 / `XEN_HVM_MEMMAP_TYPE_*` types the builder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
}

/// One memory map entry (the guest's e820 and start_info's memmap hold the same list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Type,
}

impl E820Entry {
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
    /// For `XENMEM_set_memory_map`.
    pub fn raw(&self) -> E820Raw {
        E820Raw {
            addr: self.addr,
            size: self.size,
            kind: self.kind as u32,
        }
    }
    /// For `hvm_start_info.memmap_paddr`.
    pub fn memmap(&self) -> HvmMemmapEntry {
        HvmMemmapEntry {
            addr: self.addr,
            size: self.size,
            kind: self.kind as u32,
            reserved: 0,
        }
    }
}

// ------------------------------------------------------------------ ACPI

le_struct! {
    /// ACPI 2.0+ Root System Description Pointer, 36 bytes (ACPI 6.5 §5.2.5.3).
    #[repr(C, packed)]
    pub struct AcpiRsdp {
        /// `"RSD PTR "`.
        pub signature: [u8; 8],
        /// Makes the first 20 bytes sum to 0.
        pub checksum: u8,
        pub oem_id: [u8; 6],
        /// 2 for ACPI 2.0+.
        pub revision: u8,
        pub rsdt_address: u32,
        /// 36.
        pub length: u32,
        pub xsdt_address: u64,
        /// Makes all 36 bytes sum to 0.
        pub extended_checksum: u8,
        pub reserved: [u8; 3],
    }
}

le_struct! {
    /// The System Description Table header every table but the RSDP starts with, 36 bytes.
    #[repr(C)]
    pub struct AcpiHeader {
        pub signature: [u8; 4],
        /// The whole table's length, header included.
        pub length: u32,
        pub revision: u8,
        /// Makes the whole table sum to 0.
        pub checksum: u8,
        pub oem_id: [u8; 6],
        pub oem_table_id: [u8; 8],
        pub oem_revision: u32,
        pub creator_id: [u8; 4],
        pub creator_revision: u32,
    }
}

le_struct! {
    /// The MADT's fixed part after the header.
    #[repr(C)]
    pub struct MadtFixed {
        /// Local APIC MMIO address.
        pub local_apic_address: u32,
        /// `PCAT_COMPAT` (bit 0) when 8259s are present; 0 here.
        pub flags: u32,
    }
}

le_struct! {
    /// MADT Processor Local APIC structure (type 0), 8 bytes.
    #[repr(C)]
    pub struct MadtLocalApic {
        /// 0.
        pub kind: u8,
        /// 8.
        pub length: u8,
        pub processor_uid: u8,
        pub apic_id: u8,
        /// Bit 0: enabled.
        pub flags: u32,
    }
}
