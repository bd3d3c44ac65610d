//! The `lake` binary: the library's command line with the built-in Rust models.

/// mimalloc, not the system allocator: the models build and drop many short-lived Arrow and
/// Polars buffers on every thread, which glibc's malloc hands back to the kernel and faults in
/// again. Built without its transparent-huge-page advice (`no_thp`), see [`main`].
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // No transparent huge pages for this process, whatever the system's setting: each fault
    // on one zeroes 2 MiB, and freed memory is faulted in again, which cost entity resolution
    // at 1.3M records 11 of its 28 seconds (in the kernel, clearing pages).
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of the calling process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let registry = lake::builtins::registry();
    std::process::exit(lake::cli::main_with(registry, keep_freed_memory));
}

/// For a batch command (see `lake::cli::main_with`): mimalloc keeps the memory freed for the
/// rest of the run (`purge_delay` -1) instead of handing it back to the kernel a second after
/// it is freed (`madvise`, a TLB shootdown on every core) and faulting it in again, zeroed,
/// when the next model needs it. The demo's full model build at 1M orders: half the page
/// faults (1.0M to 0.5M), about 2 s less in the kernel, peak memory within 10%. Left alone
/// when `MIMALLOC_PURGE_DELAY` is set, or when the option is not at its default (another
/// mimalloc version numbering its options differently).
fn keep_freed_memory() {
    // mimalloc.h (v3, libmimalloc-sys 0.1.49): `mi_option_purge_delay` is option 15; options.c
    // sets its default, 1000 (ms).
    const PURGE_DELAY: std::ffi::c_int = 15;
    unsafe extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: called before any other thread starts (mi_option_set is not thread safe); both
    // only read or write one option of the allocator linked into this binary.
    unsafe {
        if mi_option_get(PURGE_DELAY) == 1000 {
            mi_option_set(PURGE_DELAY, -1);
        }
    }
}
