//! The control socket between `parley daemon` and the other subcommands: one JSON request per
//! line, one JSON response per line (a subscription streams one event per line).
//!
//! The socket lives in the home folder with mode 0600: only the owner can drive the daemon.
//! Requests carry domain values, parsed once where the user typed them; on the wire each is
//! its text form (the domain has no serde: the conversion lives here, in [`text_form`]).

use std::path::PathBuf;

use parley_domain::{MessageId, MessageText, Ttl, Username};
use serde::{Deserialize, Serialize};

/// Longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Send a message and wait for the receipt.
    Send {
        /// Recipient.
        #[serde(with = "text_form")]
        to: Username,
        /// Text.
        #[serde(with = "text_form")]
        text: MessageText,
        /// Time to live (`30s`, `10m`, `1h`, `7d`), for a disappearing message.
        #[serde(default, with = "text_form::option")]
        ttl: Option<Ttl>,
        /// Absolute paths of files to attach.
        #[serde(default)]
        attachments: Vec<PathBuf>,
    },
    /// Decrypt an attachment into a new file.
    SaveAttachment {
        /// The other party.
        #[serde(with = "text_form")]
        with: Username,
        /// The message id.
        #[serde(with = "text_form")]
        id: MessageId,
        /// The attachment's index.
        index: usize,
        /// Absolute path of the new file.
        to: PathBuf,
    },
    /// One conversation.
    History {
        /// The other party.
        #[serde(with = "text_form")]
        with: Username,
    },
    /// Every conversation.
    Conversations,
    /// The node's state.
    Status,
    /// A contact's pinned keys and safety numbers.
    Contact {
        /// The contact.
        #[serde(with = "text_form")]
        user: Username,
    },
    /// Accept the keys a contact presented since the first contact.
    Trust {
        /// The contact.
        #[serde(with = "text_form")]
        user: Username,
    },
    /// Turn the second factor on at the rendezvous.
    TotpEnable,
    /// Turn the second factor off, with a current code.
    TotpDisable {
        /// The code, as typed.
        code: String,
    },
    /// This user's devices, as their signed list names them.
    Devices,
    /// Stream events (incoming messages, receipts) until the connection closes.
    Subscribe,
}

/// The daemon's answer; `T` is the document the request calls for (`parley_peer::view`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response<T> {
    /// Success, with data.
    Ok {
        /// The document.
        data: T,
    },
    /// Failure.
    Error {
        /// One sentence.
        error: String,
        /// A stable snake_case code.
        code: String,
    },
}

/// The first answer to [`Request::Subscribe`]; events follow.
#[derive(Debug, Serialize, Deserialize)]
pub struct Subscribed {
    /// Always true.
    pub subscribed: bool,
}

/// A domain value on the wire: its text form, parsed again on the way in.
pub trait Wire: Sized {
    /// The text form.
    fn wire(&self) -> String;
    /// The value of a text form, or why it is none.
    fn from_wire(raw: &str) -> Result<Self, String>;
}

impl Wire for Username {
    fn wire(&self) -> String {
        self.to_string()
    }
    fn from_wire(raw: &str) -> Result<Self, String> {
        Self::parse(raw).map_err(|e| e.to_string())
    }
}

impl Wire for MessageText {
    fn wire(&self) -> String {
        self.as_str().to_owned()
    }
    fn from_wire(raw: &str) -> Result<Self, String> {
        Self::parse(raw).map_err(|e| e.to_string())
    }
}

impl Wire for Ttl {
    fn wire(&self) -> String {
        self.to_string()
    }
    fn from_wire(raw: &str) -> Result<Self, String> {
        Self::parse(raw).map_err(|e| e.to_string())
    }
}

impl Wire for MessageId {
    fn wire(&self) -> String {
        self.to_string()
    }
    fn from_wire(raw: &str) -> Result<Self, String> {
        Self::parse(raw).map_err(|e| e.to_string())
    }
}

/// `serde(with)` for [`Wire`] values (and, in [`option`](text_form::option), optional ones).
pub mod text_form {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::Wire;

    /// Writes the text form.
    pub fn serialize<T: Wire, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.wire())
    }

    /// Reads a text form.
    pub fn deserialize<'de, T: Wire, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let raw = String::deserialize(d)?;
        T::from_wire(&raw).map_err(D::Error::custom)
    }

    /// `serde(with)` for an optional value.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        use super::Wire;

        /// Writes the text form, or `null`.
        pub fn serialize<T: Wire, S: Serializer>(
            value: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => s.serialize_str(&v.wire()),
                None => s.serialize_none(),
            }
        }

        /// Reads a text form, or `null`.
        pub fn deserialize<'de, T: Wire, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|raw| T::from_wire(&raw).map_err(D::Error::custom))
                .transpose()
        }
    }
}
