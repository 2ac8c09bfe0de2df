use super::*;

fn identity(name: &str) -> DeviceIdentity {
    DeviceIdentity {
        user: user(name),
        ed25519: Secret32::new([1; 32]),
        x25519: Secret32::new([2; 32]),
        certificate_der: vec![3],
        ca_der: vec![4],
        ca_fingerprint: CaFingerprint::from_digest([5; 32]),
        server: "https://127.0.0.1:1".into(),
        rendezvous_addrs: vec![],
    }
}

fn request(name: &str) -> EnrollRequest {
    EnrollRequest {
        server: "https://127.0.0.1:1".into(),
        user: user(name),
        password: Password::new("pw".into()),
        ca_pin: None,
        keys: None,
        totp: None,
    }
}

#[test]
fn given_a_fresh_home_when_enrolling_then_the_identity_is_kept() {
    let store = InMemoryStore::default();
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect("enrolled");
    assert_eq!(store.identity().expect("read"), Some(identity("bob")));
}

#[test]
fn given_a_home_of_another_user_when_enrolling_then_it_is_refused() {
    let store = InMemoryStore::default();
    store.save_identity(&identity("alice")).expect("seed");
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    let err = block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect_err("refused");
    assert_eq!(err, EnrollCommandError::OtherUser(user("alice")));
    assert_eq!(store.identity().expect("read"), Some(identity("alice")));
}

#[test]
fn given_the_rendezvous_refuses_when_enrolling_then_nothing_is_kept() {
    let store = InMemoryStore::default();
    let enrollment = InMemoryEnrollment::answering(Err(EnrollError::InvalidCredentials));
    let err = block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect_err("refused");
    assert_eq!(
        err,
        EnrollCommandError::Enrollment(EnrollError::InvalidCredentials)
    );
    assert_eq!(store.identity().expect("read"), None);
}

#[test]
fn given_the_store_fails_when_enrolling_then_the_error_is_reported() {
    let store = InMemoryStore::default();
    store.fail_write_at(1);
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    let err = block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect_err("store");
    assert!(matches!(err, EnrollCommandError::Store(_)));
}

#[test]
fn given_an_enrolled_home_when_enrolling_again_then_the_same_keys_are_renewed() {
    let store = InMemoryStore::default();
    let first = identity("bob");
    store.save_identity(&first).expect("seed");
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));

    block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect("renewed");

    let sent = enrollment.requests.lock().expect("lock");
    assert_eq!(
        sent[0].keys,
        Some((first.ed25519.clone(), first.x25519.clone()))
    );
}

#[test]
fn given_a_fresh_home_when_enrolling_then_fresh_keys_are_asked_for() {
    let store = InMemoryStore::default();
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect("enrolled");
    assert_eq!(enrollment.requests.lock().expect("lock")[0].keys, None);
}
