//! Coalescing of body chunks into large writes. awc hands a body over in
//! chunks of a few KiB up to 64 KiB; the file actor gathers them and writes
//! [`WRITE_SIZE`] bytes at a time at explicit offsets, so a transfer costs
//! one `pwrite` (and one trip to the blocking pool) per MiB, not one per
//! chunk. Public but hidden from the docs: only for bench/'s
//! micro-benchmark.

use bytes::BytesMut;

/// Bytes gathered before one write.
pub const WRITE_SIZE: usize = 1 << 20;

/// Gathers chunks until a write's worth is there.
///
/// Its buffer is allocated with the first chunk after a write, no larger
/// than the rest of the body where that is known ([`Coalescer::expect`]):
/// a 64 KiB file takes one 64 KiB buffer, not two of 1 MiB.
#[derive(Debug)]
pub struct Coalescer {
    buf: BytesMut,
    size: usize,
    /// The capacity of the next buffer.
    next: usize,
}

impl Coalescer {
    /// Writes of `size` bytes (at least 1).
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Self {
            buf: BytesMut::new(),
            size,
            next: size,
        }
    }

    /// About `remaining` bytes of the body are still to come (not counting
    /// what is gathered): the next buffer needs no more room than that.
    pub fn expect(&mut self, remaining: u64) {
        let rest = usize::try_from(remaining).unwrap_or(usize::MAX);
        self.next = rest.saturating_add(self.buf.len()).clamp(1, self.size);
    }

    /// Appends `chunk`; once `size` bytes or more are gathered, hands them
    /// all over for one write and starts again empty.
    pub fn push(&mut self, chunk: &[u8]) -> Option<BytesMut> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.next.max(chunk.len()));
        }
        self.buf.extend_from_slice(chunk);
        (self.buf.len() >= self.size).then(|| self.take())
    }

    /// What is gathered (maybe nothing), leaving it empty (the next buffer
    /// is allocated with the next chunk).
    pub fn take(&mut self) -> BytesMut {
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
    use super::*;

    #[test]
    fn chunks_come_out_in_order_in_writes_of_at_least_the_size() {
        let mut c = Coalescer::new(10);
        let mut out = Vec::new();
        let mut writes = Vec::new();
        for chunk in [&b"abcd"[..], b"efgh", b"ijkl", b"m", b"nopqrstuvwxyz"] {
            if let Some(full) = c.push(chunk) {
                writes.push(full.len());
                out.extend_from_slice(&full);
            }
        }
        assert_eq!(writes, vec![12, 14]);
        assert!(c.is_empty());
        assert!(c.push(b"!").is_none());
        assert_eq!(c.len(), 1);
        out.extend_from_slice(&c.take());
        assert_eq!(out, b"abcdefghijklmnopqrstuvwxyz!");
        assert!(c.take().is_empty());
    }

    #[test]
    fn a_known_rest_sizes_the_buffer() {
        let mut c = Coalescer::new(1 << 20);
        c.expect(5000);
        assert!(c.push(&[1; 1000]).is_none());
        assert!(c.buf.capacity() >= 5000 && c.buf.capacity() < 1 << 20);
        // Nothing allocated after a take until the next chunk.
        assert_eq!(c.take().len(), 1000);
        assert_eq!(c.buf.capacity(), 0);
        // A body longer than announced still gathers every byte.
        let mut c = Coalescer::new(8);
        c.expect(2);
        assert!(c.push(b"abc").is_none());
        assert_eq!(c.push(b"defghi").as_deref(), Some(&b"abcdefghi"[..]));
    }
}
