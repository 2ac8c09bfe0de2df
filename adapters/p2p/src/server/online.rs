//! The directory's map of who is online: one entry per (user, device), each held by the
//! connection that published it.
//!
//! Several certificates of one name (a second device, a home enrolled again with new keys, or
//! someone who knows the password) are several devices, and none can replace or remove
//! another's entry: a publication replaces only its own device's entry, and the close of a
//! connection removes only the entry that connection holds. A device that published on a new
//! connection holds its entry there, so the late close of its old, silent one changes nothing.
//! When the connection holding an entry closes while the device has another one open (the
//! rendezvous's AutoNAT dial-back is a second connection, and a publication may travel on
//! either), the entry passes to that one; it goes with the device's last connection.
//!
//! A look-up answers at most [`MAX_LOOKUP_DEVICES`] devices, the newest publications first.
//! What is held is bounded by the connections the guard admits (one entry per connection at
//! most).

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId, swarm::ConnectionId};
use parley_domain::Username;

use crate::protocol::MAX_LOOKUP_DEVICES;

/// One device, as the directory tells a user's devices apart: the peer id of its
/// certificate's Ed25519 key. (A device name the certificate carries would join it here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Device {
    /// The peer id of the device's certificate key.
    pub(super) peer: PeerId,
}

/// Where an entry is filed: the certificate's user and its device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    /// The user the certificate names.
    pub(super) user: Username,
    /// The device the certificate is for.
    pub(super) device: Device,
}

/// One device online: where it is, and the connection that holds the entry.
#[derive(Debug)]
struct Entry {
    device: Device,
    connection: ConnectionId,
    addrs: Vec<Multiaddr>,
}

/// The map. Every method is a plain update of memory; the swarm task calls them.
#[derive(Debug, Default)]
pub(super) struct Online {
    /// Per user, its devices' entries, the newest publication first.
    users: HashMap<Username, Vec<Entry>>,
    /// The entry each connection holds (at most one: a connection has one certificate).
    held: HashMap<ConnectionId, Key>,
    /// Each peer's open connections, oldest first.
    connections: HashMap<PeerId, Vec<ConnectionId>>,
}

impl Online {
    /// A connection of `peer` is open.
    pub(super) fn connected(&mut self, peer: PeerId, connection: ConnectionId) {
        let open = self.connections.entry(peer).or_default();
        if !open.contains(&connection) {
            open.push(connection);
        }
    }

    /// `key`'s device published `addrs` on `connection`: its entry (and only its) is replaced,
    /// held by `connection` from now on, and becomes the newest.
    pub(super) fn publish(&mut self, key: Key, connection: ConnectionId, addrs: Vec<Multiaddr>) {
        if self.held.get(&connection).is_some_and(|held| *held != key) {
            // A connection has one certificate, so this cannot be; keep one entry per
            // connection all the same.
            self.close_entry(connection, None);
        }
        let entries = self.users.entry(key.user.clone()).or_default();
        if let Some(at) = entries.iter().position(|e| e.device == key.device) {
            let old = entries.remove(at);
            if old.connection != connection {
                self.held.remove(&old.connection);
            }
        }
        entries.insert(
            0,
            Entry {
                device: key.device,
                connection,
                addrs,
            },
        );
        self.held.insert(connection, key);
    }

    /// `connection` of `peer` closed: the entry it holds passes to the peer's newest other
    /// open connection, or goes when there is none. Any other entry stays.
    pub(super) fn closed(&mut self, peer: PeerId, connection: ConnectionId) {
        let successor = match self.connections.get_mut(&peer) {
            Some(open) => {
                open.retain(|c| *c != connection);
                let newest = open.last().copied();
                if open.is_empty() {
                    self.connections.remove(&peer);
                }
                newest
            }
            None => None,
        };
        self.close_entry(connection, successor);
    }

    /// The entry `connection` holds passes to `successor`, or goes.
    fn close_entry(&mut self, connection: ConnectionId, successor: Option<ConnectionId>) {
        let Some(key) = self.held.remove(&connection) else {
            return;
        };
        let Some(entries) = self.users.get_mut(&key.user) else {
            return;
        };
        match successor {
            Some(next) => {
                if let Some(entry) = entries.iter_mut().find(|e| e.device == key.device) {
                    entry.connection = next;
                    self.held.insert(next, key);
                }
            }
            None => {
                entries.retain(|e| e.device != key.device);
                if entries.is_empty() {
                    self.users.remove(&key.user);
                }
            }
        }
    }

    /// `user`'s devices online, the newest publication first, at most [`MAX_LOOKUP_DEVICES`]:
    /// each device's peer id and addresses. None alike for an unknown and an offline user.
    pub(super) fn devices(
        &self,
        user: &Username,
    ) -> impl Iterator<Item = (PeerId, &[Multiaddr])> + '_ {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .take(MAX_LOOKUP_DEVICES)
            .map(|e| (e.device.peer, e.addrs.as_slice()))
    }

    /// How many users have at least one device online.
    pub(super) fn users(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("a valid test name")
    }

    fn key(name: &str, peer: PeerId) -> Key {
        Key {
            user: user(name),
            device: Device { peer },
        }
    }

    fn addr(port: u16) -> Vec<Multiaddr> {
        vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")]
    }

    /// The peer ids `name` is found at, in the answer's order.
    fn found(online: &Online, name: &str) -> Vec<PeerId> {
        online.devices(&user(name)).map(|(peer, _)| peer).collect()
    }

    /// One device of `name` connected on `connection` and published there.
    fn online_at(online: &mut Online, name: &str, peer: PeerId, connection: usize, port: u16) {
        let connection = ConnectionId::new_unchecked(connection);
        online.connected(peer, connection);
        online.publish(key(name, peer), connection, addr(port));
    }

    #[test]
    fn a_second_certificate_of_a_name_leaving_does_not_take_the_first_with_it() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut online = Online::default();
        online_at(&mut online, "bob", a, 1, 1001);
        online_at(&mut online, "bob", b, 2, 1002);
        assert_eq!(found(&online, "bob"), [b, a], "newest publication first");

        online.closed(b, ConnectionId::new_unchecked(2));
        assert_eq!(found(&online, "bob"), [a]);
        online.closed(a, ConnectionId::new_unchecked(1));
        assert_eq!(found(&online, "bob"), []);
        assert_eq!(online.users(), 0);
    }

    #[test]
    fn the_first_leaving_leaves_the_second() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut online = Online::default();
        online_at(&mut online, "bob", a, 1, 1001);
        online_at(&mut online, "bob", b, 2, 1002);
        online.closed(a, ConnectionId::new_unchecked(1));
        assert_eq!(found(&online, "bob"), [b]);
        assert_eq!(online.users(), 1);
    }

    #[test]
    fn the_late_close_of_an_old_connection_keeps_the_entry_published_on_the_new_one() {
        let b = PeerId::random();
        let mut online = Online::default();
        online_at(&mut online, "bob", b, 1, 1001);
        // B comes back on a new connection and publishes there; the old one is closed later.
        online_at(&mut online, "bob", b, 2, 1002);
        online.closed(b, ConnectionId::new_unchecked(1));
        let answer: Vec<_> = online
            .devices(&user("bob"))
            .map(|(peer, addrs)| (peer, addrs.to_vec()))
            .collect();
        assert_eq!(answer, [(b, addr(1002))], "one entry, the newest addresses");
        online.closed(b, ConnectionId::new_unchecked(2));
        assert_eq!(found(&online, "bob"), []);
    }

    #[test]
    fn the_entry_passes_to_another_open_connection_of_the_same_device() {
        let b = PeerId::random();
        let mut online = Online::default();
        online_at(&mut online, "bob", b, 1, 1001);
        // A second connection (the rendezvous's dial-back) carried the next publication, then
        // closes: the device is still connected on the first.
        online_at(&mut online, "bob", b, 2, 1002);
        online.closed(b, ConnectionId::new_unchecked(2));
        assert_eq!(found(&online, "bob"), [b]);
        online.closed(b, ConnectionId::new_unchecked(1));
        assert_eq!(found(&online, "bob"), []);
    }

    #[test]
    fn a_publication_replaces_only_its_own_device_and_moves_it_first() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut online = Online::default();
        online_at(&mut online, "bob", a, 1, 1001);
        online_at(&mut online, "bob", b, 2, 1002);
        online.publish(key("bob", a), ConnectionId::new_unchecked(1), addr(2001));
        let answer: Vec<_> = online
            .devices(&user("bob"))
            .map(|(peer, addrs)| (peer, addrs.to_vec()))
            .collect();
        assert_eq!(answer, [(a, addr(2001)), (b, addr(1002))]);
    }

    #[test]
    fn users_do_not_share_entries_and_an_unknown_name_is_an_empty_answer() {
        let (a, c) = (PeerId::random(), PeerId::random());
        let mut online = Online::default();
        online_at(&mut online, "bob", a, 1, 1001);
        online_at(&mut online, "carol", c, 2, 1002);
        assert_eq!(found(&online, "bob"), [a]);
        assert_eq!(found(&online, "carol"), [c]);
        assert_eq!(found(&online, "nobody"), []);
        online.closed(c, ConnectionId::new_unchecked(2));
        assert_eq!(found(&online, "bob"), [a]);
    }

    #[test]
    fn a_look_up_answers_the_newest_publishers_up_to_the_bound() {
        let mut online = Online::default();
        let peers: Vec<PeerId> = (0..MAX_LOOKUP_DEVICES + 3)
            .map(|_| PeerId::random())
            .collect();
        for (i, peer) in peers.iter().enumerate() {
            online_at(&mut online, "bob", *peer, i, 1000);
        }
        let newest: Vec<PeerId> = peers
            .iter()
            .rev()
            .take(MAX_LOOKUP_DEVICES)
            .copied()
            .collect();
        assert_eq!(found(&online, "bob"), newest);
        // The oldest comes back into the answer when it publishes again.
        online.publish(
            key("bob", peers[0]),
            ConnectionId::new_unchecked(0),
            addr(1),
        );
        assert_eq!(found(&online, "bob")[0], peers[0]);
    }

    #[test]
    fn a_connection_that_never_published_removes_nothing() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut online = Online::default();
        online_at(&mut online, "bob", a, 1, 1001);
        online.connected(b, ConnectionId::new_unchecked(2));
        online.closed(b, ConnectionId::new_unchecked(2));
        assert_eq!(found(&online, "bob"), [a]);
    }
}
