//! How muster's threads share a core: answering queries comes first.
//!
//! The UDP fast path's threads answer queries in batches; the tokio runtime's threads do
//! everything else (the HTTP APIs, sources, health checks, the registry writer). When both
//! run on one core, a woken runtime thread preempts a UDP thread in the middle of a batch,
//! and the pipeline of queries in flight breaks. The kernel never lets a `SCHED_BATCH`
//! thread preempt on wake-up but still gives it its fair share of the core, so a change
//! waits at most until the UDP thread blocks or its time slice ends. Under 1,000 REST
//! changes/s during saturation runs (`bench/dns/run --servers muster --churn 1000
//! --repeat 3`, run after run): QPS fell 18.8%, 12.0% and 3.9% with the runtime on
//! `SCHED_OTHER`, 11.2%, −2.2%, 9.2% and 8.3% on `SCHED_BATCH` (the machine's noise is
//! about as large); writes were answered in p50 2.5–5 ms either way.

/// Marks the calling thread as control-plane work (`SCHED_BATCH`); for every thread of
/// muster's tokio runtime.
pub fn control_plane() {
    set_policy(libc::SCHED_BATCH);
}

/// Marks the calling thread as answering queries (`SCHED_OTHER`, the default), which it
/// would otherwise inherit from the runtime thread that spawned it.
pub fn answering() {
    set_policy(libc::SCHED_OTHER);
}

fn set_policy(policy: libc::c_int) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread, and `param` outlives the call. Neither policy
    // needs a privilege; if the call fails anyway, the thread keeps its policy, which costs
    // throughput under load and nothing else.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        tracing::debug!(policy, error = %std::io::Error::last_os_error(), "cannot set the scheduling policy");
    }
}
