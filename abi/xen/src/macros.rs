//! The definition macros. Every struct and constant of the crate is written
//! through them, so each one also lands in its module's layout registry
//! (`LAYOUTS`, `CONSTS`), which the header test compares against C.

/// Defines `#[repr(C)]` ABI structs (and byte-array type aliases) with their
/// [`Pod`](crate::Pod) encoding and registers each in the module's
/// `LAYOUTS` with its C name. One invocation per module.
///
/// ```text
/// pod! {
///     "struct xen_domctl_max_mem" =>
///     /// docs
///     pub struct MaxMem {
///         pub max_memkb: u64,
///         // a field whose C designator differs from its Rust name:
///         pub foreign_domid: DomId = "u.foreign_domid",
///     }
///     "xen_extraversion_t" => pub type ExtraVersion = [u8; 16];
/// }
/// ```
macro_rules! pod {
    (@acc [$($acc:expr,)*]) => {
        /// Every struct and type of this module with its C name, sizes and
        /// field offsets (checked against Xen's headers by the layout test).
        pub const LAYOUTS: &[$crate::layout::Layout] = &[$($acc,)*];
    };
    (@acc [$($acc:expr,)*]
        $c:literal => $(#[$m:meta])* $v:vis struct $name:ident {
            $( $(#[$fm:meta])* $fv:vis $f:ident : $t:ty $(= $cf:literal)? ),* $(,)?
        }
        $($rest:tt)*
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(C)]
        $v struct $name {
            $( $(#[$fm])* $fv $f: $t, )*
        }

        impl $crate::Pod for $name {
            const SIZE: usize = ::core::mem::size_of::<$name>();
            fn zeroed() -> Self {
                Self { $( $f: <$t as $crate::Pod>::zeroed(), )* }
            }
            fn put_le(&self, out: &mut [u8]) {
                $( $crate::Pod::put_le(&self.$f, &mut out[::core::mem::offset_of!($name, $f)..]); )*
            }
            fn get_le(b: &[u8]) -> Self {
                Self { $( $f: <$t as $crate::Pod>::get_le(&b[::core::mem::offset_of!($name, $f)..]), )* }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                <Self as $crate::Pod>::zeroed()
            }
        }

        impl $name {
            /// Size in bytes (the C `sizeof`).
            pub const SIZE: usize = ::core::mem::size_of::<$name>();
            /// Name, C name, size, alignment and field offsets.
            pub const LAYOUT: $crate::layout::Layout = $crate::layout::Layout {
                rust: concat!(module_path!(), "::", stringify!($name)),
                c: $c,
                size: ::core::mem::size_of::<$name>(),
                align: ::core::mem::align_of::<$name>(),
                fields: &[$(
                    $crate::layout::Field {
                        rust: stringify!($f),
                        c: pod!(@cname $f $(, $cf)?),
                        offset: ::core::mem::offset_of!($name, $f),
                        size: ::core::mem::size_of::<$t>(),
                        ty: stringify!($t),
                    },
                )*],
                reencode: $crate::layout::reencode::<$name>,
            };

            /// The encoded bytes (the C memory image, padding zeroed).
            pub fn to_bytes(&self) -> [u8; ::core::mem::size_of::<$name>()] {
                let mut b = [0u8; ::core::mem::size_of::<$name>()];
                $crate::Pod::put_le(self, &mut b);
                b
            }
        }

        // Each field encodes to exactly its in-memory size, so encoding and
        // decoding stay inside `SIZE` bytes (no slice index can panic).
        $( const _: () = assert!(
            <$t as $crate::Pod>::SIZE == ::core::mem::size_of::<$t>(),
            concat!(stringify!($name), ".", stringify!($f), ": encoded size differs from size_of")
        ); )*

        pod!(@acc [$($acc,)* $name::LAYOUT,] $($rest)*);
    };
    (@acc [$($acc:expr,)*]
        $c:literal => $(#[$m:meta])* $v:vis type $name:ident = $t:ty;
        $($rest:tt)*
    ) => {
        $(#[$m])*
        $v type $name = $t;
        pod!(@acc [$($acc,)* $crate::layout::Layout {
            rust: concat!(module_path!(), "::", stringify!($name)),
            c: $c,
            size: ::core::mem::size_of::<$t>(),
            align: ::core::mem::align_of::<$t>(),
            fields: &[],
            reencode: $crate::layout::reencode::<$t>,
        },] $($rest)*);
    };
    (@cname $f:ident) => { $crate::layout::strip_raw(stringify!($f)) };
    (@cname $f:ident, $cf:literal) => { $cf };
    (@acc [$($acc:expr,)*] $($rest:tt)*) => {
        compile_error!(concat!("pod!: expected `\"C name\" => struct ...` or `=> type ...;` at: ",
            stringify!($($rest)*)));
    };
    ($($t:tt)*) => { pod!(@acc [] $($t)*); };
}

/// Defines a C union (or an opaque byte area) as an aligned byte array with
/// typed access: `get::<T>()` decodes a member, `set(&T)` encodes one (the
/// rest zeroed). Members larger than the union are compile-time errors.
macro_rules! pod_union {
    ($(#[$m:meta])* $v:vis struct $name:ident([u8; $n:literal]), align $a:literal;) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        #[repr(C, align($a))]
        $v struct $name(pub [u8; $n]);

        impl $crate::Pod for $name {
            const SIZE: usize = $n;
            fn zeroed() -> Self {
                Self([0; $n])
            }
            fn put_le(&self, out: &mut [u8]) {
                out[..$n].copy_from_slice(&self.0);
            }
            fn get_le(b: &[u8]) -> Self {
                let mut a = [0u8; $n];
                a.copy_from_slice(&b[..$n]);
                Self(a)
            }
        }

        const _: () = assert!(::core::mem::size_of::<$name>() == $n, "union size is a multiple of its alignment");

        impl Default for $name {
            fn default() -> Self {
                Self([0; $n])
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                // The bytes up to the last non-zero one: unions are mostly empty.
                let end = self.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                write!(f, "{}({:02x?}", stringify!($name), &self.0[..end])?;
                if end < $n {
                    write!(f, " + {} zero bytes", $n - end)?;
                }
                write!(f, ")")
            }
        }

        impl $name {
            /// Size in bytes (the C union's `sizeof`).
            pub const SIZE: usize = $n;

            /// The union holding `member` (the bytes after it zero).
            pub fn new<T: $crate::Pod>(member: &T) -> Self {
                let mut u = Self([0; $n]);
                u.set(member);
                u
            }

            /// Decodes the union as `T` (one of its members).
            pub fn get<T: $crate::Pod>(&self) -> T {
                const { assert!(T::SIZE <= $n, "member larger than the union") };
                T::get_le(&self.0)
            }

            /// Encodes `member` at the start of the union and zeroes the rest.
            pub fn set<T: $crate::Pod>(&mut self, member: &T) {
                const { assert!(T::SIZE <= $n, "member larger than the union") };
                self.0 = [0; $n];
                // Cannot fail: T::SIZE <= $n was checked at compile time.
                let _ = member.write_to(&mut self.0);
            }
        }
    };
}

/// Defines `pub const`s, each with the C macro (or C expression) it mirrors,
/// and registers them in the module's `CONSTS`. One invocation per module.
///
/// ```text
/// consts! {
///     /// docs
///     CREATEDOMAIN: u32 = 1 => "XEN_DOMCTL_createdomain";
/// }
/// ```
macro_rules! consts {
    ($( $(#[$m:meta])* $name:ident : $t:ty = $val:expr => $c:literal; )*) => {
        $( $(#[$m])* pub const $name: $t = $val; )*

        /// Every constant of this module with the C expression it equals
        /// (checked against Xen's headers by the layout test).
        pub const CONSTS: &[$crate::layout::Const] = &[$(
            $crate::layout::Const {
                rust: concat!(module_path!(), "::", stringify!($name)),
                c: $c,
                value: $name as u64,
            },
        )*];
    };
}
