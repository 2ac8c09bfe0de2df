// The app's `parley` events: new and stored messages, receipts, changed keys, refusals,
// expiries, presence, the status line, and the app stopping.

/** @typedef {import('./types.js').Event} Event */
/** @typedef {import('./types.js').Message} Message */

import { errorMessage, listen } from "./api.js";
import { showBanner } from "./banner.js";
import { onKeysChanged } from "./contact.js";
import { appendMessage, loadHistory, markRead } from "./conversation.js";
import { peerOf } from "./format.js";
import { renderConversationHeader } from "./header.js";
import { renderPresence, scheduleConversationsRefresh } from "./list.js";
import { showDelivered, showQueued } from "./messages.js";
import { showFatal } from "./screens.js";
import { state } from "./state.js";
import { renderStatus } from "./status.js";

let subscribed = false;

/** Listens for the app's events, once. */
export async function subscribe() {
  if (subscribed) return;
  subscribed = true;
  try {
    await listen((payload) => {
      try {
        onEvent(payload);
      } catch (err) {
        console.error("parley event handler failed", err);
      }
    });
  } catch (err) {
    subscribed = false;
    showBanner(`Live updates are unavailable: ${errorMessage(err)}`);
  }
}

/** @param {Event | undefined} payload */
function onEvent(payload) {
  if (!payload || typeof payload !== "object") return;
  switch (payload.event) {
    case "message":
      onIncomingMessage(payload.message);
      break;
    case "stored":
      onStoredMessage(payload.message);
      break;
    case "delivered":
      onDelivered(payload.id);
      break;
    case "queued":
      if (typeof payload.id === "string" && typeof payload.to === "string") showQueued(payload.id, payload.to);
      scheduleConversationsRefresh();
      break;
    case "keys_changed":
      showBanner(`${payload.user}'s keys changed — open contact details to compare the safety number`);
      onKeysChanged(payload.user);
      break;
    case "refused":
      showBanner(payload.from
        ? `A message from ${payload.from} was refused: ${payload.reason || "no reason given"}`
        : `A message was refused: ${payload.reason || "no reason given"}`);
      break;
    case "presence":
      onPresence(payload.user, payload.online);
      break;
    case "expired":
      if (state.current) loadHistory();
      scheduleConversationsRefresh();
      break;
    case "status":
      renderStatus(payload.status);
      break;
    case "stopped":
      showFatal(payload.message);
      break;
    default:
      break;
  }
}

/** @param {Message} message */
function onIncomingMessage(message) {
  if (!message) return;
  const user = peerOf(message);
  if (user && user === state.current) {
    appendMessage(message);
    markRead(user);
  } else {
    scheduleConversationsRefresh();
  }
}

/** @param {Message} message */
function onStoredMessage(message) {
  if (!message) return;
  if (peerOf(message) === state.current) appendMessage(message);
  scheduleConversationsRefresh();
}

/** @param {string} id */
function onDelivered(id) {
  if (id === undefined || id === null) return;
  showDelivered(id, new Date().toISOString());
  scheduleConversationsRefresh();
}

/**
 * @param {string} user
 * @param {unknown} online
 */
function onPresence(user, online) {
  if (typeof user !== "string") return;
  state.presence.set(user, online === true ? true : online === false ? false : null);
  renderPresence(user);
  if (user === state.current) renderConversationHeader();
}
