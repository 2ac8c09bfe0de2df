// The documents the window reads: what the app's commands answer and what its `parley` events
// carry. Written from desktop/src (Boot, the commands) and adapters/peer/src/view.rs; a file
// generated from the Rust view types replaces it, with the same names.
//
// Types only: importing this module at run time gives nothing.

/**
 * A message as the peer stores it.
 * @typedef {object} Message
 * @property {string} id
 * @property {string} from
 * @property {string} to
 * @property {string} text
 * @property {string} sent_at RFC 3339.
 * @property {boolean} verified
 * @property {string} verification `verified`, or the code of the fault.
 * @property {string | null} reason Why it is not verified, in words.
 * @property {"outgoing" | "incoming"} direction
 * @property {"pending" | "delivered" | "received" | "rejected"} delivery
 * @property {string | null} delivery_at RFC 3339.
 * @property {string | null} ttl For a disappearing message, e.g. `5m`.
 * @property {string | null} expires_at RFC 3339.
 * @property {Array<{index: number, name: string, size: number, sha256: string}>} attachments
 */

/**
 * The state of one direction's hash chain.
 * @typedef {object} Chain
 * @property {string} state
 * @property {number} last_seq
 * @property {Array<[number, number]>} [missing]
 * @property {number} [faults]
 */

/**
 * One conversation, oldest message first.
 * @typedef {object} History
 * @property {string} with
 * @property {Message[]} messages
 * @property {{incoming: Chain, outgoing: Chain}} chain
 */

/**
 * An entry of the conversation list.
 * @typedef {object} Conversation
 * @property {string} with
 * @property {number} messages
 * @property {number} unread
 * @property {Message} last
 * @property {boolean | null} online `null` while not known.
 */

/**
 * The node's state, for the status line.
 * @typedef {object} Status
 * @property {string} user
 * @property {string} peer_id
 * @property {string[]} listen_addrs
 * @property {{connected: boolean, addrs: string[]}} rendezvous
 * @property {boolean} rendezvous_connected
 * @property {number} outbox Messages waiting to be retried.
 * @property {string} home
 */

/**
 * A contact's safety numbers.
 * @typedef {object} Contact
 * @property {string} user
 * @property {string} safety_number
 * @property {boolean} keys_changed
 * @property {string | null} pending_safety_number The new keys' number, until accepted.
 * @property {string} pinned_at RFC 3339.
 */

/**
 * What a `parley` event carries.
 * @typedef {{event: "message", message: Message}
 *   | {event: "stored", message: Message}
 *   | {event: "delivered", id: string, to: string}
 *   | {event: "keys_changed", user: string}
 *   | {event: "refused", from: string, reason: string}
 *   | {event: "expired", count: number}
 *   | {event: "presence", user: string, online: boolean}
 *   | {event: "status", status: Status}
 *   | {event: "stopped", message: string}} Event
 */

/**
 * The answer to `send`: delivered, or kept in the outbox to go out later (`queued`, with a
 * note saying so).
 * @typedef {object} Sent
 * @property {string} [id]
 * @property {string} [to]
 * @property {boolean} delivered
 * @property {boolean} queued
 * @property {string} [note]
 */

/**
 * Which screen the home calls for, with what that screen needs.
 * @typedef {object} Boot
 * @property {"enroll" | "unlock" | "ready" | "fatal"} phase
 * @property {string} home
 * @property {string | null} user
 * @property {boolean} store_exists
 * @property {string | null} message
 * @property {string | null} warning
 * @property {{server: string | null, fingerprint: string | null}} defaults
 */

export {};
