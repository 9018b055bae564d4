//! Process-wide settings made once at start.

/// Raises the soft limit on open files to the hard limit, so that a flood of
/// connections to one frontend (each bounded on its own) cannot exhaust descriptors the
/// others and the health checks need. Returns the limit in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Whether accept(2) failed for the new connection's own sake (it was consumed: retrying
/// at once cannot spin), as both accept loops (HTTP and DNS over TCP) must tell apart.
/// Anything else (EMFILE, ENFILE, ENOBUFS, ENOMEM, or an error not known here) is a
/// shortage to back off from.
pub fn accept_failed_for_the_connection(error: &std::io::Error) -> bool {
    // accept(2) on Linux: "already-pending network errors on the new socket" (ETIMEDOUT
    // among them), connections the firewall refused, and interruptions.
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT
                | libc::EINTR
                | libc::EAGAIN
        )
    )
}
