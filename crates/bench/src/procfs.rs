//! What `/proc` says about a server process: CPU time spent (utime + stime of all its
//! threads, not of its reaped children) and resident memory (VmRSS, VmHWM).

use anyhow::{Context, Result, anyhow};

/// User + system CPU seconds the process `pid` has used so far, all threads included.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = cpu_ticks(&stat).ok_or_else(|| anyhow!("{path}: unexpected format"))?;
    let per_second = rustix::param::clock_ticks_per_second();
    Ok(ticks as f64 / per_second as f64)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// is in parentheses and may contain spaces, so fields are counted after the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS in bytes: resident now.
    pub rss: u64,
    /// VmHWM in bytes: the peak resident size so far.
    pub hwm: u64,
}

/// VmRSS and VmHWM of `pid` from `/proc/PID/status`.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field =
        |name: &str| kib_field(&status, name).ok_or_else(|| anyhow!("{path}: no {name} line"));
    Ok(Memory {
        rss: field("VmRSS")? * 1024,
        hwm: field("VmHWM")? * 1024,
    })
}

/// The value of a `NAME:   123 kB` line, in KiB.
fn kib_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() -> Result<()> {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        let status = "Name:\trexec\nVmHWM:\t   20480 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(kib_field(status, "VmRSS"), Some(8192));
        assert_eq!(kib_field(status, "VmHWM"), Some(20480));
        let own = memory(std::process::id())?;
        assert!(own.rss > 0 && own.hwm >= own.rss);
        assert!(cpu_seconds(std::process::id())? >= 0.0);
        Ok(())
    }
}
