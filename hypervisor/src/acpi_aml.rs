//! Just enough AML to power off: the `\_S5_` sleep-type values.
//!
//! ACPI soft-off writes SLP_TYPa/SLP_TYPb (from the DSDT's `_S5_` package)
//! with SLP_EN into PM1a/PM1b_CNT. keel has no AML interpreter; like most
//! small kernels it finds the `_S5_` name and decodes the package that
//! follows. Plain code, tested on the host.

/// SLP_TYPa and SLP_TYPb for S5, or `None` if the table has no usable `_S5_`.
pub fn s5_sleep_types(aml: &[u8]) -> Option<(u8, u8)> {
    let pos = aml.windows(4).position(|w| w == b"_S5_")?;
    // Must be a NameOp (0x08), possibly with a root/parent prefix before the name.
    let named = (pos >= 1 && aml[pos - 1] == 0x08)
        || (pos >= 2 && aml[pos - 2] == 0x08 && aml[pos - 1] == b'\\');
    if !named {
        return None;
    }
    let mut i = pos + 4;
    if *aml.get(i)? != 0x12 {
        return None; // PackageOp
    }
    i += 1;
    // PkgLength: the top two bits of the lead byte count the extra bytes.
    let extra = (aml.get(i)? >> 6) as usize;
    i += 1 + extra;
    i += 1; // NumElements
    let mut vals = [0u8; 2];
    for v in vals.iter_mut() {
        *v = match *aml.get(i)? {
            0x00 => {
                i += 1;
                0
            } // ZeroOp
            0x01 => {
                i += 1;
                1
            } // OneOp
            0x0a => {
                i += 2;
                *aml.get(i - 1)?
            } // BytePrefix
            0x0b => {
                i += 3;
                *aml.get(i - 2)?
            } // WordPrefix (low byte)
            0xff => {
                i += 1;
                0xff
            } // OnesOp
            _ => return None,
        };
    }
    Some((vals[0] & 7, vals[1] & 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_style_s5() {
        // Name(_S5, Package(4) { Zero, Zero, Zero, Zero })
        let aml = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(s5_sleep_types(&aml), Some((0, 0)));
    }

    #[test]
    fn byte_prefixed_and_rooted() {
        // Name(\_S5, Package() { 0x05, 0x05, ... })
        let aml = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x0a, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0, 0,
        ];
        assert_eq!(s5_sleep_types(&aml), Some((5, 5)));
        let aml = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x40, 0x01, 0x02, 0x01, 0x0a, 0x07,
        ];
        assert_eq!(s5_sleep_types(&aml), Some((1, 7)));
    }

    #[test]
    fn absent_or_truncated() {
        assert_eq!(s5_sleep_types(b"no sleep states here"), None);
        assert_eq!(
            s5_sleep_types(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x06]),
            None
        );
        assert_eq!(
            s5_sleep_types(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a]),
            None
        );
        // A reference to _S5_ that is not its definition.
        assert_eq!(
            s5_sleep_types(&[0x70, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0]),
            None
        );
    }
}
