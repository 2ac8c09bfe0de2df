//! What Parley's end-to-end tests share: real binaries started on system-chosen loopback
//! ports, their printed lines read with timeouts that fail with a message, and every process
//! killed and reaped when its handle drops, also when the test panics. Dev-only: no product
//! crate depends on it, and it depends on no product crate (it speaks to the binaries through
//! their contract: arguments, printed lines, exit codes, JSON documents).
//!
//! - [`process`]: [`Proc`] (spawn, read and wait for printed lines, type into stdin, SIGTERM,
//!   SIGKILL; killed on drop), [`Group`] (a process group killed whole), [`tail`] of a log.
//! - [`wait`]: [`wait_for`] and [`WAIT`], the bound of every wait that does not say otherwise.
//! - [`bin`]: [`binary`], a workspace binary found next to the test executable.
//! - [`rendezvous`]: [`Rendezvous`], the one way to start `parley-rendezvous` (options for
//!   addresses, arguments, environment, logs and a launcher such as `ip netns exec`).
//! - [`peer`]: `parley` commands, [`enroll`], [`Daemon`] (its `user:`, `peer-id:`, `listen:`
//!   and `control:` lines), requests over the control socket, history helpers.
//! - [`https`]: raw HTTP/1.1 over TLS 1.3 for hostile-client tests.
//! - [`procfs`]: a running program from the outside: its core-file limit, environment and
//!   dumpability in `/proc`, and the files of a folder open to others.
//! - [`tools`]: root and programs on `PATH`, and [`skip`], the loud skip (a failure under `CI`).
//! - [`faults`]: the `LD_PRELOAD` library that makes syncs fail.
//! - [`window`]: Xvfb and tauri-driver for a test that drives the desktop app's window.
//! - [`netns`]: [`Lab`], network namespaces cabled into a public network with public hosts
//!   and homes behind NAT routers (nftables, conntrack, tc netem), whose programs start
//!   through the `via` launcher the process options take.
//!
//! Helpers of the same kind go beside these: a PostgreSQL server for the rendezvous's
//! database as a module like [`rendezvous`].
//!
//! A new suite adds `parley-testkit.workspace = true` to its `[dev-dependencies]` and starts
//! what it needs:
//!
//! ```no_run
//! use parley_testkit::{Daemon, Rendezvous, enroll, parley};
//!
//! let dir = tempfile::tempdir().expect("dir");
//! let rv = Rendezvous::start(&dir.path().join("rendezvous"));
//! let bob = dir.path().join("bob");
//! assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
//! let daemon = Daemon::start(&bob);
//! assert!(parley(&bob, &["status"]).status.success());
//! drop(daemon); // killed and reaped; so is the rendezvous when `rv` drops
//! ```
//!
//! Binaries are found next to the test executable (see [`bin`]): a crate's own binaries are
//! built before its tests, the others by `cargo build --workspace --bins`.

pub mod bin;
pub mod faults;
pub mod https;
pub mod netns;
pub mod peer;
pub mod process;
pub mod procfs;
pub mod rendezvous;
pub mod tools;
pub mod wait;
pub mod window;

pub use bin::binary;
pub use netns::{Home, Host, Lab, Nat};
pub use peer::{
    Daemon, control, enroll, enroll_invite, enroll_pinned, enroll_via, enrolled_pair, history,
    json, pair, parley, save_attachment, stderr, texts, texts_from,
};
pub use process::{Group, Log, Proc, tail};
pub use rendezvous::Rendezvous;
pub use tools::{is_root, runnable, skip};
pub use wait::{WAIT, wait_for, wait_within};
