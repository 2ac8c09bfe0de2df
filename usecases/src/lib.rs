//! Parley's application core: the ports it needs from the outside world, and the interactors
//! that run the product's rules on top of them.
//!
//! **Architecture invariant:** this crate depends on `parley-domain` only. Every outside need
//! (network, directory, disk, clock, events) is a trait in [`ports`]; adapters implement them and
//! binaries wire them. No tokio, no libp2p, no sled, no rustls here.
//!
//! CQRS: [`commands`] change state and return nothing but an error; [`queries`] return data and
//! change nothing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod commands;
pub mod ports;
pub mod queries;

#[cfg(any(test, feature = "testing"))]
pub mod contract;
#[cfg(any(test, feature = "testing"))]
#[allow(missing_docs)] // test doubles, documented at the module level
pub mod fakes;
