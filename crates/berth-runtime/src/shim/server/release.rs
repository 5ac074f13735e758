//! Giving memory back when the shim is idle: code pages of the binary that are still the
//! file's, the dead part of the stack, free heap (see [`Release::collect`]).

use std::fs::File;

/// What an idle shim gives back (see [`Release::collect`]).
pub(super) struct Release {
    /// Runs of resident pages of private read-only file mappings (program code, read-only
    /// data) that are still the file's: none has a private (copy-on-write) copy.
    code: Vec<(usize, usize)>,
    /// The lowest address of the main thread's stack mapping.
    stack: Option<usize>,
    page_size: usize,
}

impl Release {
    /// Finds the memory an idle shim can give back, and trims the free heap.
    ///
    /// Start-up (and every attach, exec or health check) touches code the idle loop never runs
    /// again, and the kernel maps code in 64 KiB fault-around windows, so about a megabyte of
    /// code and read-only data stays mapped; those pages stay in the page cache (shared with
    /// the other shims) and come back on the next use. `/proc/self/pagemap` tells which pages
    /// are the file's own: `MADV_DONTNEED` on those loses nothing, while a page with a private
    /// copy (data the loader relocated, in the mapping of the read-only-after-relocation
    /// data) would lose its contents, so those stay. The stack's deep frames (reading these
    /// files itself, serde) are dead once the loop is back at the top.
    pub(super) fn collect() -> Release {
        // SAFETY: sysconf only reads a constant of the system.
        let page_size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
        let mut release = Release {
            code: Vec::new(),
            stack: None,
            page_size: usize::try_from(page_size).unwrap_or(4096),
        };
        let (Ok(maps), Ok(pagemap)) = (
            std::fs::read_to_string("/proc/self/maps"),
            File::open("/proc/self/pagemap"),
        ) else {
            return release;
        };
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let range = fields.next().unwrap_or_default();
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let Some((start, end)) = range.split_once('-').and_then(|(s, e)| {
                Some((
                    usize::from_str_radix(s, 16).ok()?,
                    usize::from_str_radix(e, 16).ok()?,
                ))
            }) else {
                continue;
            };
            if path == "[stack]" {
                release.stack = Some(start);
            }
            // Private read-only file mappings only (not [vdso], shared or anonymous memory).
            if path.starts_with('/') && perms.ends_with('p') && !perms.contains('w') {
                release.file_pages(&pagemap, start, end);
            }
        }
        // Free heap pages (buffers of a finished exec or attach) go back to the kernel too.
        // SAFETY: malloc_trim only releases memory the allocator holds free.
        unsafe {
            nix::libc::malloc_trim(0);
        }
        release
    }

    /// Adds the runs of pages of `[start, end)` that are resident and still the file's.
    fn file_pages(&mut self, pagemap: &File, start: usize, end: usize) {
        use std::os::unix::fs::FileExt;
        // pagemap: one 64-bit entry per page; bit 63 "present", bit 61 "file page or shared
        // anonymous" (a private copy of a file page is anonymous).
        const PRESENT: u64 = 1 << 63;
        const FILE: u64 = 1 << 61;
        let pages = (end - start) / self.page_size;
        let mut entries = vec![0u8; pages * 8];
        let offset = (start / self.page_size * 8) as u64;
        if pagemap.read_exact_at(&mut entries, offset).is_err() {
            return;
        }
        let mut run: Option<usize> = None;
        for (i, entry) in entries.chunks_exact(8).enumerate() {
            let bits = u64::from_ne_bytes(entry.try_into().expect("8-byte chunk"));
            let addr = start + i * self.page_size;
            if bits & PRESENT != 0 && bits & FILE != 0 {
                run.get_or_insert(addr);
            } else if let Some(from) = run.take() {
                self.code.push((from, addr));
            }
        }
        if let Some(from) = run {
            self.code.push((from, end));
        }
    }

    /// Drops the pages: the last thing before the loop blocks in `poll`. Every page of code
    /// that runs after the `madvise` faults back in with its 64 KiB window, so giving the
    /// pages back earlier (and then running the loop's bookkeeping) would refill a dozen
    /// windows; here only the windows of this call and of `poll` come back.
    #[inline(always)]
    pub(super) fn apply(&self) {
        for &(start, end) in &self.code {
            // SAFETY: the range holds only pages of a private, read-only file mapping of this
            // process that have no private copy: dropping them only unmaps page-cache pages,
            // which fault back in unchanged.
            unsafe {
                nix::libc::madvise(
                    start as *mut nix::libc::c_void,
                    end - start,
                    nix::libc::MADV_DONTNEED,
                );
            }
        }
        if let Some(start) = self.stack {
            release_dead_stack(start, self.page_size);
        }
    }
}

impl Release {
    /// Gives the pages back and blocks in `poll`, in one function of this module: the code
    /// that runs between the `madvise` and the wait is what faults back in, 64 KiB around each
    /// page, so it is kept together with [`release_dead_stack`] rather than in the loop's module
    /// (when it was not, an idle shim kept one more window of code resident).
    #[inline(never)]
    pub(super) fn apply_then_poll(
        &self,
        fds: &mut [nix::poll::PollFd<'_>],
        timeout: nix::poll::PollTimeout,
    ) -> nix::Result<nix::libc::c_int> {
        self.apply();
        nix::poll::poll(fds, timeout)
    }
}

/// Gives back the pages of the stack mapping (lowest address `start`) below this call's frame,
/// less a margin for the calls still to come (madvise, poll, a signal frame). Not inlined: its
/// frame lies below every frame of its callers, and the ABI keeps nothing below the stack
/// pointer but a 128-byte red zone.
#[inline(never)]
fn release_dead_stack(start: usize, page_size: usize) {
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    let end = here.saturating_sub(STACK_KEEP) & !(page_size - 1);
    if end > start {
        // SAFETY: [start, end) is the unused part of this thread's stack mapping, below every
        // live frame; its pages read back as zeros when the stack grows into them again.
        unsafe {
            nix::libc::madvise(
                start as *mut nix::libc::c_void,
                end - start,
                nix::libc::MADV_DONTNEED,
            );
        }
    }
}

/// How long the shim must have been idle (after start-up, an exec or a client) before it
/// gives memory back, in milliseconds.
pub(super) const SETTLE_MS: u8 = 100;

/// Stack kept below the frame of [`release_dead_stack`] when the rest is given back.
const STACK_KEEP: usize = 8 * 1024;
