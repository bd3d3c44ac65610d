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
    std::process::exit(lake::cli::main_with_registry(registry));
}
