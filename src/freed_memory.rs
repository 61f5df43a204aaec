//! Test support: what a heap allocation holds after it is freed, read back
//! through `/proc/self/mem` (Linux; no `unsafe`), so tests can check that a
//! secret is wiped on drop rather than left behind in freed memory.
//!
//! The allocator reuses the start of a freed block for its own bookkeeping
//! (glibc: 16 bytes), so tests look for the secret in the rest of it.
#![allow(clippy::panic, reason = "test support: a failed read fails the test")]

use std::fs::File;
use std::os::unix::fs::FileExt;

/// A reader of this process's memory with its buffer allocated up front:
/// between a drop and the read, nothing allocates (which could reuse the
/// freed block).
pub(crate) struct Memory {
    file: File,
    buf: Vec<u8>,
}

impl Memory {
    /// Opens `/proc/self/mem` with a buffer for `len` bytes.
    pub(crate) fn open(len: usize) -> Self {
        let file = File::open("/proc/self/mem").unwrap_or_else(|e| panic!("/proc/self/mem: {e}"));
        Self {
            file,
            buf: vec![0; len],
        }
    }

    /// The `len` bytes at address `at`, as they are now.
    pub(crate) fn read(&mut self, at: usize) -> &[u8] {
        self.file
            .read_exact_at(&mut self.buf, at as u64)
            .unwrap_or_else(|e| panic!("reading {at:#x}: {e}"));
        &self.buf
    }
}

/// Whether `haystack` holds any 8-byte run of `secret`.
pub(crate) fn holds_any_of(haystack: &[u8], secret: &[u8]) -> bool {
    secret
        .windows(8)
        .any(|run| haystack.windows(8).any(|w| w == run))
}
