//! This device's prekey secrets in the sled store: made, signed by the device key, rotated,
//! kept while a first message may still need them, and the one-time ones deleted with the
//! message they opened.

use parley_domain::{
    CaFingerprint, Delivery, DeviceIdentity, Digest, Direction, Link, MessageId, MessageText,
    Secret32, StoredMessage, Timestamp, Username, Verification,
};
use parley_envelope::Sealer;
use parley_store::{Store, Unlock};
use parley_usecases::ports::{Durability, IdentityStore, PrekeySecrets, SessionUpdate, Sessions};
use tempfile::TempDir;

const DAY: i64 = 24 * 3600 * 1000;

fn user(name: &str) -> Username {
    Username::parse(name).expect("name")
}

fn enrolled(dir: &std::path::Path) -> (Store, Sealer) {
    let store = Store::open(dir, Unlock::KeyFile).expect("opens");
    let identity = DeviceIdentity {
        user: user("alice"),
        ed25519: Secret32::new([0x21; 32]),
        x25519: Secret32::new([0x42; 32]),
        certificate_der: vec![0x30, 0x00],
        ca_der: vec![0x30, 0x00],
        ca_fingerprint: CaFingerprint::from_digest([1; 32]),
        server: "https://127.0.0.1:1".into(),
        rendezvous_addrs: vec![],
    };
    store.save_identity(&identity).expect("identity");
    let sealer = Sealer::new(&identity.ed25519, &identity.x25519);
    (store, sealer)
}

#[test]
fn prekeys_are_signed_by_the_device_key_and_their_secrets_are_held() {
    let dir = TempDir::new().expect("tempdir");
    let (store, sealer) = enrolled(dir.path());
    let upload = store.prepare_upload(5, Timestamp(DAY)).expect("upload");
    let device = sealer.ed25519_public();
    assert!(upload.signed_prekey.verifies(&device));
    assert!(upload.kem_prekey.verifies(&device));
    assert_eq!(upload.one_time.len(), 5);
    let mut ids: Vec<u32> = upload.one_time.iter().map(|k| k.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5, "distinct ids");
    for opk in &upload.one_time {
        let secrets = store
            .responder_secrets(upload.signed_prekey.id, Some(opk.id), upload.kem_prekey.id)
            .expect("read")
            .expect("held");
        assert_eq!(secrets.signed_prekey.public(), upload.signed_prekey.key);
        assert_eq!(
            secrets.one_time_prekey.expect("one-time held").public(),
            opk.key
        );
        assert!(
            parley_envelope::kem::MlKem768Prekey::from_secret_bytes(&secrets.kem_secret).is_ok(),
            "a KEM secret key"
        );
    }
    // Held across a restart.
    drop(store);
    let store = Store::open(dir.path(), Unlock::KeyFile).expect("reopens");
    assert!(
        store
            .responder_secrets(upload.signed_prekey.id, None, upload.kem_prekey.id)
            .expect("read")
            .is_some()
    );
}

#[test]
fn signed_and_kem_prekeys_rotate_weekly_and_replaced_ones_stay_for_a_while() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = enrolled(dir.path());
    let first = store.prepare_upload(0, Timestamp(DAY)).expect("upload");
    let again = store.prepare_upload(0, Timestamp(2 * DAY)).expect("upload");
    assert_eq!(again.signed_prekey, first.signed_prekey, "not due yet");
    assert_eq!(again.kem_prekey, first.kem_prekey);
    let rotated = store.prepare_upload(0, Timestamp(9 * DAY)).expect("upload");
    assert_ne!(rotated.signed_prekey.id, first.signed_prekey.id);
    assert_ne!(rotated.kem_prekey.id, first.kem_prekey.id);
    let old = |store: &Store| {
        store
            .responder_secrets(first.signed_prekey.id, None, first.kem_prekey.id)
            .expect("read")
    };
    assert!(
        old(&store).is_some(),
        "a first message made from the old ones still opens"
    );
    store
        .prepare_upload(0, Timestamp(50 * DAY))
        .expect("upload");
    assert!(old(&store).is_none(), "gone after the keeping time");
}

#[test]
fn a_one_time_prekey_goes_with_the_first_message_it_opened() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = enrolled(dir.path());
    let upload = store.prepare_upload(2, Timestamp(DAY)).expect("upload");
    let used = upload.one_time[0].id;
    let message = StoredMessage {
        id: MessageId::from_bytes([1; 16]),
        from: user("bob"),
        to: user("alice"),
        text: MessageText::parse("hello").expect("text"),
        sent_at: Timestamp(DAY),
        direction: Direction::Incoming,
        delivery: Delivery::Received(Timestamp(DAY)),
        verification: Verification::Verified,
        ttl: None,
        expires_at: None,
        attachments: vec![],
    };
    let link = Link {
        seq: 1,
        digest: Digest([9; 32]),
        prev: Digest::GENESIS,
    };
    store
        .store_incoming_in_session_deferred(
            &message,
            &link,
            &SessionUpdate {
                with: &user("bob"),
                book: &parley_domain::ratchet::SessionBook::default(),
                used_one_time_prekey: Some(used),
            },
        )
        .expect("stored");
    store.sync().expect("sync");
    let secrets = |id| {
        store
            .responder_secrets(upload.signed_prekey.id, Some(id), upload.kem_prekey.id)
            .expect("read")
            .expect("held")
    };
    assert!(secrets(used).one_time_prekey.is_none(), "used up");
    assert!(secrets(upload.one_time[1].id).one_time_prekey.is_some());
}
