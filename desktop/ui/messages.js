// The messages of the open conversation (the #messages list): each with its text, files,
// verification badge, time, delivery state and, when disappearing, the time left, ticking.

/** @typedef {import('./types.js').Message} Message */

import { errorMessage, invoke } from "./api.js";
import { $, el, setText } from "./dom.js";
import { formatClock, formatDuration, formatFullDate, formatSize, parseDate, peerOf } from "./format.js";
import { scheduleConversationsRefresh } from "./list.js";

/** @type {Record<string, string>} */
const DELIVERY_TEXT = {
  pending: "pending…",
  queued: "held",
  delivered: "delivered ✓",
  received: "received",
  rejected: "rejected ✕",
};

/** @type {ReturnType<typeof setInterval> | null} */
let tickTimer = null;

/**
 * A new list item for a message.
 * @param {Message} message
 * @returns {HTMLElement}
 */
export function renderMessage(message) {
  const item = el("li", "message");
  item.dataset.id = String(message.id);
  const outgoing = message.direction === "outgoing";
  item.classList.add(outgoing ? "outgoing" : "incoming");

  const attachments = renderAttachments(message);
  if (attachments) item.append(attachments);
  item.append(el("div", "text", message.text || ""));

  const meta = el("div", "meta");
  meta.append(renderBadge(message));
  const ttl = renderTtl(message);
  if (ttl) {
    meta.append(ttl);
    item.classList.add("disappearing");
  }
  meta.append(renderTime(message));
  if (outgoing) meta.append(el("span", "delivery"));
  item.append(meta);
  return updateMessage(item, message);
}

/**
 * Updates the mutable parts of a message's item: delivery state and verification.
 * @param {HTMLElement} item
 * @param {Message} message
 */
export function updateMessage(item, message) {
  const verified = message.verified === true;
  item.classList.toggle("not-verified", !verified);
  const badge = item.querySelector(".badge");
  if (badge) badge.replaceWith(renderBadge(message));
  const delivery = item.querySelector(".delivery");
  if (delivery instanceof HTMLElement && message.delivery) renderDelivery(delivery, message.delivery, message.delivery_at, message.to);
  return item;
}

/**
 * The item of the message with this id, if shown.
 * @param {string} id
 * @returns {HTMLElement | null}
 */
export function findMessage(id) {
  const key = String(id);
  for (const item of $("messages").children) {
    if (item.dataset.id === key) return item;
  }
  return null;
}

/**
 * Shows a message as delivered, if it is shown.
 * @param {string} id
 * @param {string | null} at RFC 3339, when known.
 */
export function showDelivered(id, at) {
  const item = findMessage(id);
  const delivery = item && item.querySelector(".delivery");
  if (delivery instanceof HTMLElement) renderDelivery(delivery, "delivered", at);
}

/**
 * Shows a message as held by the rendezvous for its offline recipient, if it is shown (and not
 * delivered already: a receipt may overtake the event).
 * @param {string} id
 * @param {string} to
 */
export function showQueued(id, to) {
  const item = findMessage(id);
  const delivery = item && item.querySelector(".delivery");
  if (delivery instanceof HTMLElement && !delivery.classList.contains("delivered")) {
    renderDelivery(delivery, "queued", new Date().toISOString(), to);
  }
}

/**
 * Whether a disappearing message's time is up.
 * @param {Message} message
 * @param {number} now
 */
export function isExpired(message, now) {
  const expires = parseDate(message.expires_at);
  return Boolean(expires && expires.getTime() <= now);
}

export function updateMessagesEmpty() {
  $("messages-empty").hidden = $("messages").children.length > 0;
}

/** Counts down the time left each second, and takes a message off once it expires. */
export function startTicking() {
  stopTicking();
  tickTimer = setInterval(tickDisappearing, 1000);
}

export function stopTicking() {
  if (tickTimer) clearInterval(tickTimer);
  tickTimer = null;
}

/** @param {Message} message */
function renderBadge(message) {
  const verified = message.verified === true;
  const badge = el("span", `badge ${verified ? "verified" : "unverified"}`);
  if (verified) {
    badge.textContent = "✔ verified";
    badge.title = "Signature verified against this contact's keys";
  } else {
    const reason = message.reason || (message.verification && message.verification !== "verified" ? message.verification : "unknown reason");
    badge.textContent = `⚠ not verified: ${reason}`;
    badge.title = "This message could not be verified; it may not come from who it claims.";
  }
  return badge;
}

/**
 * @param {HTMLElement} node
 * @param {string} delivery
 * @param {string | null | undefined} deliveredAt
 * @param {string} [to] the recipient, for "held for bob"
 */
function renderDelivery(node, delivery, deliveredAt, to) {
  node.className = `delivery ${delivery}`;
  node.closest("li.message")?.classList.remove("delivery-pending", "delivery-queued", "delivery-delivered", "delivery-received", "delivery-rejected");
  node.closest("li.message")?.classList.add(`delivery-${delivery}`);
  setText(node, delivery === "queued" && to ? `held for ${to}` : DELIVERY_TEXT[delivery] || delivery);
  const at = parseDate(deliveredAt);
  node.title = delivery === "delivered" && at ? `Delivered ${formatFullDate(at)}`
    : delivery === "pending" ? "Waiting for the recipient's receipt"
    : delivery === "queued" ? `${to || "The recipient"} is offline: the rendezvous holds the message, sealed, until they are back`
    : "";
}

/** @param {Message} message */
function renderTime(message) {
  const node = el("time", "time");
  const d = parseDate(message.sent_at);
  if (d) {
    node.textContent = formatClock(d);
    node.title = formatFullDate(d);
    node.dateTime = d.toISOString();
  }
  return node;
}

/** @param {Message} message */
function renderTtl(message) {
  if (!message.ttl && !message.expires_at) return null;
  const node = el("span", "ttl-left");
  const expires = parseDate(message.expires_at);
  if (expires) {
    node.dataset.expires = String(expires.getTime());
    node.title = `Disappears ${formatFullDate(expires)}`;
    updateTtl(node, Date.now());
  } else {
    node.textContent = `disappears after ${message.ttl}`;
  }
  return node;
}

/**
 * @param {HTMLElement} node
 * @param {number} now
 */
function updateTtl(node, now) {
  setText(node, `disappears in ${formatDuration(Number(node.dataset.expires) - now)}`);
}

function tickDisappearing() {
  const now = Date.now();
  let removed = false;
  for (const node of $("messages").querySelectorAll(".ttl-left[data-expires]")) {
    const left = Number(node.dataset.expires) - now;
    if (left <= 0) {
      node.closest("li.message")?.remove();
      removed = true;
    } else {
      updateTtl(node, now);
    }
  }
  if (removed) {
    updateMessagesEmpty();
    scheduleConversationsRefresh();
  }
}

/** @param {Message} message */
function renderAttachments(message) {
  const files = Array.isArray(message.attachments) ? message.attachments : [];
  if (files.length === 0) return null;
  const box = el("div", "attachments");
  files.forEach((file, position) => {
    const index = Number.isInteger(file.index) ? file.index : position;
    const button = el("button", "save-attachment", `Save ${file.name} (${formatSize(file.size)})`);
    button.type = "button";
    button.title = file.sha256 ? `Save to Downloads\nsha256: ${file.sha256}` : "Save to Downloads";
    button.dataset.index = String(index);
    button.addEventListener("click", () => saveAttachment(button, message, index));
    box.append(button);
  });
  return box;
}

/**
 * Decrypts a file into the downloads folder, and says where it went.
 * @param {HTMLButtonElement} button
 * @param {Message} message
 * @param {number} index
 */
async function saveAttachment(button, message, index) {
  const box = /** @type {HTMLElement} */ (button.closest(".attachments"));
  /** @type {HTMLElement | null} */
  let result = box.querySelector(`.attachment-result[data-index="${index}"]`);
  if (!result) {
    result = /** @type {HTMLElement} */ (el("div", "attachment-result"));
    result.dataset.index = String(index);
    result.setAttribute("role", "status");
    button.after(result);
  }
  button.disabled = true;
  result.classList.remove("error");
  setText(result, "Saving…");
  try {
    /** @type {{saved: string, bytes: number}} */
    const saved = await invoke("save_attachment", { with: peerOf(message), id: message.id, index });
    setText(result, `Saved to ${saved && saved.saved ? saved.saved : "Downloads"}`);
  } catch (err) {
    result.classList.add("error");
    setText(result, errorMessage(err));
  } finally {
    button.disabled = false;
  }
}
