// The status line: the user, the rendezvous connection, the peer id, the outbox and, near its
// expiry, the certificate's warning.

/** @typedef {import('./types.js').Status} Status */

import { invoke } from "./api.js";
import { $, setText } from "./dom.js";
import { state } from "./state.js";
import { renderConversationHeader } from "./header.js";

/** Asks once; after that the app pushes a `status` event whenever the line changes. */
export async function refreshStatus() {
  if (state.stopped) return;
  try {
    renderStatus(await invoke("status"));
  } catch (err) {
    console.warn("status failed", err);
  }
}

/** @param {Status | undefined} status */
export function renderStatus(status) {
  if (!status || typeof status !== "object") return;
  if (status.user) {
    state.me = status.user;
    setText($("status-user"), status.user);
  }
  const rendezvous = $("status-rendezvous");
  const connected = status.rendezvous_connected === true;
  setText(rendezvous, connected ? "rendezvous: connected" : "rendezvous: offline");
  rendezvous.classList.toggle("connected", connected);
  rendezvous.classList.toggle("disconnected", !connected);
  const peer = $("status-peer-id");
  setText(peer, status.peer_id || "");
  const addrs = Array.isArray(status.listen_addrs) ? status.listen_addrs.filter((a) => typeof a === "string") : [];
  peer.title = status.peer_id ? [`Your peer id: ${status.peer_id}`, ...addrs.map((a) => `listening on ${a}`)].join("\n") : "";
  const outbox = Number(status.outbox) || 0;
  const outboxNode = $("status-outbox");
  setText(outboxNode, outbox > 0 ? `${outbox} waiting` : "");
  outboxNode.title = outbox > 0 ? `${outbox} message(s) waiting in the outbox to be retried` : "";
  const certificate = $("status-certificate");
  const warning = status.certificate && typeof status.certificate.warning === "string" ? status.certificate.warning : "";
  setText(certificate, warning);
  certificate.title = warning && status.certificate ? `Certificate expires ${status.certificate.expires_at}` : "";
  const connections = Array.isArray(status.connections) ? status.connections : [];
  state.paths = new Map(
    connections
      .filter((c) => c && typeof c.user === "string" && (c.path === "direct" || c.path === "relayed"))
      .map((c) => [c.user, c.path]),
  );
  renderConversationHeader();
}
