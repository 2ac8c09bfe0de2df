//! Attachment files on a real store: sealed at rest, claimed from staging, saved back, and
//! deleted with their message.

use std::path::Path;

use parley_domain::{
    Delivery, Digest, Direction, Link, MessageId, MessageText, StoredMessage, Timestamp, Username,
    Verification,
};
use parley_store::{Store, Unlock};
use parley_usecases::ports::{AttachmentError, AttachmentFiles, AttachmentSource, Expiry, Inbox};
use tempfile::TempDir;

const CANARY: &str = "attachment-canary-7d1f";

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid")
}

fn open(dir: &Path) -> Store {
    Store::open(dir, Unlock::KeyFile).expect("opens")
}

fn source(dir: &Path, name: &str, bytes: &[u8]) -> AttachmentSource {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    AttachmentSource {
        name: name.to_owned(),
        path,
    }
}

fn every_file_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.push((path, bytes));
            }
        }
    }
    out
}

fn holds(dir: &Path, needle: &[u8]) -> bool {
    every_file_under(dir)
        .iter()
        .any(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
}

#[test]
fn a_sealed_attachment_rests_encrypted_and_saves_back_to_the_same_bytes() {
    let (store_dir, files) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let store = open(store_dir.path());
    let plain = format!("{CANARY} {}", "x".repeat(200_000)).into_bytes();
    let id = MessageId::from_bytes([1; 16]);
    let attachment = store
        .seal_file(
            &user("alice"),
            &id,
            0,
            &source(files.path(), "notes.txt", &plain),
        )
        .expect("sealed");
    assert!(attachment.meta.size > plain.len() as u64, "tags added");
    assert!(
        !holds(store_dir.path(), CANARY.as_bytes()),
        "no plaintext at rest"
    );

    let dest = files.path().join("back.txt");
    let n = store
        .save(&user("alice"), &id, 0, &attachment, &dest)
        .expect("saved");
    assert_eq!(n, plain.len() as u64);
    assert_eq!(std::fs::read(&*dest).expect("read"), plain);
    let again = store.save(&user("alice"), &id, 0, &attachment, &dest);
    assert!(
        matches!(again, Err(AttachmentError::Destination(_))),
        "{again:?}"
    );
}

#[test]
fn an_attachment_over_the_limit_or_missing_is_refused_and_nothing_is_left() {
    let (store_dir, files) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let store = open(store_dir.path());
    store.set_attachment_limit(10);
    let id = MessageId::from_bytes([2; 16]);
    let err = store.seal_file(
        &user("alice"),
        &id,
        0,
        &source(files.path(), "big", &[0; 11]),
    );
    assert!(
        matches!(
            err,
            Err(AttachmentError::TooLarge {
                size: 11,
                max: 10,
                ..
            })
        ),
        "{err:?}"
    );
    let gone = AttachmentSource {
        name: "gone".into(),
        path: files.path().join("gone"),
    };
    let err = store.seal_file(&user("alice"), &id, 0, &gone);
    assert!(
        matches!(err, Err(AttachmentError::Unreadable(_))),
        "{err:?}"
    );
    let left = store_dir.path().join("attachments");
    assert!(!left.exists() || std::fs::read_dir(&left).expect("list").count() == 0);
}

#[test]
fn a_staged_attachment_is_claimed_once_and_a_damaged_one_is_never_saved() {
    let (store_dir, files) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let bob = open(store_dir.path());
    // What alice's device sealed and sent: take it from a second store.
    let alice_dir = TempDir::new().expect("tmp");
    let alice = open(alice_dir.path());
    let id = MessageId::from_bytes([3; 16]);
    let plain = b"the photo bytes".to_vec();
    let attachment = alice
        .seal_file(
            &user("alice"),
            &id,
            0,
            &source(files.path(), "photo.jpg", &plain),
        )
        .expect("sealed");
    let sealed = std::fs::read(alice.locator(&user("alice"), &id, 0)).expect("read");

    assert_eq!(
        bob.claim(&user("alice"), &id, 0, &attachment.meta),
        Ok(false),
        "nothing staged"
    );
    let staged = bob.staging_path(&user("alice"), &attachment.meta.sha256);
    assert!(
        !staged.to_string_lossy().contains("alice"),
        "names are hashed at rest"
    );
    std::fs::create_dir_all(staged.parent().expect("folder")).expect("mkdir");
    std::fs::write(&staged, &sealed).expect("stage");
    assert_eq!(
        bob.claim(&user("alice"), &id, 0, &attachment.meta),
        Ok(true)
    );
    assert!(!staged.exists(), "moved, not copied");
    assert_eq!(
        bob.claim(&user("alice"), &id, 0, &attachment.meta),
        Ok(true),
        "a retry"
    );

    // One flipped byte in the stored file: refused, and nothing written at the destination.
    let kept = bob.locator(&user("alice"), &id, 0);
    let mut bytes = std::fs::read(&kept).expect("read");
    bytes[20] ^= 1;
    std::fs::write(&kept, &bytes).expect("damage");
    let dest = files.path().join("out.jpg");
    let err = bob.save(&user("alice"), &id, 0, &attachment, &dest);
    assert_eq!(err, Err(AttachmentError::Damaged));
    assert!(!dest.exists());
    assert_eq!(
        std::fs::read_dir(files.path()).expect("list").count(),
        1,
        "no partial file"
    );
}

#[test]
fn an_expired_message_takes_its_attachment_files_with_it() {
    let (store_dir, files) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let store = open(store_dir.path());
    let id = MessageId::from_bytes([4; 16]);
    let attachment = store
        .seal_file(
            &user("bob"),
            &id,
            0,
            &source(files.path(), "f", b"soon gone"),
        )
        .expect("sealed");
    let message = StoredMessage {
        id,
        from: user("bob"),
        to: user("alice"),
        text: MessageText::parse("with a file").expect("text"),
        sent_at: Timestamp(10),
        direction: Direction::Incoming,
        delivery: Delivery::Received(Timestamp(10)),
        verification: Verification::Verified,
        ttl: None,
        expires_at: Some(Timestamp(100)),
        attachments: vec![attachment],
    };
    let link = Link {
        seq: 1,
        digest: Digest([9; 32]),
        prev: Digest::GENESIS,
    };
    store.store_incoming(&message, &link).expect("stored");
    let file = store.locator(&user("bob"), &id, 0);
    assert!(Path::new(&file).exists());
    assert_eq!(store.purge_expired(Timestamp(100)), Ok(1));
    assert!(!Path::new(&file).exists(), "deleted with its message");
}

#[test]
fn leftovers_of_a_crash_go_at_the_next_open_but_fresh_staged_files_stay() {
    let dir = TempDir::new().expect("tmp");
    let store = open(dir.path());
    let fresh = store.staging_path(&user("alice"), &Digest([1; 32]));
    drop(store);
    std::fs::create_dir_all(fresh.parent().expect("folder")).expect("mkdir");
    std::fs::write(&fresh, b"waiting for its envelope").expect("stage");
    let partial = dir.path().join("attachments").join(".x.partial-1-2");
    std::fs::write(&partial, b"half").expect("partial");
    let receiving = fresh.with_file_name("abc.part-3");
    std::fs::write(&receiving, b"half").expect("part");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let _store = open(dir.path());
    assert!(fresh.exists(), "a staged file of today stays");
    assert!(
        !partial.exists() && !receiving.exists(),
        "half-written files go"
    );
}
