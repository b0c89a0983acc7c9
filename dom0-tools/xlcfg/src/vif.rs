//! Network interface specifications, per xl-network-configuration(5).

use std::fmt;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parse `xx:xx:xx:xx:xx:xx`; rejects multicast and all-zero addresses.
    pub fn parse(s: &str) -> Result<MacAddr, &'static str> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 {
                return Err("expected exactly six colon-separated pairs of hex digits");
            }
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(
                    "expected six colon-separated pairs of hex digits, e.g. 00:16:3e:12:34:56",
                );
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| "bad hex digit")?;
            n += 1;
        }
        if n != 6 {
            return Err("expected exactly six colon-separated pairs of hex digits");
        }
        if out[0] & 1 != 0 {
            return Err(
                "the multicast bit (bit 0 of the first byte) is set; a NIC needs a unicast address",
            );
        }
        if out == [0; 6] {
            return Err("the all-zero address is not usable");
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VifType {
    /// Emulated device plus PV device (HVM only).
    Ioemu,
    /// PV device only.
    Vif,
}

/// Outgoing traffic limit: `bytes_per_interval` bytes every `interval_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VifRate {
    pub bytes_per_sec: u64,
    pub interval_us: u64,
}

impl VifRate {
    /// Credit replenished every interval, as netback uses it.
    pub fn bytes_per_interval(&self) -> u64 {
        ((self.bytes_per_sec as u128 * self.interval_us as u128) / 1_000_000) as u64
    }

    /// Parse `RATE/s[@INTERVAL]`, e.g. `10Mb/s`, `250KB/s`, `1MB/s@20ms`.
    pub fn parse(s: &str) -> Result<VifRate, String> {
        let (rate, interval) = match s.split_once('@') {
            Some((r, i)) => (r, Some(i)),
            None => (s, None),
        };
        let rate = rate
            .strip_suffix("/s")
            .ok_or_else(|| format!("rate '{s}' must end in '/s', e.g. 10Mb/s"))?;
        let digits = rate.bytes().take_while(u8::is_ascii_digit).count();
        let (num, unit) = rate.split_at(digits);
        let num: u64 = num
            .parse()
            .map_err(|_| format!("rate '{s}' must start with a number"))?;
        let (mult, bits) = match unit {
            "GB" => (1_000_000_000, false),
            "MB" => (1_000_000, false),
            "KB" => (1_000, false),
            "B" | "" => (1, false),
            "Gb" => (1_000_000_000, true),
            "Mb" => (1_000_000, true),
            "Kb" => (1_000, true),
            "b" => (1, true),
            _ => {
                return Err(format!(
                    "unknown rate unit '{unit}' (use GB, MB, KB, B, Gb, Mb, Kb or b)"
                ))
            }
        };
        let mut bytes_per_sec = num
            .checked_mul(mult)
            .ok_or_else(|| format!("rate '{s}' is too large"))?;
        if bits {
            bytes_per_sec /= 8;
        }
        if bytes_per_sec == 0 {
            return Err(format!("rate '{s}' is zero"));
        }
        let interval_us = match interval {
            None => 50_000,
            Some(i) => {
                let digits = i.bytes().take_while(u8::is_ascii_digit).count();
                let (n, unit) = i.split_at(digits);
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("interval '{i}' must start with a number"))?;
                let mult = match unit {
                    "s" => 1_000_000,
                    "ms" => 1_000,
                    "us" | "" => 1,
                    _ => return Err(format!("unknown interval unit '{unit}' (use s, ms or us)")),
                };
                let us = n
                    .checked_mul(mult)
                    .ok_or_else(|| format!("interval '{i}' is too large"))?;
                if us == 0 || us > u32::MAX as u64 {
                    return Err(format!("interval '{i}' is out of range"));
                }
                us
            }
        };
        Ok(VifRate {
            bytes_per_sec,
            interval_us,
        })
    }
}

/// One parsed `vif=[...]` entry. `None` means "xl default".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VifSpec {
    pub mac: Option<MacAddr>,
    pub bridge: Option<String>,
    pub gatewaydev: Option<String>,
    pub vif_type: Option<VifType>,
    pub model: Option<String>,
    pub vifname: Option<String>,
    pub script: Option<String>,
    pub ip: Option<String>,
    pub backend: Option<String>,
    pub rate: Option<VifRate>,
    pub devid: Option<u32>,
    pub mtu: Option<u32>,
    pub trusted: Option<bool>,
    /// Keys present in the spec that keel does not know (reported as warnings).
    pub unknown_options: Vec<String>,
}

/// Why a vifspec was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VifError {
    Mac { value: String, reason: &'static str },
    Other(String),
}

impl fmt::Display for VifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VifError::Mac { value, reason } => write!(f, "invalid MAC address {value:?}: {reason}"),
            VifError::Other(s) => f.write_str(s),
        }
    }
}

/// Parse one vifspec (`''` is a valid, all-default interface).
pub fn parse_vif_spec(spec: &str) -> Result<VifSpec, VifError> {
    let mut v = VifSpec::default();
    let mut seen: Vec<&str> = Vec::new();
    for param in spec.split(',') {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (k, val) = match param.split_once('=') {
            Some((k, val)) => (k.trim(), val.trim()),
            None => match param {
                "trusted" | "untrusted" => {
                    v.trusted = Some(param == "trusted");
                    continue;
                }
                _ => {
                    return Err(VifError::Other(format!(
                        "'{param}' is not a key=value pair (e.g. bridge=xenbr0)"
                    )))
                }
            },
        };
        if seen.contains(&k) {
            return Err(VifError::Other(format!("'{k}' given more than once")));
        }
        seen.push(k);
        let s = || (!val.is_empty()).then(|| val.to_string());
        let num = |lo: u32, hi: u32| -> Result<u32, VifError> {
            match val.parse::<u32>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(VifError::Other(format!(
                    "'{k}={val}' must be a number from {lo} to {hi}"
                ))),
            }
        };
        match k {
            "mac" => {
                v.mac = Some(MacAddr::parse(val).map_err(|reason| VifError::Mac {
                    value: val.to_string(),
                    reason,
                })?)
            }
            "bridge" => v.bridge = s(),
            "gatewaydev" | "netdev" => v.gatewaydev = s(),
            "type" => {
                v.vif_type = match val {
                    "ioemu" => Some(VifType::Ioemu),
                    "vif" | "netfront" => Some(VifType::Vif),
                    _ => {
                        return Err(VifError::Other(format!(
                            "unknown vif type '{val}' (expected ioemu or vif)"
                        )))
                    }
                }
            }
            "model" => v.model = s(),
            "vifname" => v.vifname = s(),
            "script" => v.script = s(),
            "ip" => v.ip = s(),
            "backend" => v.backend = s(),
            "rate" => v.rate = Some(VifRate::parse(val).map_err(VifError::Other)?),
            "devid" => v.devid = Some(num(0, 65535)?),
            "mtu" => v.mtu = Some(num(68, 65535)?),
            _ => v.unknown_options.push(k.to_string()),
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_man_examples() {
        let v = parse_vif_spec("mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0").unwrap();
        assert_eq!(v.mac.unwrap().to_string(), "00:16:3e:74:3d:76");
        assert_eq!(v.model.as_deref(), Some("rtl8139"));
        assert_eq!(v.bridge.as_deref(), Some("xenbr0"));
        assert_eq!(parse_vif_spec("").unwrap(), VifSpec::default());
        let v = parse_vif_spec(
            " type=vif, vifname=web0 ,ip=10.0.0.2, mtu=9000, devid=3, untrusted, accel=x",
        )
        .unwrap();
        assert_eq!(v.vif_type, Some(VifType::Vif));
        assert_eq!(
            (v.mtu, v.devid, v.trusted),
            (Some(9000), Some(3), Some(false))
        );
        assert_eq!(v.unknown_options, vec!["accel"]);
    }

    #[test]
    fn rates() {
        let r = VifRate::parse("10Mb/s").unwrap();
        assert_eq!(r.bytes_per_sec, 1_250_000);
        assert_eq!(r.interval_us, 50_000);
        assert_eq!(VifRate::parse("250KB/s").unwrap().bytes_per_sec, 250_000);
        let r = VifRate::parse("1MB/s@20ms").unwrap();
        assert_eq!((r.bytes_per_interval(), r.interval_us), (20_000, 20_000));
        for bad in [
            "10Mb",
            "x/s",
            "10XB/s",
            "0B/s",
            "1MB/s@0ms",
            "1MB/s@3h",
            "99999999999999GB/s",
        ] {
            assert!(VifRate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_macs() {
        for bad in [
            "00:16:3e:00:00",
            "00:16:3e:00:00:00:01",
            "0:16:3e:0:0:0",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "zz:16:3e:00:00:01",
            "00-16-3e-00-00-01",
        ] {
            assert!(MacAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_vif_spec("mac=01:00:5e:00:00:01"),
            Err(VifError::Mac { .. })
        ));
        assert!(parse_vif_spec("bridge").is_err());
        assert!(parse_vif_spec("type=tap").is_err());
        assert!(parse_vif_spec("mtu=10").is_err());
    }
}
