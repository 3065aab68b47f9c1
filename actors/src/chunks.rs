//! Coalescing of body chunks into large writes. awc hands a body over in
//! chunks of a few KiB up to 64 KiB; the file actor gathers them and writes
//! [`WRITE_SIZE`] bytes at a time at explicit offsets, so a transfer costs
//! one `pwritev` (and one trip to the blocking pool) per MiB, not one
//! `pwrite` per chunk. The chunks are kept as they came (reference-counted
//! slices of the HTTP client's read buffers) and written from there, with
//! no copy (a 64 KiB body arrives in 3 chunks; copying every chunk into one
//! buffer was about 2% of the daemon's CPU on 2,000 such files). Chunks
//! under 8 KiB are copied together instead, and a write is handed over
//! before its chunks may hold 2 MiB of read buffers: a chunk keeps its
//! whole read buffer alive. Public but hidden from the docs: only for
//! bench/'s micro-benchmark.

use std::{
    fs::File,
    io::{self, IoSlice},
};

use bytes::{Bytes, BytesMut};

/// Bytes gathered before one write.
pub const WRITE_SIZE: usize = 1 << 20;

/// Chunks kept for one write, at most (each is one `iovec`; one `pwritev`
/// takes up to `IOV_MAX`, 1,024 on Linux).
pub const MAX_CHUNKS: usize = 256;

/// Bytes gathered for one write: the body's chunks, in order, uncopied.
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Gathered {
    /// Appends `chunk` (an empty one is dropped).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// Bytes gathered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing gathered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes every byte at `offset` of `file` (one `pwritev`, more only if
    /// the kernel writes less than asked). Blocking.
    pub fn write_all_at(&self, file: &File, mut offset: u64) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self.chunks.iter().map(|c| IoSlice::new(c)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match rustix::io::pwritev(file, rest, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    offset += n as u64;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// The bytes in one buffer (a copy).
    #[cfg(test)]
    fn to_vec(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }
}

impl From<Bytes> for Gathered {
    fn from(chunk: Bytes) -> Self {
        let mut gathered = Self::default();
        gathered.push(chunk);
        gathered
    }
}

impl From<&[u8]> for Gathered {
    fn from(bytes: &[u8]) -> Self {
        Bytes::copy_from_slice(bytes).into()
    }
}

/// Chunks smaller than this are copied (into one buffer with their
/// neighbours) rather than kept: a chunk is a slice of the HTTP client's
/// read buffer and keeps all of it alive, and a server can frame a body in
/// tiny chunks (chunked encoding with long extensions) so that each one
/// holds a buffer of its own.
pub const SMALL_CHUNK: usize = 8 << 10;

/// The memory a kept chunk is counted as holding at least: the size of the
/// read buffers it is cut from (actix-http reserves about 32 KiB).
const READ_BUFFER: usize = 32 << 10;

/// The memory the chunks of one write may hold, counted so: a write is
/// handed over when its chunks may hold this much, whatever their size.
pub const MAX_HELD: usize = 2 * WRITE_SIZE;

/// Gathers chunks until a write's worth is there.
#[derive(Debug)]
pub struct Coalescer {
    buf: Gathered,
    /// Small chunks copied together, not yet in `buf`.
    tail: BytesMut,
    /// The memory `buf`'s chunks may hold (see [`READ_BUFFER`]).
    held: usize,
    size: usize,
}

impl Coalescer {
    /// Writes of `size` bytes (at least 1).
    pub fn new(size: usize) -> Self {
        Self {
            buf: Gathered::default(),
            tail: BytesMut::new(),
            held: 0,
            size: size.max(1),
        }
    }

    /// Appends `chunk`; once `size` bytes or more are gathered (or the
    /// chunks may hold [`MAX_HELD`] bytes, or there are [`MAX_CHUNKS`] of
    /// them), hands them all over for one write and starts again empty.
    pub fn push(&mut self, chunk: Bytes) -> Option<Gathered> {
        if chunk.len() < SMALL_CHUNK {
            self.tail.extend_from_slice(&chunk);
            if self.tail.len() >= SMALL_CHUNK {
                self.keep_tail();
            }
        } else {
            // In order: what was copied before it comes first.
            self.keep_tail();
            self.held += chunk.len().max(READ_BUFFER);
            self.buf.push(chunk);
        }
        (self.len() >= self.size || self.held >= MAX_HELD || self.buf.chunks.len() >= MAX_CHUNKS)
            .then(|| self.take())
    }

    /// Moves the copied small chunks into the write, as one chunk.
    fn keep_tail(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail).freeze();
            self.held += tail.len();
            self.buf.push(tail);
        }
    }

    /// What is gathered (maybe nothing), leaving it empty.
    pub fn take(&mut self) -> Gathered {
        self.keep_tail();
        self.held = 0;
        std::mem::take(&mut self.buf)
    }

    /// Bytes gathered and not yet handed over.
    pub fn len(&self) -> usize {
        self.buf.len() + self.tail.len()
    }

    /// Nothing gathered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::os::unix::fs::FileExt as _;

    use super::*;

    #[test]
    fn chunks_come_out_in_order_in_writes_of_at_least_the_size() {
        let mut c = Coalescer::new(10);
        let mut out = Vec::new();
        let mut writes = Vec::new();
        for chunk in [&b"abcd"[..], b"efgh", b"ijkl", b"m", b"", b"nopqrstuvwxyz"] {
            if let Some(full) = c.push(Bytes::copy_from_slice(chunk)) {
                writes.push(full.len());
                out.extend_from_slice(&full.to_vec());
            }
        }
        assert_eq!(writes, vec![12, 14]);
        assert!(c.is_empty());
        assert!(c.push(Bytes::from_static(b"!")).is_none());
        assert_eq!(c.len(), 1);
        out.extend_from_slice(&c.take().to_vec());
        assert_eq!(out, b"abcdefghijklmnopqrstuvwxyz!");
        assert!(c.take().is_empty());
    }

    #[test]
    fn tiny_chunks_are_copied_together_and_large_ones_kept() {
        let mut c = Coalescer::new(WRITE_SIZE);
        // A trickle of 1-byte chunks: copied into one buffer, not kept one
        // by one (each would hold a read buffer of its own).
        for i in 0..SMALL_CHUNK * 2 + 3 {
            assert!(
                c.push(Bytes::from(vec![u8::try_from(i % 256).unwrap()]))
                    .is_none()
            );
        }
        assert_eq!(c.buf.chunks.len(), 2);
        assert_eq!(c.len(), SMALL_CHUNK * 2 + 3);
        // A large chunk after it comes after it.
        assert!(c.push(Bytes::from(vec![7; SMALL_CHUNK])).is_none());
        let got = c.take().to_vec();
        assert_eq!(got.len(), SMALL_CHUNK * 3 + 3);
        assert!(
            got[..SMALL_CHUNK * 2 + 3]
                .iter()
                .enumerate()
                .all(|(i, b)| usize::from(*b) == i % 256)
        );
        assert!(got[SMALL_CHUNK * 2 + 3..].iter().all(|b| *b == 7));
        assert!(c.is_empty());
    }

    #[test]
    fn a_write_is_handed_over_before_its_chunks_may_hold_too_much() {
        let mut c = Coalescer::new(WRITE_SIZE);
        // Chunks just above the small size, each counted as holding a read
        // buffer: handed over at MAX_HELD, long before WRITE_SIZE bytes.
        let mut writes = Vec::new();
        for _ in 0..200 {
            if let Some(full) = c.push(Bytes::from(vec![1; SMALL_CHUNK + 1])) {
                writes.push(full.chunks.len());
            }
        }
        let per_write = MAX_HELD / READ_BUFFER;
        assert_eq!(writes, vec![per_write; 200 / per_write]);
        assert!(per_write * (SMALL_CHUNK + 1) < WRITE_SIZE);
        // Chunks of 64 KiB fill a write by size.
        let mut c = Coalescer::new(WRITE_SIZE);
        let full = (0..16).find_map(|_| c.push(Bytes::from(vec![2; 64 << 10])));
        assert_eq!(full.map(|g| g.len()), Some(WRITE_SIZE));
    }

    #[test]
    fn gathered_chunks_are_written_whole_at_their_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.write_all_at(b"0123456789", 0).unwrap();
        let mut g = Gathered::default();
        let mut want = Vec::new();
        // More chunks than one pwritev takes (IOV_MAX, 1,024): the rest
        // goes in a second call, from where the first ended.
        for i in 0..1500u32 {
            let chunk: Vec<u8> = (0..i % 7 + 1)
                .map(|j| u8::try_from((i + j) % 251).unwrap())
                .collect();
            want.extend_from_slice(&chunk);
            g.push(Bytes::from(chunk));
        }
        g.write_all_at(&file, 4).unwrap();
        let mut got = vec![0; 4 + want.len()];
        file.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got[..4], b"0123");
        assert_eq!(&got[4..], &want[..]);
        assert_eq!(file.metadata().unwrap().len(), 4 + want.len() as u64);
        assert!(Gathered::default().write_all_at(&file, 0).is_ok());
    }
}
