//! Hands memory that the process has freed back to the system. glibc keeps
//! freed heap in per-thread arenas; after a large job the daemon would keep
//! each worker's high-water mark for good, so two 200,000-row jobs run on two
//! workers one after the other held 74 MiB where either alone peaks at 60.
//! Called between large phases (after a task, before planning a TAR.GZ). A
//! leaf: depends on nothing of ours.

/// Returns free heap pages of every arena to the kernel (glibc only; a no-op
/// elsewhere). Costs a walk over the free lists: call it between tasks, not per entry.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
