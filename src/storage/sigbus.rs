//! Copies to and from a spill file's memory map that survive SIGBUS.
//!
//! A map turns an I/O error of the disk under it, or a file cut short
//! underneath it, into SIGBUS at the access, which would kill the daemon
//! and every mount it serves. Copies that touch a map go through
//! [`copy`]: while one runs, a SIGBUS handler recognises a fault inside
//! that copy's map range on that thread, maps a private zero page over the
//! failing page so the copy can finish, and marks the copy failed. The
//! caller then poisons the file (EIO from then on) and discards what was
//! copied, so no request is ever answered with half-correct data; the zero
//! page stays in the map, so other readers check [`faults`] and read the
//! file itself once it has moved. A SIGBUS anywhere else goes on to the handler that was installed before (the Rust
//! runtime's, which reports stack overflows) or to the default action.

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

const PAGE: usize = 4096;

thread_local! {
    /// The map range `[start, end)` the current thread is copying from or
    /// to; `(0, 0)` outside [`copy`]. Const-initialised with no destructor,
    /// so the signal handler can read it.
    static GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Set by the handler when the guarded copy faulted.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

static INSTALL: Once = Once::new();
/// The SIGBUS action found at installation: its handler and flags.
static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREVIOUS_FLAGS: AtomicI32 = AtomicI32::new(0);
/// Pages the handler has replaced with zero pages, in any map.
static FAULTS: AtomicU64 = AtomicU64::new(0);

/// How many map pages faulted so far in this process. A replaced page
/// stays a zero page for every thread that reads the map afterwards
/// without faulting, so a map made before the count last moved may hold
/// one: readers compare the count from the map's creation with the count
/// before and after their copy, and read the file itself when it moved.
pub(crate) fn faults() -> u64 {
    FAULTS.load(Ordering::SeqCst)
}

/// Copies `src` into `dst`, one of which lies inside the file mapping of
/// `map_len` bytes at address `map_start`. Returns `false` when an access
/// to the mapping raised SIGBUS; `dst` then holds unspecified bytes.
pub(crate) fn copy(dst: &mut [u8], src: &[u8], map_start: usize, map_len: usize) -> bool {
    INSTALL.call_once(install);
    GUARD.with(|g| g.set((map_start, map_start + map_len)));
    FAULTED.with(|f| f.set(false));
    // The copy must stay between setting and clearing the guard.
    compiler_fence(Ordering::SeqCst);
    dst.copy_from_slice(src);
    compiler_fence(Ordering::SeqCst);
    GUARD.with(|g| g.set((0, 0)));
    !FAULTED.with(Cell::get)
}

fn install() {
    // SAFETY: sigaction with a zeroed, then filled struct; the handler is
    // async-signal-safe (see on_sigbus).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as Handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &action, &mut old) == 0 {
            PREVIOUS_HANDLER.store(old.sa_sigaction, Ordering::SeqCst);
            PREVIOUS_FLAGS.store(old.sa_flags, Ordering::SeqCst);
        } else {
            tracing::warn!(
                "cannot install the SIGBUS handler: {}; a spill disk error would end the daemon",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(target_os = "linux")]
unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
    // SAFETY: the kernel fills si_addr for SIGBUS.
    unsafe { (*info).si_addr() as usize }
}

#[cfg(not(target_os = "linux"))]
unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
    // SAFETY: the kernel fills si_addr for SIGBUS.
    unsafe { (*info).si_addr as usize }
}

/// Only async-signal-safe work: thread-local cells, mmap, sigaction and
/// a call of the previous handler.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: info comes from the kernel for an SA_SIGINFO handler.
    let addr = unsafe { fault_address(info) };
    let (start, end) = GUARD.try_with(Cell::get).unwrap_or((0, 0));
    if addr >= start && addr < end {
        let page = addr & !(PAGE - 1);
        // Counted before the zero page exists, so that no reader can copy
        // it and still find the count unchanged (an atomic add is
        // async-signal-safe).
        FAULTS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: replaces one page of a file mapping this thread is
        // copying through with a private zero page: the copy completes on
        // it, and its caller poisons the file and discards the result;
        // other readers of the map see FAULTS move and read the file.
        let p = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            let _ = FAULTED.try_with(|f| f.set(true));
            return;
        }
    }
    let previous = PREVIOUS_HANDLER.load(Ordering::SeqCst);
    if previous == libc::SIG_DFL || previous == libc::SIG_IGN {
        // Back to the default action; returning re-runs the access, which
        // faults again and ends the process as it would have without us.
        // SAFETY: sigaction with a zeroed struct is SIG_DFL.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    } else if PREVIOUS_FLAGS.load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so
        // it has this signature.
        let handler: Handler = unsafe { std::mem::transmute(previous) };
        handler(sig, info, context);
    } else {
        // SAFETY: a plain handler takes the signal number only.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
        handler(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapOptions;
    use std::io::Write;

    #[test]
    fn a_copy_from_a_map_cut_short_reports_failure_and_the_process_lives() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![5u8; 4 * PAGE]).unwrap();
        // SAFETY: a private temp file; the test cuts it short on purpose.
        let map = unsafe { MmapOptions::new().len(4 * PAGE).map_mut(&file) }.unwrap();
        let (start, len) = (map.as_ptr() as usize, map.len());
        let mut buf = vec![0u8; 4 * PAGE];
        assert!(copy(&mut buf, &map, start, len), "an intact map copies");
        assert!(buf.iter().all(|b| *b == 5));
        // The pages past the new end now raise SIGBUS on access.
        file.set_len(PAGE as u64).unwrap();
        assert!(!copy(&mut buf, &map, start, len), "a read past the cut must fail");
        // The faulting pages of that map are now private zero pages: write
        // through a fresh map of the cut file.
        // SAFETY: as above.
        let mut map = unsafe { MmapOptions::new().len(4 * PAGE).map_mut(&file) }.unwrap();
        let (start, len) = (map.as_ptr() as usize, map.len());
        assert!(
            !copy(&mut map, &vec![9u8; len], start, len),
            "a write past the cut must fail"
        );
        // A copy that touches no failing page still works.
        let mut one = vec![0u8; PAGE];
        assert!(copy(&mut one, &map[..PAGE], start, len));
        assert!(one.iter().all(|b| *b == 9), "the first page took the write");
    }
}
