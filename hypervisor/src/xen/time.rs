//! The PV clock: how a guest turns TSC ticks into nanoseconds from the
//! `vcpu_time_info` keel publishes (Xen's `set_time_scale`, written anew).
//!
//! `ns = ((tsc - tsc_timestamp) shifted by tsc_shift) * tsc_to_system_mul >> 32`
//! plus `system_time`. The shift brings the tick rate into (1 GHz, 2 GHz]
//! so the 32-bit fraction keeps its precision.

use super::abi::VcpuTimeInfo;

/// PVCLOCK_TSC_STABLE_BIT: the TSC is synchronised and constant-rate.
pub const TSC_STABLE: u8 = 1 << 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeScale {
    pub mul: u32,
    pub shift: i8,
}

impl TimeScale {
    pub fn from_hz(hz: u64) -> Self {
        const NS: u64 = 1_000_000_000;
        let mut tps = hz.max(1);
        let mut shift: i8 = 0;
        while tps > 2 * NS {
            tps >>= 1;
            shift -= 1;
        }
        while tps <= NS {
            tps <<= 1;
            shift += 1;
        }
        TimeScale {
            mul: ((NS << 32) / tps) as u32,
            shift,
        }
    }

    /// Nanoseconds for `delta` ticks, exactly as a guest computes them.
    pub fn ns(&self, delta: u64) -> u64 {
        let d = if self.shift < 0 {
            delta >> -self.shift
        } else {
            delta << self.shift
        };
        ((d as u128 * self.mul as u128) >> 32) as u64
    }
}

/// Publishes a new time record: version odd while writing, even after
/// (the guest retries while it is odd or changed).
pub fn publish(t: &mut VcpuTimeInfo, scale: TimeScale, tsc: u64, system_time_ns: u64) {
    t.version = t.version.wrapping_add(1) | 1;
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    t.tsc_timestamp = tsc;
    t.system_time = system_time_ns;
    t.tsc_to_system_mul = scale.mul;
    t.tsc_shift = scale.shift;
    t.flags = TSC_STABLE;
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    t.version = t.version.wrapping_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_of_ticks_is_one_second() {
        for hz in [
            100_000_000u64,
            760_000_000,
            999_999_999,
            1_000_000_000,
            2_606_879_000,
            4_035_935_000,
            5_000_000_000,
        ] {
            let s = TimeScale::from_hz(hz);
            let ns = s.ns(hz);
            assert!(
                ns.abs_diff(1_000_000_000) <= 2,
                "{hz} Hz: 1 s of ticks gave {ns} ns ({s:?})"
            );
            // a tenth of a second too
            assert!(s.ns(hz / 10).abs_diff(100_000_000) <= 2);
        }
    }

    #[test]
    fn scale_matches_xen_for_a_known_rate() {
        // 2 GHz needs no shift; 1 GHz is doubled (shift 1) so mul stays a fraction.
        assert_eq!(
            TimeScale::from_hz(2_000_000_000),
            TimeScale {
                mul: 0x8000_0000,
                shift: 0
            }
        );
        assert_eq!(
            TimeScale::from_hz(1_000_000_000),
            TimeScale {
                mul: 0x8000_0000,
                shift: 1
            }
        );
        assert_eq!(TimeScale::from_hz(4_000_000_000).shift, -1);
    }

    #[test]
    fn publish_leaves_an_even_version() {
        let mut t = VcpuTimeInfo {
            version: 0,
            pad0: 0,
            tsc_timestamp: 0,
            system_time: 0,
            tsc_to_system_mul: 0,
            tsc_shift: 0,
            flags: 0,
            pad1: [0; 2],
        };
        publish(&mut t, TimeScale::from_hz(3_000_000_000), 123, 456);
        assert_eq!(t.version % 2, 0);
        assert!(t.version >= 2);
        assert_eq!(
            (t.tsc_timestamp, t.system_time, t.flags),
            (123, 456, TSC_STABLE)
        );
        let v = t.version;
        publish(&mut t, TimeScale::from_hz(3_000_000_000), 124, 457);
        assert_eq!(t.version, v + 2);
    }
}
