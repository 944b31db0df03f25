//! What the tables report about the machine and the processes, read from `/proc`: the
//! machine line, a process's RSS and CPU time, the kernel's network drop and retransmission
//! counters; and the open-files limit every connection needs.

use std::fs;
use std::time::{Duration, Instant};

use crate::{LoadgenError, Result};

/// The machine, for the record: cores, memory, and the load average when the run starts
/// (other work on the same cores moves latency numbers).
pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: Option<u64> = fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "machine: {cores} cores, {} GiB memory, load average {} at start",
        mem_kib.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0 / 1024.0)),
        load.join(" ")
    )
}

/// Resident set size of a process, KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A KiB field of `/proc/PID/status` (`VmRSS`; its parts `RssAnon`, the heap and stacks, and
/// `RssFile`, the binary's and libraries' pages read in; proc(5)).
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time a process has used, seconds (`utime + stime` of `/proc/PID/stat`, fields 14 and
/// 15, in clock ticks; proc(5)).
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field 14 is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let tck = if tck > 0 { tck as f64 } else { 100.0 };
    Some((utime + stime) as f64 / tck)
}

/// CPU use of the server and of this process over `window`, % of one core each.
pub(crate) async fn cpu_percent(server_pid: u32, window: Duration) -> (Option<f64>, Option<f64>) {
    let sp = server_pid.to_string();
    let s0 = cpu_seconds(&sp);
    let m0 = cpu_seconds("self");
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let dt = t0.elapsed().as_secs_f64();
    let pct = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / dt * 100.0);
    (pct(s0, cpu_seconds(&sp)), pct(m0, cpu_seconds("self")))
}

/// The hard `RLIMIT_NOFILE` of this process, if `getrlimit` answers.
pub(crate) fn fd_hard_limit() -> Option<u64> {
    nofile().ok().map(|(_, hard)| hard)
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `needed` (children inherit it).
///
/// # Errors
/// [`LoadgenError::FdLimit`] when the hard limit is below `needed`; [`LoadgenError::Io`] when
/// the system call fails.
pub(crate) fn raise_fd_limit(needed: u64) -> Result<u64> {
    let (cur, hard) = nofile()?;
    if cur >= needed {
        return Ok(cur);
    }
    if hard < needed {
        return Err(LoadgenError::FdLimit { needed, hard });
    }
    set_nofile_soft(needed, hard)?;
    Ok(needed)
}

/// This process's `RLIMIT_NOFILE`: (soft, hard).
fn nofile() -> Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(LoadgenError::Io {
            what: "getrlimit(RLIMIT_NOFILE)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Sets the soft `RLIMIT_NOFILE` to `soft`, keeping the hard limit `hard`.
fn set_nofile_soft(soft: u64, hard: u64) -> Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own; a soft limit up to the hard one needs no
    // privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(LoadgenError::Io {
            what: format!("setrlimit(RLIMIT_NOFILE, {soft})"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Machine-wide network counters: packets dropped at the per-CPU input backlog (column 2 of
/// `/proc/net/softnet_stat`, summed over CPUs; the queue is `net.core.netdev_max_backlog`
/// long) and TCP segments retransmitted (`RetransSegs` of `/proc/net/snmp`). On loopback a
/// dropped packet is resent after TCP's retransmission timeout (RFC 6298; Linux's floor,
/// `TCP_RTO_MIN`, is 200 ms) unless a tail-loss probe catches it first, so a step with drops
/// can show latency spikes that come from the kernel's queue, whichever relay runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NetCounters {
    pub(crate) drops: u64,
    pub(crate) retrans: u64,
}

impl NetCounters {
    pub(crate) fn read() -> Option<Self> {
        let softnet = fs::read_to_string("/proc/net/softnet_stat").ok()?;
        let mut drops = 0;
        for line in softnet.lines() {
            drops += u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()?;
        }
        let snmp = fs::read_to_string("/proc/net/snmp").ok()?;
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next()?, tcp.next()?);
        let i = names.split_whitespace().position(|n| n == "RetransSegs")?;
        let retrans = values.split_whitespace().nth(i)?.parse().ok()?;
        Some(NetCounters { drops, retrans })
    }

    pub(crate) fn since(self, before: Self) -> Self {
        NetCounters {
            drops: self.drops.saturating_sub(before.drops),
            retrans: self.retrans.saturating_sub(before.retrans),
        }
    }
}

/// Open file descriptors of a process (entries of `/proc/PID/fd`; needs the same user).
pub(crate) fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The 1-minute load average (`/proc/loadavg`), for the line of each figure.
pub(crate) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Sets this process's soft `RLIMIT_NOFILE` to `soft` (at most the hard limit); returns the
/// soft limit it had. A child started in between inherits `soft`, as under `ulimit -n soft`.
///
/// # Errors
/// [`LoadgenError::Io`] when a system call fails.
pub(crate) fn set_fd_soft_limit(soft: u64) -> Result<u64> {
    let (before, hard) = nofile()?;
    set_nofile_soft(soft.min(hard), hard)?;
    Ok(before)
}
