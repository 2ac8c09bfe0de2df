//! Attachments: files encrypted in a stream of AES-256-GCM chunks (the STREAM construction),
//! each with its own random key that travels only inside the encrypted body.
//!
//! ```text
//! plaintext  = chunk_0 ‖ chunk_1 ‖ … ‖ chunk_n      every chunk CHUNK (64 KiB) bytes but the last,
//!                                                  which has 0..=CHUNK bytes (an empty file is
//!                                                  one empty final chunk)
//! ciphertext = AES-256-GCM(key, nonce_i, aad, chunk_i) for i in 0..=n, concatenated
//!              (each CHUNK + 16 bytes, the last 16..=CHUNK + 16 bytes)
//! nonce_i    = 7 zero bytes ‖ i:u32 (big-endian) ‖ last:u8 (1 for chunk n, else 0)
//! aad        = b"parley/attachment/v1"
//! ```
//!
//! The counter in the nonce refuses reordered or dropped chunks; the last-chunk flag refuses a
//! stream cut at a chunk boundary (the new "last" chunk was sealed with flag 0) and a stream
//! extended past its final chunk (that chunk was sealed with flag 1). A file whose length is a
//! multiple of [`CHUNK`] ends with a full final chunk, not with an extra empty one.

use std::io::{self, Read, Write};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use parley_domain::{Digest, Secret32};
use sha2::{Digest as _, Sha256};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;

/// The associated data of every chunk.
const AAD: &[u8] = b"parley/attachment/v1";
/// The AES-GCM tag that every ciphertext chunk carries.
const TAG: usize = 16;
/// One full ciphertext chunk.
const CIPHER_CHUNK: usize = CHUNK + TAG;

/// What sealing an attachment produced, besides the ciphertext written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedAttachment {
    /// Ciphertext bytes written (what the header's [`parley_domain::AttachmentRef::size`] says).
    pub size: u64,
    /// SHA-256 of the ciphertext (the header's [`parley_domain::AttachmentRef::sha256`]).
    pub sha256: Digest,
    /// SHA-256 of the plaintext (travels in the encrypted body, checked after decryption).
    pub plain_sha256: Digest,
}

/// Why an attachment could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// Reading the ciphertext or writing the plaintext failed.
    #[error("reading or writing the attachment failed")]
    Io(#[source] io::Error),
    /// The ciphertext ends before a complete final chunk.
    #[error("the attachment ends before its final chunk")]
    Truncated,
    /// A chunk did not authenticate: wrong key, or data altered, reordered, cut or extended.
    #[error("the attachment does not authenticate with its key")]
    Corrupt,
    /// The file has more chunks than a 32-bit counter can number.
    #[error("the attachment is longer than the format allows")]
    TooLong,
    /// Every chunk authenticated but the plaintext is not the one the message named.
    #[error("the decrypted attachment does not match the digest in the message")]
    DigestMismatch,
}

impl AttachmentError {
    /// A stable snake_case name for the error, for logs and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::Truncated => "truncated",
            Self::Corrupt => "corrupt",
            Self::TooLong => "too_long",
            Self::DigestMismatch => "digest_mismatch",
        }
    }
}

impl From<io::Error> for AttachmentError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// A fresh random attachment key from the operating system.
///
/// # Panics
/// If the operating system's random number generator fails, which leaves no safe way to go on.
#[must_use]
pub fn new_attachment_key() -> Secret32 {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random number generator failed");
    Secret32::new(key)
}

fn cipher(key: &Secret32) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key.expose()))
}

fn nonce(counter: u32, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Splits a stream into chunks of `size` bytes and tells which one is the last, by reading one
/// byte ahead.
struct Chunker<R> {
    reader: R,
    buf: Vec<u8>,
    /// Bytes already in `buf` (the byte read ahead of the previous chunk).
    carried: usize,
    done: bool,
}

impl<R: Read> Chunker<R> {
    fn new(reader: R, size: usize) -> Self {
        Self {
            reader,
            buf: vec![0; size + 1],
            carried: 0,
            done: false,
        }
    }

    /// The next chunk and whether it is the last; `None` after the last.
    fn next_chunk(&mut self) -> io::Result<Option<(&[u8], bool)>> {
        if self.done {
            return Ok(None);
        }
        let size = self.buf.len() - 1;
        if self.carried > 0 {
            // Move the byte read ahead of the previous chunk to the front.
            self.buf[0] = self.buf[size];
        }
        let filled = self.carried + read_full(&mut self.reader, &mut self.buf[self.carried..])?;
        if filled <= size {
            self.done = true;
            Ok(Some((&self.buf[..filled], true)))
        } else {
            self.carried = 1;
            Ok(Some((&self.buf[..size], false)))
        }
    }
}

/// Encrypts `plain` into `out` with `key`, in [`CHUNK`]-sized chunks.
///
/// # Errors
/// Any error from reading `plain` or writing `out`, or an [`io::ErrorKind::InvalidInput`]
/// error for a file of more than 2³² chunks (256 TiB).
pub fn seal_attachment<R: Read, W: Write>(
    key: &Secret32,
    plain: R,
    mut out: W,
) -> io::Result<SealedAttachment> {
    let cipher = cipher(key);
    let mut chunks = Chunker::new(plain, CHUNK);
    let (mut plain_hash, mut cipher_hash) = (Sha256::new(), Sha256::new());
    let mut size: u64 = 0;
    let mut counter: Option<u32> = Some(0);
    while let Some((chunk, last)) = chunks.next_chunk()? {
        let i = counter.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the file is too long to be attached",
            )
        })?;
        let sealed = cipher
            .encrypt(
                &nonce(i, last),
                Payload {
                    msg: chunk,
                    aad: AAD,
                },
            )
            .map_err(|_| io::Error::other("a chunk could not be encrypted"))?;
        plain_hash.update(chunk);
        cipher_hash.update(&sealed);
        out.write_all(&sealed)?;
        size += sealed.len() as u64;
        counter = i.checked_add(1);
    }
    out.flush()?;
    Ok(SealedAttachment {
        size,
        sha256: Digest(cipher_hash.finalize().into()),
        plain_sha256: Digest(plain_hash.finalize().into()),
    })
}

/// Decrypts `cipher` into `out` with `key`, and checks the plaintext against `expected_plain`.
/// Returns the number of plaintext bytes.
///
/// Each chunk is authenticated before it is written, but a cut or a digest mismatch is only
/// known at the end: on error, `out` may hold a prefix of the file, which the caller must
/// discard (write to a temporary file and keep it only on `Ok`).
///
/// # Errors
/// [`AttachmentError::Truncated`] or [`AttachmentError::Corrupt`] for a ciphertext that was
/// cut, extended, reordered, altered or sealed under another key;
/// [`AttachmentError::DigestMismatch`] when the plaintext is not the expected one;
/// [`AttachmentError::Io`] when reading or writing fails.
pub fn open_attachment<R: Read, W: Write>(
    key: &Secret32,
    cipher_text: R,
    mut out: W,
    expected_plain: &Digest,
) -> Result<u64, AttachmentError> {
    let cipher = cipher(key);
    let mut chunks = Chunker::new(cipher_text, CIPHER_CHUNK);
    let mut plain_hash = Sha256::new();
    let mut size: u64 = 0;
    let mut counter: Option<u32> = Some(0);
    while let Some((chunk, last)) = chunks.next_chunk()? {
        if chunk.len() < TAG {
            return Err(AttachmentError::Truncated);
        }
        let i = counter.ok_or(AttachmentError::TooLong)?;
        let plain = cipher
            .decrypt(
                &nonce(i, last),
                Payload {
                    msg: chunk,
                    aad: AAD,
                },
            )
            .map_err(|_| AttachmentError::Corrupt)?;
        plain_hash.update(&plain);
        out.write_all(&plain)?;
        size += plain.len() as u64;
        counter = i.checked_add(1);
    }
    out.flush()?;
    if Digest(plain_hash.finalize().into()) != *expected_plain {
        return Err(AttachmentError::DigestMismatch);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_follow_the_documented_layout() {
        let n = nonce(0x0102_0304, true);
        assert_eq!(n.as_slice(), &[0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 1]);
        assert_eq!(nonce(5, false)[11], 0);
    }

    #[test]
    fn the_chunker_marks_exactly_one_last_chunk() {
        for len in [0usize, 1, 3, 4, 5, 8, 9] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut chunker = Chunker::new(&data[..], 4);
            let mut seen = Vec::new();
            let mut lasts = Vec::new();
            while let Some((chunk, last)) = chunker.next_chunk().expect("reads") {
                seen.extend_from_slice(chunk);
                lasts.push((chunk.len(), last));
            }
            assert_eq!(seen, data, "{len}");
            let expected_chunks = len.div_ceil(4).max(1);
            assert_eq!(lasts.len(), expected_chunks, "{len}: {lasts:?}");
            assert!(lasts[..lasts.len() - 1].iter().all(|&(n, l)| n == 4 && !l));
            assert!(lasts[lasts.len() - 1].1);
        }
    }
}
