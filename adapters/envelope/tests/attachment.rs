//! Streaming attachment encryption: round trips at the chunk boundaries, and every way of
//! cutting, extending, reordering or altering the ciphertext.

use parley_domain::{Digest, Secret32};
use parley_envelope::{
    AttachmentError, CHUNK, new_attachment_key, open_attachment, seal_attachment,
};
use sha2::{Digest as _, Sha256};

const TAG: usize = 16;

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 8) as u8).collect()
}

fn sha(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

fn seal(key: &Secret32, plain: &[u8]) -> (Vec<u8>, Digest) {
    let mut out = Vec::new();
    let sealed = seal_attachment(key, plain, &mut out).expect("seals");
    assert_eq!(sealed.size, out.len() as u64);
    assert_eq!(sealed.sha256, sha(&out));
    assert_eq!(sealed.plain_sha256, sha(plain));
    (out, sealed.plain_sha256)
}

fn open(key: &Secret32, cipher: &[u8], expected: &Digest) -> Result<Vec<u8>, AttachmentError> {
    let mut out = Vec::new();
    let n = open_attachment(key, cipher, &mut out, expected)?;
    assert_eq!(n, out.len() as u64);
    Ok(out)
}

/// The ciphertext chunks, split at the documented boundaries.
fn chunks(cipher: &[u8]) -> Vec<&[u8]> {
    cipher.chunks(CHUNK + TAG).collect()
}

#[test]
fn files_round_trip_at_every_chunk_boundary() {
    let key = new_attachment_key();
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK * 2 + 5] {
        let plain = file(len);
        let (cipher, plain_sha) = seal(&key, &plain);
        let expected_chunks = len.div_ceil(CHUNK).max(1);
        assert_eq!(cipher.len(), len + TAG * expected_chunks, "{len}");
        assert_eq!(
            open(&key, &cipher, &plain_sha).expect("opens"),
            plain,
            "{len}"
        );
    }
}

#[test]
fn sealing_is_deterministic_per_key_and_differs_between_keys() {
    let plain = file(1000);
    let (k1, k2) = (new_attachment_key(), new_attachment_key());
    assert_ne!(k1, k2);
    assert_eq!(seal(&k1, &plain).0, seal(&k1, &plain).0);
    assert_ne!(seal(&k1, &plain).0, seal(&k2, &plain).0);
}

#[test]
fn a_truncated_final_chunk_is_refused() {
    let key = new_attachment_key();
    let plain = file(CHUNK * 2 + 5);
    let (cipher, plain_sha) = seal(&key, &plain);
    for cut in [1, 5, TAG, TAG + 4] {
        let short = &cipher[..cipher.len() - cut];
        assert!(
            matches!(
                open(&key, short, &plain_sha),
                Err(AttachmentError::Corrupt | AttachmentError::Truncated)
            ),
            "cut {cut}"
        );
    }
    // An empty ciphertext lacks even the final chunk's tag.
    assert!(matches!(
        open(&key, &[], &sha(b"")),
        Err(AttachmentError::Truncated)
    ));
    assert!(matches!(
        open(&key, &[0; TAG - 1], &sha(b"")),
        Err(AttachmentError::Truncated)
    ));
}

#[test]
fn a_stream_cut_at_a_chunk_boundary_is_refused() {
    let key = new_attachment_key();
    // Exactly two full chunks: dropping the final one leaves a well-sized, non-final chunk.
    let plain = file(CHUNK * 2);
    let (cipher, plain_sha) = seal(&key, &plain);
    let first_only = &cipher[..CHUNK + TAG];
    assert!(matches!(
        open(&key, first_only, &plain_sha),
        Err(AttachmentError::Corrupt)
    ));
}

#[test]
fn a_dropped_chunk_is_refused() {
    let key = new_attachment_key();
    let plain = file(CHUNK * 2 + 5);
    let (cipher, plain_sha) = seal(&key, &plain);
    let parts = chunks(&cipher);
    assert_eq!(parts.len(), 3);
    let dropped: Vec<u8> = [parts[0], parts[2]].concat();
    assert!(matches!(
        open(&key, &dropped, &plain_sha),
        Err(AttachmentError::Corrupt)
    ));
    let dropped_first: Vec<u8> = [parts[1], parts[2]].concat();
    assert!(matches!(
        open(&key, &dropped_first, &plain_sha),
        Err(AttachmentError::Corrupt)
    ));
}

#[test]
fn swapped_or_duplicated_chunks_are_refused() {
    let key = new_attachment_key();
    let plain = file(CHUNK * 3 + 5);
    let (cipher, plain_sha) = seal(&key, &plain);
    let p = chunks(&cipher);
    assert_eq!(p.len(), 4);
    for order in [[1, 0, 2, 3], [0, 2, 1, 3], [0, 0, 2, 3]] {
        let reordered: Vec<u8> = order.iter().flat_map(|&i| p[i].iter().copied()).collect();
        assert!(
            matches!(
                open(&key, &reordered, &plain_sha),
                Err(AttachmentError::Corrupt)
            ),
            "{order:?}"
        );
    }
}

#[test]
fn data_after_the_final_chunk_is_refused() {
    let key = new_attachment_key();
    for len in [0, 5, CHUNK] {
        let plain = file(len);
        let (cipher, plain_sha) = seal(&key, &plain);
        for extra in [vec![0u8], vec![0u8; TAG], cipher.clone()] {
            let longer = [cipher.clone(), extra].concat();
            assert!(
                matches!(
                    open(&key, &longer, &plain_sha),
                    Err(AttachmentError::Corrupt)
                ),
                "{len}"
            );
        }
    }
}

#[test]
fn the_wrong_key_is_refused() {
    let plain = file(CHUNK + 1);
    let (cipher, plain_sha) = seal(&new_attachment_key(), &plain);
    assert!(matches!(
        open(&new_attachment_key(), &cipher, &plain_sha),
        Err(AttachmentError::Corrupt)
    ));
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let key = new_attachment_key();
    let plain = file(CHUNK * 2 + 5);
    let (cipher, plain_sha) = seal(&key, &plain);
    let boundaries = [
        0,
        CHUNK - 1,
        CHUNK + TAG - 1,
        CHUNK + TAG,
        2 * (CHUNK + TAG),
        cipher.len() - TAG,
        cipher.len() - 1,
    ];
    let stride = (0..cipher.len()).step_by(4099);
    for at in boundaries.into_iter().chain(stride) {
        let mut spoilt = cipher.clone();
        spoilt[at] ^= 0x01;
        assert!(
            matches!(
                open(&key, &spoilt, &plain_sha),
                Err(AttachmentError::Corrupt)
            ),
            "byte {at}"
        );
    }
}

#[test]
fn a_plaintext_other_than_the_expected_one_is_refused() {
    let key = new_attachment_key();
    let (cipher, _) = seal(&key, &file(10));
    assert!(matches!(
        open(&key, &cipher, &sha(b"something else")),
        Err(AttachmentError::DigestMismatch)
    ));
}

#[test]
fn read_errors_surface_as_io_errors() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let key = new_attachment_key();
    assert!(seal_attachment(&key, Failing, Vec::new()).is_err());
    let err = open_attachment(&key, Failing, Vec::new(), &sha(b"")).expect_err("fails");
    assert_eq!(err.code(), "io");
}
