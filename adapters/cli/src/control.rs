//! The control socket between `parley daemon` and the other subcommands: one JSON request per
//! line, one JSON response per line (a subscription streams one event per line).
//!
//! The socket lives in the home folder with mode 0600: only the owner can drive the daemon.

use serde::{Deserialize, Serialize};

/// The socket's file name inside the home folder.
pub const SOCKET: &str = "control.sock";
/// Longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Send a message and wait for the receipt.
    Send {
        /// Recipient.
        to: String,
        /// Text.
        text: String,
        /// Time to live (`30s`, `10m`, `1h`, `7d`), for a disappearing message.
        #[serde(default)]
        ttl: Option<String>,
        /// Absolute paths of files to attach.
        #[serde(default)]
        attachments: Vec<String>,
    },
    /// Decrypt an attachment into a new file.
    SaveAttachment {
        /// The other party.
        with: String,
        /// The message id.
        id: String,
        /// The attachment's index.
        index: usize,
        /// Absolute path of the new file.
        to: String,
    },
    /// One conversation.
    History {
        /// The other party.
        with: String,
    },
    /// Every conversation.
    Conversations,
    /// The node's state.
    Status,
    /// A contact's pinned keys and safety numbers.
    Contact {
        /// The contact.
        user: String,
    },
    /// Accept the keys a contact presented since the first contact.
    Trust {
        /// The contact.
        user: String,
    },
    /// Stream events (incoming messages, receipts) until the connection closes.
    Subscribe,
}

/// The daemon's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// Success, with data.
    Ok {
        /// The data (shape depends on the request).
        data: serde_json::Value,
    },
    /// Failure.
    Error {
        /// One sentence.
        error: String,
        /// A stable snake_case code.
        code: String,
    },
}
