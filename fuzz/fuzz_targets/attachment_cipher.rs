//! Decrypting an attachment (`parley_envelope::open_attachment`, the chunked AES-256-GCM
//! stream).
//!
//! The first byte chooses the mode:
//! - even: the rest is a ciphertext as it arrives, decrypted with a fixed key. It must be
//!   refused (nothing authenticates without the key) and must not panic.
//! - odd: `u24 length ‖ read size u16 ‖ edit u8 ‖ position u32 ‖ value u8 ‖ pattern…`. A
//!   plaintext of `length` bytes (up to three chunks and a bit, repeating the pattern) is
//!   sealed with the real code, one edit is made to the ciphertext (none, flip a byte, cut,
//!   extend, drop or swap a chunk), and the result is decrypted, read in pieces of the given
//!   size. Without an edit it must give back the plaintext; with one it must be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_domain::{Digest, Secret32};
use parley_envelope::{AttachmentError, CHUNK, open_attachment, seal_attachment};
use parley_fuzz::sha256;

const KEY: [u8; 32] = [0x61; 32];
const CIPHER_CHUNK: usize = CHUNK + 16;

/// A reader that hands out at most `piece` bytes per call.
struct Pieces<'a> {
    rest: &'a [u8],
    piece: usize,
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.rest.len()).min(self.piece);
        let (head, tail) = self.rest.split_at(n);
        buf[..n].copy_from_slice(head);
        self.rest = tail;
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let key = Secret32::new(KEY);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut out = Vec::new();
        let result = open_attachment(&key, rest, &mut out, &Digest(sha256(b"")));
        if let Ok(n) = result {
            // Only the one empty final chunk sealed under KEY can get here.
            assert_eq!(usize::try_from(n).ok(), Some(out.len()));
        }
        return;
    }
    let Some((head, pattern)) = rest.split_first_chunk::<10>() else {
        return;
    };
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let len = len % (3 * CHUNK + 100);
    let piece = usize::from(u16::from_be_bytes([head[3], head[4]])).max(1);
    let edit = head[5] % 6;
    let position = usize::try_from(u32::from_be_bytes([head[6], head[7], head[8], head[9]]))
        .expect("u32 fits usize");
    let plain = if pattern.is_empty() {
        vec![0; len]
    } else {
        let mut plain = pattern.repeat(len.div_ceil(pattern.len()));
        plain.truncate(len);
        plain
    };
    let mut cipher = Vec::new();
    let sealed = seal_attachment(&key, &plain[..], &mut cipher).expect("sealing into memory");
    assert_eq!(usize::try_from(sealed.size).ok(), Some(cipher.len()));
    assert_eq!(sealed.sha256.0, sha256(&cipher));
    assert_eq!(
        cipher.len(),
        len + 16 * len.div_ceil(CHUNK).max(1),
        "ciphertext size"
    );
    let chunks = cipher.len().div_ceil(CIPHER_CHUNK);
    let changed = match edit {
        0 => false,
        1 => {
            let at = position % cipher.len();
            cipher[at] ^= 1 << (head[5] >> 5);
            true
        }
        2 => {
            cipher.truncate(position % cipher.len());
            true
        }
        3 => {
            cipher.push(head[9]);
            true
        }
        4 if chunks > 1 => {
            let at = position % chunks * CIPHER_CHUNK;
            let end = (at + CIPHER_CHUNK).min(cipher.len());
            cipher.drain(at..end);
            true
        }
        5 if chunks > 1 => {
            // Swap the first chunk with a later full one.
            let other = 1 + position % (chunks - 1);
            if (other + 1) * CIPHER_CHUNK > cipher.len() {
                return;
            }
            let (first, later) = cipher.split_at_mut(CIPHER_CHUNK);
            first.swap_with_slice(&mut later[(other - 1) * CIPHER_CHUNK..other * CIPHER_CHUNK]);
            true
        }
        _ => false,
    };
    let mut out = Vec::new();
    let result = open_attachment(
        &key,
        Pieces {
            rest: &cipher,
            piece,
        },
        &mut out,
        &sealed.plain_sha256,
    );
    match result {
        Ok(n) if !changed => {
            assert_eq!(usize::try_from(n).ok(), Some(len));
            assert!(
                out == plain,
                "the plaintext did not survive sealing and opening"
            );
        }
        Ok(_) => panic!("an altered attachment (edit {edit}) was accepted"),
        Err(e) if !changed => panic!("an intact attachment was refused: {e}"),
        Err(AttachmentError::Truncated | AttachmentError::Corrupt) => {}
        Err(e) => panic!("an altered attachment was refused for the wrong reason: {e}"),
    }
});
