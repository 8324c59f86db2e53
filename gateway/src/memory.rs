//! Handing memory back to the system after a burst.
//!
//! The gateway allocates with mimalloc (`main.rs`), which keeps a thread's freed pages for
//! reuse and purges them lazily, when that thread next allocates. A proxy thread that served a
//! flood and then went quiet never does, so the flood's peak stayed in the resident set
//! (39 MB before a 60 s flood, 45 MB after; `benches/RESULTS.md`). Purging at once
//! (`MIMALLOC_PURGE_DELAY=0`) fixes that but cost ~20% of the proxy's throughput in a quick
//! A/B, so instead each proxy thread collects its own heap once, a couple of seconds after its
//! connections stop ending ([`crate::connections`] counts them per thread).

/// Free what this thread's heap holds unused (and abandoned segments) back to the system.
pub fn collect_this_thread() {
    // SAFETY: `mi_collect` takes no pointers and only walks the calling thread's own heap;
    // without mimalloc as the global allocator (tests) that heap is empty and it does nothing.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
