use std::path::Path;

use super::*;

#[test]
fn given_attachments_when_sending_then_each_is_sealed_named_in_the_header_and_sent_ahead() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));

    send_with_files(&w, 1, &[("a.txt", b"first file"), ("b.bin", &[0, 1, 2])]).expect("sent");

    let delivered = w.transport.delivered.lock().expect("lock").clone();
    let opened = w
        .device(0)
        .open(&delivered[0].bytes, &keys(ALICE).ed25519)
        .expect("opens");
    let names: Vec<&str> = opened
        .header
        .attachments
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["a.txt", "b.bin"]);
    assert_eq!(opened.body.attachment_keys.len(), 2, "keys travel sealed");
    for (i, file) in delivered[0].attachments.iter().enumerate() {
        let sealed = w.store.sealed_file(&file.locator).expect("kept sealed");
        assert_eq!(file.sha256, opened.header.attachments[i].sha256);
        assert_ne!(sealed, b"first file", "never kept in the clear");
    }
}

#[test]
fn given_an_attachment_over_the_cap_or_unreadable_when_sending_then_nothing_is_kept() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    *w.store.max_attachment.lock().expect("lock") = 4;
    let err = send_with_files(&w, 1, &[("big.bin", b"12345")]).expect_err("too large");
    assert_eq!(err.code(), "attachment_too_large");
    let err = block_on(w.messaging.send(SendMessage {
        id: id(2),
        to: user("bob"),
        text: text("missing"),
        ttl: None,
        attachments: vec![AttachmentSource {
            name: "gone".into(),
            path: "/nowhere".into(),
        }],
    }))
    .expect_err("unreadable");
    assert_eq!(
        err,
        SendError::Attachment(AttachmentError::Unreadable("/nowhere".into()))
    );
    assert!(w.store.all().is_empty());
    // A second file that fails takes the first one's sealed copy with it.
    *w.store.max_attachment.lock().expect("lock") = 0;
    let err = block_on(w.messaging.send(SendMessage {
        id: id(3),
        to: user("bob"),
        text: text("two files"),
        ttl: None,
        attachments: vec![
            AttachmentSource {
                name: "ok".into(),
                path: "/home/alice/big.bin".into(),
            },
            AttachmentSource {
                name: "gone".into(),
                path: "/nowhere".into(),
            },
        ],
    }));
    assert!(err.is_err());
    assert_eq!(
        w.store
            .sealed_file(&w.store.locator(&user("alice"), &id(3), 0)),
        None
    );
}

/// Bob seals message `n` with one attachment (`sealed`, already encrypted) to alice.
fn bob_with_attachment(w: &World, n: u8, sealed: &[u8], named: &[u8]) -> Vec<u8> {
    let header = Header {
        id: id(n),
        from: user("bob"),
        to: user("alice"),
        sent_at: Timestamp(5),
        ttl: None,
        seq: 1,
        prev: Digest::GENESIS,
        attachments: vec![parley_domain::AttachmentRef {
            name: "photo.jpg".into(),
            size: named.len() as u64,
            sha256: crate::fakes::digest_for_tests(named),
        }],
    };
    let key = Secret32::new([0x11; 32]);
    let plain: Vec<u8> = sealed.iter().map(|b| b ^ 0x11).collect();
    let body = Body {
        text: text("a photo"),
        attachment_keys: vec![parley_domain::AttachmentKey {
            key,
            plain_sha256: crate::fakes::digest_for_tests(&plain),
        }],
    };
    w.device(0)
        .seal(&header, &body, &keys(ALICE).x25519.expect("x"))
        .expect("sealed")
        .bytes
}

#[test]
fn given_an_attachment_ahead_of_its_envelope_when_receiving_then_it_is_kept_and_can_be_saved() {
    let w = alice_world();
    let sealed = b"\x61\x62encrypted-bytes";
    w.store.stage(&user("bob"), sealed);

    w.messaging
        .receive(from_bob(bob_with_attachment(&w, 1, sealed, sealed)))
        .expect("stored with its attachment");

    let written = w
        .messaging
        .save_attachment(&user("bob"), &id(1), 0, Path::new("/tmp/photo.jpg"))
        .expect("saved");
    assert_eq!(written, sealed.len() as u64);
    let saved = w
        .store
        .saved
        .lock()
        .expect("lock")
        .get(Path::new("/tmp/photo.jpg"))
        .cloned();
    let expected: Vec<u8> = sealed.iter().map(|b| b ^ 0x11).collect();
    assert_eq!(saved, Some(expected));
    assert!(matches!(
        w.messaging
            .save_attachment(&user("bob"), &id(1), 1, Path::new("/tmp/x")),
        Err(SaveError::NoAttachment { count: 1, .. })
    ));
    assert!(matches!(
        w.messaging
            .save_attachment(&user("bob"), &id(1), 0, Path::new("/tmp/photo.jpg")),
        Err(SaveError::Attachment(AttachmentError::Destination(_)))
    ));
}

#[test]
fn given_a_missing_or_swapped_attachment_when_receiving_then_the_message_is_refused() {
    let w = alice_world();
    let named = b"what the header names";
    // Nothing arrived ahead of the envelope.
    let err = w
        .messaging
        .receive(from_bob(bob_with_attachment(&w, 1, named, named)))
        .expect_err("missing");
    assert_eq!(err, ReceiveError::AttachmentMissing { index: 0 });
    // Other bytes arrived: their digest is not the one signed in the header.
    w.store.stage(&user("bob"), b"swapped bytes");
    let err = w
        .messaging
        .receive(from_bob(bob_with_attachment(&w, 2, named, named)))
        .expect_err("swapped");
    assert_eq!(err, ReceiveError::AttachmentMissing { index: 0 });
    // Staged by someone else than the sender.
    w.store.stage(&user("mallory"), named);
    assert!(
        w.messaging
            .receive(from_bob(bob_with_attachment(&w, 3, named, named)))
            .is_err()
    );
    assert!(w.store.all().is_empty(), "nothing kept, so no receipt");
}
