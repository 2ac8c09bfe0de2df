// The open conversation: opening one (its draft comes back, it is marked read), loading its
// history, and adding messages as they arrive.

/** @typedef {import('./types.js').History} History */
/** @typedef {import('./types.js').Message} Message */

import { errorMessage, invoke } from "./api.js";
import { clearComposerMessage, showComposerMessage } from "./composer-note.js";
import { restoreDraft, saveDraft } from "./composer.js";
import { $ } from "./dom.js";
import { renderConversationHeader } from "./header.js";
import { renderConversationList, scheduleConversationsRefresh } from "./list.js";
import { findMessage, isExpired, renderMessage, updateMessage, updateMessagesEmpty } from "./messages.js";
import { state } from "./state.js";

/** Within this many pixels of the bottom, new messages keep the list scrolled down. */
const NEAR_BOTTOM_PX = 80;

/** Answers to older history calls than this are dropped. */
let historySeq = 0;

/**
 * @param {string} user
 * @param {{focusComposer?: boolean}} [options]
 */
export async function openConversation(user, options = {}) {
  if (!user) return;
  if (user !== state.current) {
    if (state.current) saveDraft(state.current);
    state.current = user;
    $("messages").replaceChildren();
    clearComposerMessage();
    $("messages-empty").hidden = true;
    updateConversationView();
    restoreDraft(user);
  }
  updateConversationView();
  renderConversationList();
  if (options.focusComposer) $("composer-text").focus();
  await loadHistory({ scroll: "bottom" });
  markRead(user);
}

/** Shows the open conversation, or the "No conversation selected" card. */
export function updateConversationView() {
  const open = Boolean(state.current);
  $("no-conversation").hidden = open;
  $("conversation-view").hidden = !open;
  if (open) renderConversationHeader();
}

/** @param {{scroll?: "bottom"}} [options] */
export async function loadHistory({ scroll } = {}) {
  const user = state.current;
  if (!user || state.stopped) return;
  const seq = ++historySeq;
  try {
    /** @type {History} */
    const history = await invoke("history", { with: user });
    if (seq !== historySeq || user !== state.current) return;
    const messages = history && Array.isArray(history.messages) ? history.messages : [];
    renderHistory(messages, scroll);
  } catch (err) {
    if (seq !== historySeq || user !== state.current) return;
    showComposerMessage(`Could not load the conversation: ${errorMessage(err)}`, "error");
  }
}

/**
 * Adds a message to the open conversation, or updates it if it shows already.
 * @param {Message} message
 */
export function appendMessage(message) {
  if (!message || message.id === undefined || message.id === null) return;
  if (isExpired(message, Date.now())) return;
  const existing = findMessage(message.id);
  if (existing) {
    updateMessage(existing, message);
    return;
  }
  const stick = isNearBottom() || message.direction === "outgoing";
  $("messages").append(renderMessage(message));
  updateMessagesEmpty();
  if (stick) scrollToBottom();
}

/**
 * Counts the conversation as read.
 * @param {string} user
 */
export async function markRead(user) {
  if (!user || state.stopped) return;
  try {
    await invoke("mark_read", { with: user });
  } catch (err) {
    console.warn("mark_read failed", err);
  }
  scheduleConversationsRefresh();
}

/**
 * Keyed by data-id: existing items are updated in place, never duplicated.
 * @param {Message[]} messages
 * @param {"bottom" | undefined} scroll
 */
function renderHistory(messages, scroll) {
  const list = $("messages");
  const wasNearBottom = isNearBottom();
  const previousTop = list.scrollTop;
  const existing = new Map();
  for (const item of list.children) existing.set(item.dataset.id, item);
  const now = Date.now();
  const items = [];
  for (const message of messages) {
    if (!message || message.id === undefined || message.id === null) continue;
    if (isExpired(message, now)) continue;
    const id = String(message.id);
    const current = existing.get(id);
    existing.delete(id);
    items.push(current ? updateMessage(current, message) : renderMessage(message));
  }
  list.replaceChildren(...items);
  updateMessagesEmpty();
  if (scroll === "bottom" || wasNearBottom) scrollToBottom();
  else list.scrollTop = previousTop;
}

function isNearBottom() {
  const list = $("messages");
  return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}
