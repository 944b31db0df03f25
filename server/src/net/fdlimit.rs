//! The process's open-file limit (`RLIMIT_NOFILE`): every connection is a file descriptor,
//! and the common soft default of 1,024 stops a server at about a thousand connections while
//! the hard limit (what an unprivileged process may raise itself to) is often far higher.

/// The open-file limits, before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit found at start.
    pub soft_before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the most the soft limit can be raised to without privileges).
    pub hard: u64,
}

/// Why the limit could not be read or raised.
#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    /// `getrlimit` failed.
    #[error("cannot read the open-file limit: {0}")]
    Read(#[source] std::io::Error),
    /// `setrlimit` failed (the soft limit stays as it was).
    #[error("cannot raise the open-file limit from {soft} to {hard}: {source}")]
    Raise {
        /// The soft limit, unchanged.
        soft: u64,
        /// The hard limit asked for.
        hard: u64,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// Raises the soft open-file limit to the hard one (POSIX `getrlimit`/`setrlimit`).
///
/// # Errors
/// [`FdLimitError`] when the limit cannot be read or set (e.g. on macOS a hard limit of
/// "unlimited" is refused as a soft limit).
#[cfg(unix)]
pub fn raise_open_file_limit() -> Result<OpenFileLimit, FdLimitError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(FdLimitError::Read(std::io::Error::last_os_error()));
    }
    // `rlim_t` is `u64` on Linux and macOS, narrower on some other systems.
    #[allow(clippy::useless_conversion)]
    let (soft_before, hard) = (u64::from(limit.rlim_cur), u64::from(limit.rlim_max));
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid `rlimit` for the duration of the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(FdLimitError::Raise {
                soft: soft_before,
                hard,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(OpenFileLimit {
        soft_before,
        soft: hard,
        hard,
    })
}

/// Not a POSIX system: nothing to raise.
///
/// # Errors
/// Always [`FdLimitError::Read`] (unsupported).
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> Result<OpenFileLimit, FdLimitError> {
    Err(FdLimitError::Read(std::io::Error::from(
        std::io::ErrorKind::Unsupported,
    )))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let limit = raise_open_file_limit().expect("rlimit");
        assert_eq!(limit.soft, limit.hard);
        assert!(limit.soft_before <= limit.soft);
        assert_eq!(
            raise_open_file_limit().expect("rlimit").soft_before,
            limit.hard
        );
    }
}
