//! What a home router does to packets: the nftables ruleset of its namespace, one per kind of
//! NAT.

/// How a home router maps its hosts' connections onto its public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// nftables `masquerade`: Linux keeps a connection's source port when it is free on the
    /// public address, and maps one local port to the same public port whatever the
    /// destination (endpoint-independent mapping), so TCP hole punching can work.
    PortPreserving,
    /// nftables `masquerade random,fully-random`: every connection gets a random public port,
    /// a new one for each destination (what hole punching cannot guess).
    Symmetric,
}

/// The router's interface on the public network.
pub(super) const WAN: &str = "wan";
/// The router's interface on its home network.
pub(super) const LAN: &str = "lan";

/// The ruleset of a router doing `nat` between [`LAN`] and [`WAN`]: source NAT on the way
/// out; from the wan side only what belongs to a connection a home host opened (forwarded)
/// or the router itself opened (input); everything else from the wan side dropped without
/// an answer. No port forwarding.
pub(super) fn ruleset(nat: Nat) -> String {
    let masquerade = match nat {
        Nat::PortPreserving => "masquerade",
        Nat::Symmetric => "masquerade random,fully-random",
    };
    format!(
        "table ip parley_router {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"{WAN}\" {masquerade}
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"{LAN}\" oifname \"{WAN}\" accept
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"{WAN}\" ct state established,related accept
    iifname \"{WAN}\" drop
  }}
}}
"
    )
}
