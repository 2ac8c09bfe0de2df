use super::*;

/// Alice met bob (whose certificate carries `keys(0)`) and delivered one message.
fn alice_who_met_bob() -> World {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 1, "bob", "first contact").expect("delivered");
    w.transport.delivered_to.lock().expect("lock").clear();
    w
}

fn delivered_to(w: &World) -> Vec<String> {
    w.transport.delivered_to.lock().expect("lock").clone()
}

/// Alice holds a verified connection to one device of bob's, `name`, with `keys(seed)`.
fn connected_to_bob(w: &World, name: &str, seed: u8) {
    let device = InMemoryAddress {
        name: name.into(),
        keys: Some(keys(seed)),
    };
    w.transport
        .connected
        .lock()
        .expect("lock")
        .insert(user("bob"), vec![device]);
}

fn lookups(w: &World) -> usize {
    *w.directory.lookups.lock().expect("lock")
}

fn contact_of(w: &World, name: &str) -> parley_domain::Contact {
    w.store
        .contact(&user(name))
        .expect("read")
        .expect("a contact")
}

fn saw_key_change(w: &World) -> bool {
    w.events
        .0
        .lock()
        .expect("lock")
        .iter()
        .any(|e| matches!(e, Event::KeysChanged { .. }))
}

#[test]
fn given_an_impostor_published_last_when_sending_to_a_contact_then_the_device_with_the_pinned_key_gets_it()
 {
    let w = alice_who_met_bob();
    // Someone holding bob's password had a certificate made for new keys, and published
    // after the real bob.
    w.directory.set_devices(&user("bob"), &[keys(7), keys(0)]);

    send(&w, 2, "bob", "for the real bob").expect("delivered");

    assert_eq!(delivered_to(&w), ["peer-bob-1"]);
    assert_eq!(
        w.delivered_texts(0).last().map(String::as_str),
        Some("for the real bob")
    );
    assert_eq!(contact_of(&w, "bob").pending, None, "no key change");
    assert!(!saw_key_change(&w));
}

#[test]
fn given_only_a_device_with_other_keys_when_sending_then_it_is_a_key_change_as_ever() {
    let w = alice_who_met_bob();
    w.directory.set_devices(&user("bob"), &[keys(7)]);

    assert_eq!(
        send(&w, 2, "bob", "are you bob?"),
        Err(SendError::KeysChanged(user("bob")))
    );

    assert!(
        delivered_to(&w).is_empty(),
        "nothing reached the other keys"
    );
    let bob = contact_of(&w, "bob");
    assert_eq!((bob.keys, bob.pending), (keys(0), Some(keys(7))));
    assert!(saw_key_change(&w));
    assert_eq!(w.outbox_ids(), [id(2)], "kept until the user decides");
}

#[test]
fn given_the_outbox_waits_for_a_contact_when_an_impostor_is_listed_too_then_the_retry_goes_to_the_pinned_device()
 {
    let w = alice_who_met_bob();
    w.directory.set_offline(&user("bob"));
    assert_eq!(
        send(&w, 2, "bob", "while away"),
        Err(SendError::Offline(user("bob")))
    );
    w.directory.set_devices(&user("bob"), &[keys(7), keys(0)]);

    block_on(w.messaging.retry_outbox()).expect("retry");

    assert_eq!(delivered_to(&w), ["peer-bob-1"]);
    assert!(w.outbox_ids().is_empty());
    assert!(!saw_key_change(&w));
}

#[test]
fn given_a_name_never_met_with_two_devices_when_sending_then_the_newest_publication_is_met() {
    let w = alice_world();
    w.directory.set_devices(&user("bob"), &[keys(3), keys(4)]);

    send(&w, 1, "bob", "hello").expect("delivered");

    assert_eq!(*w.transport.probed.lock().expect("lock"), ["peer-bob-0"]);
    assert_eq!(contact_of(&w, "bob").keys, keys(3));
    assert_eq!(delivered_to(&w), ["peer-bob-0"]);
}

#[test]
fn given_a_connection_to_the_pinned_device_when_sending_then_the_rendezvous_is_not_asked() {
    let w = alice_who_met_bob();
    let before = lookups(&w);
    connected_to_bob(&w, "connected-bob", 0);

    send(&w, 2, "bob", "over the open connection").expect("delivered");

    assert_eq!(delivered_to(&w), ["connected-bob"]);
    assert_eq!(lookups(&w), before, "no look-up");
}

#[test]
fn given_a_connection_only_to_a_device_with_other_keys_when_sending_then_the_directory_decides() {
    let w = alice_who_met_bob();
    let before = lookups(&w);
    connected_to_bob(&w, "connected-impostor", 7);
    w.directory.set_devices(&user("bob"), &[keys(0)]);

    send(&w, 2, "bob", "for the real bob").expect("delivered");

    assert_eq!(delivered_to(&w), ["peer-bob-0"]);
    assert_eq!(lookups(&w), before + 1);
    assert!(!saw_key_change(&w));
}

#[test]
fn given_a_connected_device_when_asking_whether_a_contact_is_online_then_the_rendezvous_is_not_asked()
 {
    let w = alice_world();
    connected_to_bob(&w, "connected-bob", 0);

    let online = block_on(queries::online(&*w.directory, &*w.transport, &user("bob")));
    assert_eq!(online, Ok(true));
    assert_eq!(lookups(&w), 0);
    let online = block_on(queries::online(
        &*w.directory,
        &*w.transport,
        &user("carol"),
    ));
    assert_eq!(online, Ok(false), "neither connected nor listed");
    assert_eq!(lookups(&w), 1);
}

#[test]
fn choosing_among_devices_prefers_the_pinned_key_then_the_newest() {
    let listed = |seeds: &[u8]| -> Vec<InMemoryAddress> {
        seeds
            .iter()
            .map(|s| InMemoryAddress {
                name: format!("d{s}"),
                keys: Some(keys(*s)),
            })
            .collect()
    };
    let chosen = |seeds: &[u8], pinned: Option<u8>| {
        crate::commands::devices::choose(listed(seeds), pinned.map(keys).as_ref()).map(|a| a.name)
    };
    assert_eq!(chosen(&[7, 0, 5], Some(0)), Some("d0".into()));
    assert_eq!(chosen(&[7, 5], Some(0)), Some("d7".into()));
    assert_eq!(chosen(&[7, 5], None), Some("d7".into()));
    assert_eq!(chosen(&[], Some(0)), None);
    assert_eq!(chosen(&[], None), None);
}
