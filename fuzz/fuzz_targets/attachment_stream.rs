//! The recipient's side of `/parley/attachment/1` (`parley_p2p::attachment::receive`) over an
//! in-memory stream, with a 4 KiB cap and a staging folder in memory where there is one.
//!
//! The first byte sets how many bytes each read returns; the rest is what the sender sends.
//!
//! Invariants, from the protocol: a head that is short or of another version gets no answer;
//! a declared size over the cap gets `1 ‖ cap` and nothing is read or written; otherwise the
//! answer is `4`, then `0` with a staged file holding exactly the bytes sent when they hash
//! to the declared digest, `2` and no file when they do not, and no status and no file when
//! the stream ends early. No partial file is ever left behind.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use parley_domain::Username;
use parley_fuzz::{Duplex, sha256};
use parley_p2p::AttachmentConfig;
use parley_p2p::attachment::receive;

const CAP: u64 = 4096;

struct World {
    runtime: tokio::runtime::Runtime,
    folder: tempfile::TempDir,
    config: AttachmentConfig,
    from: Username,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // tmpfs where there is one, so that syncing a file costs nothing.
    let folder = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a temporary folder");
    let staging: PathBuf = folder.path().join("staged");
    let config = AttachmentConfig {
        staging: Arc::new(move |_, digest| staging.join(digest.to_string())),
        max_bytes: CAP,
    };
    World {
        runtime,
        folder,
        config,
        from: Username::parse("alice").expect("valid"),
    }
});

/// The files in the staging folder and what they hold; removes them.
fn take_files(folder: &Path) -> Vec<(String, Vec<u8>)> {
    let paths: Vec<PathBuf> = std::fs::read_dir(folder.join("staged"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths
        .into_iter()
        .map(|path| {
            let content = std::fs::read(&path).expect("a staged file can be read");
            std::fs::remove_file(&path).expect("a staged file can be removed");
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name.to_owned(), content)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, sent)) = data.split_first() else {
        return;
    };
    let world = &*WORLD;
    let mut stream = Duplex::new(sent, usize::from(piece));
    let result = world
        .runtime
        .block_on(receive(&mut stream, &world.from, &world.config));
    let answer = stream.output;
    let staged = take_files(world.folder.path());

    let Some((head, body)) = sent.split_first_chunk::<41>() else {
        assert!(
            result.is_err() && answer.is_empty(),
            "a short head was answered"
        );
        assert!(staged.is_empty(), "a short head left a file");
        return;
    };
    if head[0] != 1 {
        assert!(
            result.is_err() && answer.is_empty(),
            "another version was answered"
        );
        assert!(staged.is_empty(), "another version left a file");
        return;
    }
    let digest: [u8; 32] = head[1..33].try_into().expect("32 bytes");
    let size = u64::from_be_bytes(head[33..41].try_into().expect("8 bytes"));
    if size > CAP {
        let mut expected = vec![1];
        expected.extend_from_slice(&CAP.to_be_bytes());
        assert_eq!(
            answer, expected,
            "an oversized attachment got another answer"
        );
        assert!(result.is_ok() && staged.is_empty());
        return;
    }
    let size = usize::try_from(size).expect("at most CAP");
    let Some(content) = body.get(..size) else {
        assert!(result.is_err(), "a stream that ended early was accepted");
        assert_eq!(answer, [4], "a stream that ended early got a status");
        assert!(staged.is_empty(), "a stream that ended early left a file");
        return;
    };
    assert!(result.is_ok(), "a complete stream failed: {result:?}");
    if sha256(content) == digest {
        assert_eq!(answer, [4, 0], "a matching attachment was not stored");
        let expected = (parley_domain::Digest(digest).to_string(), content.to_vec());
        assert!(
            staged == [expected],
            "a stored attachment is not one file of the bytes sent"
        );
    } else {
        assert_eq!(answer, [4, 2], "a mismatching attachment was not refused");
        assert!(staged.is_empty(), "a mismatching attachment left a file");
    }
});
