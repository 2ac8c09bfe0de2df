// The documents the Parley app sends to its window, as JSDoc types.
// Generated from the Rust view types (adapters/peer/src/view.rs); do not edit by hand:
// PARLEY_BLESS=1 cargo test -p parley-peer --test types

/**
 * An attachment of a message.
 * @typedef {Object} Attachment
 * @property {number} index Its position in the message, from 0.
 * @property {string} name Its file name.
 * @property {string} sha256 SHA-256 of its plaintext, hex.
 * @property {number} size Its size in bytes.
 */

/**
 * What the window should show, with what it needs for that screen.
 * @typedef {Object} Boot
 * @property {Defaults} defaults What to offer on the first-run screen.
 * @property {string} home The home folder.
 * @property {string|null} [message] For `fatal`: why.
 * @property {Phase} phase `enroll`, `unlock`, `ready` or `fatal`.
 * @property {boolean} store_exists Whether the home has a store already (then enrolling asks no passphrase).
 * @property {string|null} [user] The enrolled user, once known.
 * @property {string|null} [warning] Something the user should know (trust on first use, a key kept in a file).
 */

/**
 * The device certificate as `status` shows it.
 * @typedef {Object} Certificate
 * @property {number} days_left Whole days left (0 when expired or within a day of it).
 * @property {string} expires_at When it expires (RFC 3339).
 * @property {string|null} [warning] One sentence from 7 days before expiry (what to do), and once expired; else absent.
 */

/**
 * A received chain's state.
 * @typedef {Object} Chain
 * @property {number} faults How many messages failed the chain check.
 * @property {number} last_seq The highest position received.
 * @property {[number, number][]} missing Missing positions, as inclusive ranges `[from, to]`.
 * @property {Integrity} state Whether it holds together.
 */

/**
 * The two chains of a conversation.
 * @typedef {Object} Chains
 * @property {Chain} incoming The contact's chain towards this device, as received.
 * @property {Sealed} outgoing This device's chain towards the contact.
 */

/**
 * A contact connected now.
 * @typedef {Object} Connection
 * @property {Path} path Direct when any of its connections is, else relayed.
 * @property {string} peer_id Its libp2p peer id.
 * @property {string} user The contact.
 */

/**
 * A contact: safety numbers, and whether new keys wait for a decision.
 * @typedef {Object} Contact
 * @property {boolean} keys_changed Whether the contact presented other keys since they were pinned.
 * @property {string|null} [pending_safety_number] The safety number the new keys would give.
 * @property {string} pinned_at When the keys were pinned (RFC 3339).
 * @property {RatchetView} ratchet How far the conversation's keys have moved on.
 * @property {string} safety_number The safety number with the pinned keys (60 digits).
 * @property {string} user The contact.
 */

/**
 * A conversation in the list: the contact, how many messages, how many unread, the newest.
 * @typedef {Object} Conversation
 * @property {Message} last The newest message.
 * @property {number} messages How many messages the conversation holds.
 * @property {boolean|null} [online] Whether the contact is online; `null` when not known.
 * @property {RatchetView} ratchet How far the conversation's keys have moved on.
 * @property {number} unread How many incoming messages are unread.
 * @property {string} with The other party.
 */

/**
 * Values offered on the first-run screen.
 * @typedef {Object} Defaults
 * @property {string|null} [fingerprint] Its CA fingerprint.
 * @property {string|null} [invite] An invite the app was opened with (`parley://join?…`), as given: the screen reads it as if it were pasted into its Invite field.
 * @property {string|null} [server] The rendezvous's address.
 */

/**
 * Where a message stands.
 * @typedef {"pending"|"queued"|"delivered"|"received"|"rejected"} Delivery
 */

/**
 * The signed device list held, in short.
 * @typedef {Object} DeviceListSummary
 * @property {number} devices How many devices it names.
 * @property {boolean} this_device Whether it names this device (false: contacts see this device as a key change).
 * @property {number} version Its version.
 */

/**
 * Who wrote a message.
 * @typedef {"outgoing"|"incoming"} Direction
 */

/**
 * What watchers receive (`{"event": kind, ...}`): the control socket's subscribers and the window.
 * @typedef {{event: "message", message: Message}|{event: "stored", message: Message}|{event: "delivered", id: string, to: string}|{event: "queued", id: string, to: string}|{event: "keys_changed", user: string}|{event: "refused", from: string, reason: string}|{count: number, event: "expired"}|{event: "presence", online: boolean, user: string}|{event: "status", status: Status}|{event: "stopped", message: string}} Event
 */

/**
 * A conversation, oldest first, and both directions' chains (`history --json`).
 * @typedef {Object} History
 * @property {Chains} chain Both chains.
 * @property {Message[]} messages The messages not expired, oldest first.
 * @property {string} with The other party.
 */

/**
 * How a received chain holds together.
 * @typedef {"empty"|"intact"|"gap"|"faulty"} Integrity
 */

/**
 * An invite read for the first-run screen: what it fills in, for the user to see before enrolling.
 * @typedef {Object} Invite
 * @property {string} fingerprint The CA fingerprint to pin (`sha256:` and 64 lowercase hex digits).
 * @property {string} server The rendezvous's HTTPS address.
 */

/**
 * A message (the contract's `id`, `from`, `to`, `text`, `sent_at`, `verified`, and more).
 * @typedef {Object} Message
 * @property {Attachment[]} attachments Its attachments, in order.
 * @property {Delivery} delivery Where it stands.
 * @property {string|null} [delivery_at] When the receipt came back (outgoing) or it was stored (incoming); refused: when.
 * @property {Direction} direction Sent or received by this device.
 * @property {string|null} [expires_at] When it disappears (RFC 3339), for a disappearing message.
 * @property {string} from The sender.
 * @property {string} id 32 hex digits.
 * @property {string|null} [reason] Why it is not verified; `null` when it is.
 * @property {string} sent_at When it was written (RFC 3339).
 * @property {string} text The text, to be shown as text only.
 * @property {string} to The recipient.
 * @property {string|null} [ttl] Its time to live (`30s`, `10m`, `1h`, `7d`), for a disappearing message.
 * @property {string} verification `verified`, or the code of the chain fault (`fork`, `broken_chain`).
 * @property {boolean} verified Whether it fits the sender's chain.
 */

/**
 * What the window's send comes to: delivered, or kept in the outbox to go out later.
 * @typedef {{delivered: boolean, id: string, queued: boolean, to: string}|{delivered: boolean, note: string, queued: boolean}} Outcome
 */

/**
 * How a connection to a contact runs.
 * @typedef {"direct"|"relayed"} Path
 */

/**
 * The screen a home calls for.
 * @typedef {"enroll"|"unlock"|"ready"|"fatal"} Phase
 */

/**
 * How far a conversation's keys have moved on (`conversations --json`).
 * @typedef {Object} RatchetView
 * @property {string|null} [last_step_at] When the keys last moved on (RFC 3339), `null` before the first step.
 * @property {number} steps DH ratchet steps of both sides.
 */

/**
 * Whether other peers can dial this device directly.
 * @typedef {"public"|"private"|"unknown"} Reachability
 */

/**
 * A conversation counted as read.
 * @typedef {Object} Read
 * @property {string} with The other party.
 */

/**
 * A refusal: a stable snake_case code and one sentence that says what to do.
 * @typedef {Object} Refusal
 * @property {string} code The stable code.
 * @property {string} message One sentence.
 */

/**
 * The relay slot as `status` shows it.
 * @typedef {Object} Relay
 * @property {string[]} addrs The circuit addresses it gives, each ending in `/p2p-circuit/p2p/<own id>`.
 * @property {boolean} reserved Whether the rendezvous's relay holds a slot for this device now.
 */

/**
 * The rendezvous as `status` shows it.
 * @typedef {Object} Rendezvous
 * @property {string[]} addrs Its p2p addresses, as enrolled.
 * @property {boolean} connected Whether the node is connected to it and published.
 */

/**
 * An attachment decrypted into a new file.
 * @typedef {Object} Saved
 * @property {number} bytes Its size in bytes.
 * @property {string} saved The new file.
 */

/**
 * This device's own chain towards a contact.
 * @typedef {Object} Sealed
 * @property {number} last_seq The last position used.
 * @property {string} state Always `sealed`.
 */

/**
 * A file picked for sending, kept until its message is sealed.
 * @typedef {Object} Staged
 * @property {string} name Its file name.
 * @property {number} size Its size in bytes.
 * @property {string} token What names it in `send`'s `attachments`.
 */

/**
 * The peer's state (`status --json`).
 * @typedef {Object} Status
 * @property {Certificate} certificate The device certificate: when it expires, and a warning when that is near.
 * @property {Connection[]} connections The contacts connected now, one entry each.
 * @property {DeviceListSummary|null} [device_list] The user's signed device list as this device holds it; absent until one is held.
 * @property {string|null} [home] The home folder: in the window's status only.
 * @property {string[]} listen_addrs Addresses the node listens on.
 * @property {number} outbox Messages waiting for a receipt.
 * @property {string} peer_id This device's libp2p peer id.
 * @property {number} queued Of the outbox, the messages the rendezvous holds for offline recipients.
 * @property {Reachability} reachability Whether other peers can dial this device directly, as AutoNAT found.
 * @property {number} rekeys Every DH ratchet step this device took, over all conversations (TLS key refreshes are not counted).
 * @property {Relay} relay The slot held on the rendezvous's relay.
 * @property {Rendezvous} rendezvous The rendezvous connection.
 * @property {boolean} rendezvous_connected The same as `rendezvous.connected`.
 * @property {string} user The enrolled user.
 */

/**
 * The second factor turned off.
 * @typedef {Object} TotpDisabled
 * @property {boolean} totp Always false: enrollments of the name need no code any more.
 */

/**
 * The second factor turned on: its secret as an `otpauth://` URI, shown once.
 * @typedef {Object} TotpEnabled
 * @property {string} qr_svg The same URI as a QR code: an SVG document (empty if it does not fit one, which a URI this short always does).
 * @property {string} uri `otpauth://totp/Parley:<user>?secret=<base32>&issuer=Parley`, for an authenticator app.
 */

/**
 * New keys accepted.
 * @typedef {Object} Trusted
 * @property {boolean} trusted Always true.
 * @property {string} user The contact.
 */

export {};
