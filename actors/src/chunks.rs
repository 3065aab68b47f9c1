//! Coalescing of body chunks into large writes. awc hands a body over in
//! chunks of a few KiB up to 64 KiB; the file actor gathers them and writes
//! [`WRITE_SIZE`] bytes at a time at explicit offsets, so a transfer costs
//! one `pwritev` (and one trip to the blocking pool) per MiB, not one
//! `pwrite` per chunk. The chunks are kept as they came (reference-counted
//! slices of the HTTP client's read buffers) and written from there: no
//! byte is copied on its way to the kernel (a 64 KiB body arrives in 3
//! chunks; copying them into one buffer was about 2% of the daemon's CPU
//! on 2,000 such files). Public but hidden from the docs: only for
//! bench/'s micro-benchmark.

use std::{
    fs::File,
    io::{self, IoSlice},
};

use bytes::Bytes;

/// Bytes gathered before one write.
pub const WRITE_SIZE: usize = 1 << 20;

/// Chunks gathered before one write, at most: one `pwritev` takes at most
/// `IOV_MAX` (1,024 on Linux) of them, and a body that trickles in tiny
/// chunks is written every so many.
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

    /// The bytes in one buffer (a copy; for tests and checks).
    pub fn to_vec(&self) -> Vec<u8> {
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

/// Gathers chunks until a write's worth is there.
#[derive(Debug)]
pub struct Coalescer {
    buf: Gathered,
    size: usize,
}

impl Coalescer {
    /// Writes of `size` bytes (at least 1).
    pub fn new(size: usize) -> Self {
        Self {
            buf: Gathered::default(),
            size: size.max(1),
        }
    }

    /// Appends `chunk`; once `size` bytes or more (or [`MAX_CHUNKS`]
    /// chunks) are gathered, hands them all over for one write and starts
    /// again empty.
    pub fn push(&mut self, chunk: Bytes) -> Option<Gathered> {
        self.buf.push(chunk);
        (self.buf.len() >= self.size || self.buf.chunks.len() >= MAX_CHUNKS).then(|| self.take())
    }

    /// What is gathered (maybe nothing), leaving it empty.
    pub fn take(&mut self) -> Gathered {
        std::mem::take(&mut self.buf)
    }

    /// Bytes gathered and not yet handed over.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Nothing gathered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
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
    fn a_trickle_of_tiny_chunks_is_written_every_max_chunks() {
        let mut c = Coalescer::new(WRITE_SIZE);
        let mut writes = Vec::new();
        for i in 0..MAX_CHUNKS * 2 + 3 {
            if let Some(full) = c.push(Bytes::from(vec![u8::try_from(i % 256).unwrap()])) {
                writes.push(full.len());
            }
        }
        assert_eq!(writes, vec![MAX_CHUNKS, MAX_CHUNKS]);
        assert_eq!(c.len(), 3);
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
        for i in 0..300u32 {
            let chunk: Vec<u8> = (0..i % 7 + 1)
                .map(|j| u8::try_from((i + j) % 251).unwrap())
                .collect();
            want.extend_from_slice(&chunk);
            g.push(Bytes::from(chunk));
        }
        // More chunks than the writer gathers at once still write whole.
        g.write_all_at(&file, 4).unwrap();
        let mut got = vec![0; 4 + want.len()];
        file.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got[..4], b"0123");
        assert_eq!(&got[4..], &want[..]);
        assert_eq!(file.metadata().unwrap().len(), 4 + want.len() as u64);
        assert!(Gathered::default().write_all_at(&file, 0).is_ok());
    }
}
