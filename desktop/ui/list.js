// The conversation list: one item per contact with presence, last message, time and unread
// count, kept in step with the app (items are reused, keyed by user).

/** @typedef {import('./types.js').Conversation} Conversation */
/** @typedef {import('./types.js').Message} Message */

/**
 * An entry as the list shows it: the open conversation may have no history yet.
 * @typedef {{with: string, unread: number, online: boolean | null | undefined, last: Message | null, draft?: boolean}} Entry
 */

import { invoke } from "./api.js";
import { $, el, setPresence, setText } from "./dom.js";
import { formatFullDate, formatListTime, parseDate } from "./format.js";
import { renderConversationHeader } from "./header.js";
import { state } from "./state.js";

/** Reloads coalesce events that arrive in a burst into one call. */
const REFRESH_DELAY_MS = 150;

/** @type {Conversation[]} */
let conversations = [];
/** Answers to older calls than this are dropped. */
let listSeq = 0;
/** @type {ReturnType<typeof setTimeout> | null} */
let refreshTimer = null;

export async function refreshConversations() {
  if (state.stopped) return;
  const seq = ++listSeq;
  try {
    const list = await invoke("conversations");
    if (seq !== listSeq) return;
    conversations = Array.isArray(list) ? list : [];
    for (const c of conversations) {
      if (c && typeof c.with === "string" && !(state.presence.get(c.with) !== undefined && c.online === null)) {
        state.presence.set(c.with, c.online === undefined ? null : c.online);
      }
    }
    renderConversationList();
    if (state.current) renderConversationHeader();
  } catch (err) {
    console.warn("conversations failed", err);
  }
}

export function scheduleConversationsRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshConversations();
  }, REFRESH_DELAY_MS);
}

export function renderConversationList() {
  const list = $("conversation-list");
  /** @type {Entry[]} */
  const entries = conversations.filter((c) => c && typeof c.with === "string");
  // The open conversation may have no history yet: show it anyway, on top.
  if (state.current && !entries.some((c) => c.with === state.current)) {
    entries.unshift({ with: state.current, unread: 0, online: state.presence.get(state.current) ?? null, last: null, draft: true });
  }
  const existing = new Map();
  for (const item of list.children) existing.set(item.dataset.user, item);
  const wanted = entries.map((c) => {
    const item = existing.get(c.with) || createItem();
    existing.delete(c.with);
    renderItem(item, c);
    return item;
  });
  for (const stale of existing.values()) stale.remove();
  const inOrder = wanted.every((item, i) => list.children[i] === item);
  if (!inOrder) {
    const focused = document.activeElement;
    list.replaceChildren(...wanted);
    if (focused instanceof HTMLElement && list.contains(focused)) focused.focus();
  }
  $("conversation-list-empty").hidden = entries.length > 0;
}

/**
 * Shows a presence change on the user's list item.
 * @param {string} user
 */
export function renderPresence(user) {
  for (const item of $("conversation-list").children) {
    if (item.dataset.user === user) setPresence(item.querySelector(".presence"), state.presence.get(user));
  }
}

/**
 * Opens conversations from the list, by click and by keyboard.
 * @param {(user: string, options: {focusComposer: boolean}) => void} open
 */
export function wireList(open) {
  const list = $("conversation-list");
  list.addEventListener("click", (/** @type {MouseEvent} */ event) => {
    const item = /** @type {HTMLElement} */ (event.target).closest("li.conversation");
    if (!(item instanceof HTMLElement) || !item.dataset.user) return;
    open(item.dataset.user, { focusComposer: true });
  });
  list.addEventListener("keydown", (/** @type {KeyboardEvent} */ event) => {
    const item = /** @type {HTMLElement} */ (event.target).closest("li.conversation");
    if (!(item instanceof HTMLElement)) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open(item.dataset.user || "", { focusComposer: event.key === "Enter" });
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? item.nextElementSibling : item.previousElementSibling;
      if (next instanceof HTMLElement) next.focus();
    }
  });
}

function createItem() {
  const item = el("li", "conversation");
  item.tabIndex = 0;
  item.setAttribute("role", "button");
  const dot = el("span", "presence unknown");
  dot.setAttribute("role", "img");
  item.append(dot, el("span", "name"), el("span", "when"), el("span", "last"), el("span", "unread"));
  return item;
}

/**
 * @param {HTMLElement} item
 * @param {Entry} conversation
 */
function renderItem(item, conversation) {
  const user = conversation.with;
  item.dataset.user = user;
  const selected = user === state.current;
  item.classList.toggle("selected", selected);
  item.classList.toggle("draft", Boolean(conversation.draft));
  if (selected) item.setAttribute("aria-current", "true");
  else item.removeAttribute("aria-current");

  const field = (/** @type {string} */ name) => /** @type {HTMLElement} */ (item.querySelector(name));
  setPresence(field(".presence"), state.presence.has(user) ? state.presence.get(user) : conversation.online);
  setText(field(".name"), user);
  field(".name").title = user;

  const last = conversation.last && typeof conversation.last === "object" ? conversation.last : null;
  const lastNode = field(".last");
  setText(lastNode, last ? lastPreview(last) : "No messages yet");
  lastNode.classList.toggle("empty", !last);
  lastNode.title = last && last.text ? last.text : "";

  const when = last ? parseDate(last.sent_at) : null;
  const whenNode = field(".when");
  setText(whenNode, when ? formatListTime(when) : "");
  whenNode.title = when ? formatFullDate(when) : "";

  const unread = selected ? 0 : Number(conversation.unread) || 0;
  const unreadNode = field(".unread");
  setText(unreadNode, unread > 99 ? "99+" : unread);
  unreadNode.hidden = unread === 0;
  unreadNode.setAttribute("aria-label", `${unread} unread`);
  item.classList.toggle("has-unread", unread > 0);
  item.setAttribute("aria-label", `${user}${unread ? `, ${unread} unread` : ""}`);
}

/** @param {Message} message */
function lastPreview(message) {
  if (message.text) return message.text;
  const files = Array.isArray(message.attachments) ? message.attachments : [];
  if (files.length === 1) return `Attachment: ${files[0].name}`;
  if (files.length > 1) return `${files.length} attachments`;
  return "";
}
