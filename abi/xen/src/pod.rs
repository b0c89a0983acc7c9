//! [`Pod`]: fixed-size values that go to and from guest bytes by explicit
//! little-endian field encoding (no casts, no `unsafe`).

use core::mem::size_of;

/// A plain-old-data ABI value: a fixed number of bytes, every bit pattern
/// valid, encoded field by field in little-endian order at its C offsets.
///
/// Implemented here for the integer types, arrays of `Pod` values and
/// [`GuestHandle`](crate::GuestHandle); the crate's structs get it from
/// their definition macro, which also checks at compile time that every
/// field's encoded size equals its in-memory size (so no encoding can run
/// past [`Pod::SIZE`]).
///
/// The encoded form equals the C object's memory image on x86_64, except
/// that padding bytes are always zero: encoding never leaks whatever a
/// Rust value's padding happened to hold, and decoding ignores padding.
pub trait Pod: Copy {
    /// Encoded size in bytes; equal to `size_of::<Self>()`.
    const SIZE: usize;

    /// The all-zero value.
    fn zeroed() -> Self;

    /// Encodes into `out[..SIZE]`, leaving padding bytes untouched.
    /// Implementation detail of the encoders: panics if `out` is shorter
    /// than [`Pod::SIZE`]; use [`Pod::write_to`] instead.
    #[doc(hidden)]
    fn put_le(&self, out: &mut [u8]);

    /// Decodes from `b[..SIZE]`. Implementation detail of the decoders:
    /// panics if `b` is shorter than [`Pod::SIZE`]; use
    /// [`Pod::from_bytes`] or [`Pod::from_prefix`] instead.
    #[doc(hidden)]
    fn get_le(b: &[u8]) -> Self;

    /// Decodes exactly [`Pod::SIZE`] bytes; `None` for any other length.
    fn from_bytes(b: &[u8]) -> Option<Self> {
        (b.len() == Self::SIZE).then(|| Self::get_le(b))
    }

    /// Decodes the first [`Pod::SIZE`] bytes of `b`; `None` if `b` is
    /// shorter.
    fn from_prefix(b: &[u8]) -> Option<Self> {
        (b.len() >= Self::SIZE).then(|| Self::get_le(b))
    }

    /// Encodes into the first [`Pod::SIZE`] bytes of `out` (padding
    /// bytes zeroed); `None`, writing nothing, if `out` is shorter.
    fn write_to(&self, out: &mut [u8]) -> Option<()> {
        let out = out.get_mut(..Self::SIZE)?;
        out.fill(0);
        self.put_le(out);
        Some(())
    }
}

macro_rules! pod_int {
    ($($t:ty),*) => {$(
        impl Pod for $t {
            const SIZE: usize = size_of::<$t>();
            fn zeroed() -> Self {
                0
            }
            fn put_le(&self, out: &mut [u8]) {
                out[..Self::SIZE].copy_from_slice(&self.to_le_bytes());
            }
            fn get_le(b: &[u8]) -> Self {
                let mut a = [0u8; size_of::<$t>()];
                a.copy_from_slice(&b[..Self::SIZE]);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}
pod_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl<T: Pod, const N: usize> Pod for [T; N] {
    // Arrays have no padding between elements, and every element type here
    // has SIZE == size_of (checked where the element type is defined).
    const SIZE: usize = N * T::SIZE;
    fn zeroed() -> Self {
        [T::zeroed(); N]
    }
    fn put_le(&self, out: &mut [u8]) {
        if T::SIZE == 0 {
            return;
        }
        for (v, o) in self.iter().zip(out[..Self::SIZE].chunks_mut(T::SIZE)) {
            v.put_le(o);
        }
    }
    fn get_le(b: &[u8]) -> Self {
        core::array::from_fn(|i| T::get_le(&b[i * T::SIZE..]))
    }
}
