//! Disk pressure, as the kubelet's `DiskPressure` condition: the free space
//! of the file system under the agent's data folder (modules, compiled
//! code, logs, volumes, the node's buckets) against a threshold. The agent
//! reports it with every heartbeat; the scheduler places nothing new on a
//! node under pressure (what runs there keeps running), so the disk is not
//! filled by new instances before the operator frees space.

use std::path::Path;

/// Free space below which a node has disk pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// An amount of bytes (`1Gi`).
    Bytes(u64),
    /// A percentage of the file system's size (`10%`, as the kubelet's
    /// `nodefs.available<10%`).
    Percent(u8),
}

impl Default for Threshold {
    /// 1 GiB: small enough for an edge device's card, and a build machine
    /// at 90% full still schedules.
    fn default() -> Self {
        Threshold::Bytes(1 << 30)
    }
}

impl std::str::FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(percent) = text.strip_suffix('%') {
            return match percent.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Threshold::Percent(p)),
                _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
            };
        }
        flotilla_spec::parse_memory_bytes(text)
            .map(Threshold::Bytes)
            .map_err(|e| format!("{text:?} is neither a size (1Gi) nor a percentage (10%): {e}"))
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Bytes(bytes) => write!(f, "{} MiB", bytes >> 20),
            Threshold::Percent(percent) => write!(f, "{percent}% of the disk"),
        }
    }
}

/// Free and total bytes of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged process may still write.
    pub available: u64,
    /// The file system's size.
    pub total: u64,
}

impl DiskSpace {
    /// The space of the file system holding `dir`.
    pub fn of(dir: &Path) -> std::io::Result<Self> {
        let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
        let block = stat.fragment_size() as u64;
        Ok(Self {
            available: (stat.blocks_available() as u64).saturating_mul(block),
            total: (stat.blocks() as u64).saturating_mul(block),
        })
    }

    /// Whether the free space is below `threshold`.
    pub fn under(&self, threshold: Threshold) -> bool {
        match threshold {
            Threshold::Bytes(bytes) => self.available < bytes,
            Threshold::Percent(percent) => {
                // available / total < percent / 100, in integers.
                u128::from(self.available) * 100 < u128::from(self.total) * u128::from(percent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_judge() {
        assert_eq!("1Gi".parse(), Ok(Threshold::Bytes(1 << 30)));
        assert_eq!("10%".parse(), Ok(Threshold::Percent(10)));
        assert!("101%".parse::<Threshold>().is_err());
        assert!("lots".parse::<Threshold>().is_err());
        let space = DiskSpace {
            available: 9,
            total: 100,
        };
        assert!(space.under(Threshold::Percent(10)));
        assert!(!space.under(Threshold::Percent(9)));
        assert!(space.under(Threshold::Bytes(10)));
        assert!(!space.under(Threshold::Bytes(9)));
        assert!(!space.under(Threshold::Percent(0)), "0% never");
        let here = DiskSpace::of(Path::new(".")).unwrap();
        assert!(here.total > 0 && here.available <= here.total);
        assert!(here.under(Threshold::Percent(100)) || here.available == here.total);
    }
}
