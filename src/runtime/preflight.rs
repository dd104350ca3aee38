//! Start-up checks that turn would-be panics deep in the runtime into one clear line:
//! io_uring availability, RLIMIT_MEMLOCK, and the CPUs this process may use.

use std::fmt;

#[derive(Debug)]
pub enum PreflightError {
    IoUringUnavailable(String),
    MemlockTooLow { have: u64, need: u64 },
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreflightError::IoUringUnavailable(why) => write!(
                f,
                "io_uring is unavailable ({why}): check kernel.io_uring_disabled and the seccomp profile \
                 (Docker's default blocks io_uring; run with --security-opt seccomp=unconfined or a profile that allows it)"
            ),
            PreflightError::MemlockTooLow { have, need } => write!(
                f,
                "RLIMIT_MEMLOCK is {have} bytes but io_uring needs at least {need}: raise it (ulimit -l, \
                 LimitMEMLOCK= in systemd, --ulimit memlock=-1 in Docker)"
            ),
        }
    }
}

/// Locked memory each executor's rings need, with the small `io_memory` we configure.
pub const MEMLOCK_PER_EXECUTOR: u64 = 512 * 1024;

/// Checks that an io_uring instance can be created.
pub fn check_io_uring() -> Result<(), PreflightError> {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if v.trim() == "2" {
            return Err(PreflightError::IoUringUnavailable(
                "kernel.io_uring_disabled = 2".into(),
            ));
        }
    }
    // struct io_uring_params is 120 bytes; zeroed means default parameters.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, which is large enough.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let why = match e.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no io_uring".to_string(),
            Some(libc::EPERM) => {
                "permission denied: blocked by seccomp or kernel.io_uring_disabled".to_string()
            }
            _ => e.to_string(),
        };
        return Err(PreflightError::IoUringUnavailable(why));
    }
    // SAFETY: fd is a descriptor we just created and own.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Raises the soft RLIMIT_MEMLOCK to the hard limit and checks it covers `executors`.
/// Root (CAP_IPC_LOCK) is exempt from the limit.
pub fn check_memlock(executors: usize) -> Result<(), PreflightError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Ok(());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: raising the soft limit up to the hard limit is always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let need = MEMLOCK_PER_EXECUTOR * executors as u64;
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        return Err(PreflightError::MemlockTooLow {
            have: lim.rlim_cur,
            need,
        });
    }
    Ok(())
}

/// The CPUs this process may run on (its affinity mask, which a cgroup cpuset narrows).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The cgroup v2 CPU quota in whole CPUs (rounded up), if one is set.
pub fn cgroup_cpu_quota() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok()?;
    parse_cpu_max(&text)
}

fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: u64 = it.next()?.parse().ok()?;
    if quota == "max" || period == 0 {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    Some((quota.div_ceil(period)).max(1) as usize)
}

/// The default worker count: one per allowed CPU, capped by the cgroup quota.
pub fn default_concurrency() -> usize {
    let cpus = allowed_cpus().len().max(1);
    cgroup_cpu_quota().map_or(cpus, |q| q.min(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parsing() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert!(!allowed_cpus().is_empty());
        assert!(default_concurrency() >= 1);
    }
}
