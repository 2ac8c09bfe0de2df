// Parley desktop — web layer.
//
// Safety rule: every string that comes from the backend (usernames, message text, file names,
// reasons, errors, paths) reaches the DOM through textContent / createTextNode only.
"use strict";

(() => {
  const USERNAME_RE = /^[a-z0-9_-]{3,32}$/;
  const NOTE_CLEAR_MS = 10000;
  const NEAR_BOTTOM_PX = 80;

  // ---------- Tauri bridge ----------

  const tauri = window.__TAURI__;

  function invoke(cmd, args, options) {
    if (options === undefined) return tauri.core.invoke(cmd, args);
    return tauri.core.invoke(cmd, args, options);
  }

  function errorMessage(err) {
    if (err && typeof err === "object" && typeof err.message === "string" && err.message) return err.message;
    if (typeof err === "string" && err) return err;
    return "Something went wrong.";
  }

  function errorCode(err) {
    return err && typeof err === "object" && typeof err.code === "string" ? err.code : null;
  }

  // ---------- State ----------

  const state = {
    me: null,
    current: null, // username of the open conversation
    conversations: [],
    presence: new Map(), // user -> true | false | null
    drafts: new Map(), // user -> {text, staged: [{token, name, size}]}
    staged: [], // staged attachments of the open conversation
    stagingCount: 0,
    historySeq: 0,
    listSeq: 0,
    subscribed: false,
    tickTimer: null,
    noteTimer: null,
    restoredText: null, // composer text put back by rejected sends, while untouched
    listRefreshTimer: null,
    contactUser: null,
    stopped: false,
  };

  // ---------- DOM helpers ----------

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(node, text) {
    node.textContent = text === undefined || text === null ? "" : String(text);
  }

  function showError(node, text) {
    setText(node, text);
    node.hidden = !text;
  }

  // ---------- Formatting ----------

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function parseDate(value) {
    if (!value) return null;
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function formatClock(d) {
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  }

  function formatFullDate(d) {
    try {
      return d.toLocaleString(undefined, { dateStyle: "full", timeStyle: "medium" });
    } catch {
      return d.toString();
    }
  }

  function isSameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  // Short time for the conversation list: today HH:MM, this week weekday, else date.
  function formatListTime(d) {
    const now = new Date();
    if (isSameDay(d, now)) return formatClock(d);
    const ageDays = (now - d) / 86400000;
    try {
      if (ageDays >= 0 && ageDays < 6) return d.toLocaleDateString(undefined, { weekday: "short" });
      if (d.getFullYear() === now.getFullYear()) return d.toLocaleDateString(undefined, { day: "numeric", month: "short" });
      return d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
    } catch {
      return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    }
  }

  function formatSize(bytes) {
    const n = Number(bytes);
    if (!Number.isFinite(n) || n < 0) return "? B";
    if (n < 1024) return `${n} B`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let value = n / 1024;
    let i = 0;
    while (value >= 1024 && i < units.length - 1) {
      value /= 1024;
      i += 1;
    }
    const shown = value < 10 ? value.toFixed(1).replace(/\.0$/, "") : String(Math.round(value));
    return `${shown} ${units[i]}`;
  }

  // Relative duration: "42s", "4m 12s", "1h 03m", "2d 4h".
  function formatDuration(ms) {
    const total = Math.max(0, Math.ceil(ms / 1000));
    const days = Math.floor(total / 86400);
    const hours = Math.floor((total % 86400) / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = total % 60;
    if (days > 0) return `${days}d ${hours}h`;
    if (hours > 0) return `${hours}h ${pad2(minutes)}m`;
    if (minutes > 0) return `${minutes}m ${pad2(seconds)}s`;
    return `${seconds}s`;
  }

  function peerOf(message) {
    return message.direction === "outgoing" ? message.to : message.from;
  }

  function presenceClass(online) {
    if (online === true) return "online";
    if (online === false) return "offline";
    return "unknown";
  }

  function presenceLabel(online) {
    if (online === true) return "online";
    if (online === false) return "offline";
    return "presence unknown";
  }

  function setPresence(node, online) {
    node.classList.remove("online", "offline", "unknown");
    node.classList.add(presenceClass(online));
    node.setAttribute("aria-label", presenceLabel(online));
    node.title = presenceLabel(online);
  }

  // ---------- Screens ----------

  const SCREENS = ["screen-fatal", "screen-unlock", "screen-enroll", "screen-main"];

  function showScreen(id) {
    $("loading").hidden = true;
    for (const screen of SCREENS) $(screen).hidden = screen !== id;
  }

  function showFatal(message) {
    state.stopped = true;
    stopTimers();
    const dialog = $("contact-details");
    if (dialog.open) closeDialog(dialog);
    setText($("fatal-message"), message || "Parley stopped unexpectedly.");
    document.title = "Parley";
    showScreen("screen-fatal");
  }

  function handleBoot(boot) {
    if (!boot || typeof boot !== "object") {
      showFatal("The backend returned an unexpected answer.");
      return;
    }
    switch (boot.phase) {
      case "enroll":
        showEnroll(boot);
        break;
      case "unlock":
        showUnlock(boot);
        break;
      case "ready":
        showMain(boot);
        break;
      case "fatal":
      default:
        showFatal(boot.message || "Parley cannot start.");
        break;
    }
  }

  // ---------- Enroll ----------

  function showEnroll(boot) {
    const defaults = boot.defaults || {};
    const server = $("enroll-server");
    const fingerprint = $("enroll-fingerprint");
    if (defaults.server && !server.value) server.value = defaults.server;
    if (defaults.fingerprint && !fingerprint.value) fingerprint.value = defaults.fingerprint;
    $("enroll-passphrase-row").hidden = Boolean(boot.store_exists);
    showError($("enroll-error"), boot.message || "");
    showScreen("screen-enroll");
    const first = [server, $("enroll-username")].find((input) => !input.value) || $("enroll-password");
    first.focus();
  }

  function validateEnroll() {
    const server = $("enroll-server").value.trim();
    const username = $("enroll-username").value.trim();
    if (!server) return { field: "enroll-server", message: "Enter the rendezvous server URL, for example https://127.0.0.1:8443." };
    if (!USERNAME_RE.test(username)) return { field: "enroll-username", message: "Username must be 3–32 characters: a-z, 0-9, - and _." };
    if (!$("enroll-password").value) return { field: "enroll-password", message: "Enter your password." };
    if (!$("enroll-passphrase-row").hidden && $("enroll-passphrase").value !== $("enroll-passphrase-again").value) {
      return { field: "enroll-passphrase-again", message: "The two passphrases differ; type the same one twice, or leave both empty." };
    }
    return null;
  }

  async function onEnrollSubmit(event) {
    event.preventDefault();
    const submit = $("enroll-submit");
    if (submit.disabled) return;
    const errorNode = $("enroll-error");
    const invalid = validateEnroll();
    if (invalid) {
      showError(errorNode, invalid.message);
      $(invalid.field).focus();
      return;
    }
    showError(errorNode, "");
    submit.disabled = true;
    submit.textContent = "Enrolling…";
    const passwordInput = $("enroll-password");
    const passphraseInput = $("enroll-passphrase");
    const withPassphrase = !$("enroll-passphrase-row").hidden;
    let boot = null;
    try {
      boot = await invoke("enroll", {
        server: $("enroll-server").value.trim(),
        fingerprint: $("enroll-fingerprint").value.trim(),
        username: $("enroll-username").value.trim(),
        password: passwordInput.value,
        passphrase: withPassphrase ? passphraseInput.value : "",
      });
    } catch (err) {
      showError(errorNode, errorMessage(err));
    } finally {
      passwordInput.value = "";
      passphraseInput.value = "";
      $("enroll-passphrase-again").value = "";
      submit.disabled = false;
      submit.textContent = "Enroll";
    }
    if (boot) handleBoot(boot);
    else passwordInput.focus();
  }

  // ---------- Unlock ----------

  function showUnlock(boot) {
    setText($("unlock-title"), boot.user ? `Unlock Parley for ${boot.user}` : "Unlock your messages");
    const home = $("unlock-home");
    setText(home, boot.home ? `Store: ${boot.home}` : "");
    home.hidden = !boot.home;
    showError($("unlock-error"), boot.message || "");
    showScreen("screen-unlock");
    $("unlock-passphrase").focus();
  }

  async function onUnlockSubmit(event) {
    event.preventDefault();
    const submit = $("unlock-submit");
    if (submit.disabled) return;
    const errorNode = $("unlock-error");
    const input = $("unlock-passphrase");
    if (!input.value) {
      showError(errorNode, "Enter your passphrase.");
      input.focus();
      return;
    }
    showError(errorNode, "");
    submit.disabled = true;
    submit.textContent = "Unlocking…";
    let boot = null;
    try {
      boot = await invoke("unlock", { passphrase: input.value });
    } catch (err) {
      showError(errorNode, errorMessage(err));
    } finally {
      input.value = "";
      submit.disabled = false;
      submit.textContent = "Unlock";
    }
    if (boot) handleBoot(boot);
    else input.focus();
  }

  // ---------- Main screen ----------

  async function showMain(boot) {
    state.stopped = false;
    state.me = boot.user || null;
    document.title = state.me ? `Parley — ${state.me}` : "Parley";
    if (state.me) setText($("status-user"), state.me);
    showScreen("screen-main");
    if (boot.warning) showBanner(boot.warning);
    updateConversationView();
    await subscribe();
    startTimers();
    // Once; after that the app pushes a `status` event whenever the status line changes.
    refreshStatus();
    await refreshConversations();
  }

  async function subscribe() {
    if (state.subscribed) return;
    state.subscribed = true;
    try {
      await tauri.event.listen("parley", (event) => {
        try {
          onEvent(event && event.payload);
        } catch (err) {
          console.error("parley event handler failed", err);
        }
      });
    } catch (err) {
      state.subscribed = false;
      showBanner(`Live updates are unavailable: ${errorMessage(err)}`);
    }
  }

  function startTimers() {
    stopTimers();
    state.tickTimer = setInterval(tickDisappearing, 1000);
  }

  function stopTimers() {
    if (state.tickTimer) clearInterval(state.tickTimer);
    state.tickTimer = null;
  }

  // ---------- Banner ----------

  function showBanner(text) {
    setText($("banner-text"), text);
    $("banner").hidden = false;
  }

  function hideBanner() {
    $("banner").hidden = true;
    setText($("banner-text"), "");
  }

  // ---------- Status line ----------

  async function refreshStatus() {
    if (state.stopped) return;
    try {
      renderStatus(await invoke("status"));
    } catch (err) {
      console.warn("status failed", err);
    }
  }

  function renderStatus(status) {
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
  }

  // ---------- Conversation list ----------

  async function refreshConversations() {
    if (state.stopped) return;
    const seq = ++state.listSeq;
    try {
      const list = await invoke("conversations");
      if (seq !== state.listSeq) return;
      state.conversations = Array.isArray(list) ? list : [];
      for (const c of state.conversations) {
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

  // Several events can arrive in a burst: coalesce list reloads.
  function scheduleConversationsRefresh() {
    if (state.listRefreshTimer) return;
    state.listRefreshTimer = setTimeout(() => {
      state.listRefreshTimer = null;
      refreshConversations();
    }, 150);
  }

  function renderConversationList() {
    const list = $("conversation-list");
    const entries = state.conversations.filter((c) => c && typeof c.with === "string");
    // The open conversation may have no history yet: show it anyway, on top.
    if (state.current && !entries.some((c) => c.with === state.current)) {
      entries.unshift({ with: state.current, messages: 0, unread: 0, online: state.presence.get(state.current) ?? null, last: null, draft: true });
    }
    const existing = new Map();
    for (const item of list.children) existing.set(item.dataset.user, item);
    const wanted = entries.map((c) => {
      const item = existing.get(c.with) || createConversationItem();
      existing.delete(c.with);
      renderConversationItem(item, c);
      return item;
    });
    for (const stale of existing.values()) stale.remove();
    const inOrder = wanted.every((item, i) => list.children[i] === item);
    if (!inOrder) {
      const focused = document.activeElement;
      list.replaceChildren(...wanted);
      if (focused && list.contains(focused)) focused.focus();
    }
    $("conversation-list-empty").hidden = entries.length > 0;
  }

  function createConversationItem() {
    const item = el("li", "conversation");
    item.tabIndex = 0;
    item.setAttribute("role", "button");
    const dot = el("span", "presence unknown");
    dot.setAttribute("role", "img");
    item.append(dot, el("span", "name"), el("span", "when"), el("span", "last"), el("span", "unread"));
    return item;
  }

  function renderConversationItem(item, conversation) {
    const user = conversation.with;
    item.dataset.user = user;
    const selected = user === state.current;
    item.classList.toggle("selected", selected);
    item.classList.toggle("draft", Boolean(conversation.draft));
    if (selected) item.setAttribute("aria-current", "true");
    else item.removeAttribute("aria-current");

    setPresence(item.querySelector(".presence"), state.presence.has(user) ? state.presence.get(user) : conversation.online);
    setText(item.querySelector(".name"), user);
    item.querySelector(".name").title = user;

    const last = conversation.last && typeof conversation.last === "object" ? conversation.last : null;
    const lastNode = item.querySelector(".last");
    const preview = last ? lastPreview(last) : "No messages yet";
    setText(lastNode, preview);
    lastNode.classList.toggle("empty", !last);
    lastNode.title = last && last.text ? last.text : "";

    const when = last ? parseDate(last.sent_at) : null;
    const whenNode = item.querySelector(".when");
    setText(whenNode, when ? formatListTime(when) : "");
    whenNode.title = when ? formatFullDate(when) : "";

    const unread = selected ? 0 : Number(conversation.unread) || 0;
    const unreadNode = item.querySelector(".unread");
    setText(unreadNode, unread > 99 ? "99+" : unread);
    unreadNode.hidden = unread === 0;
    unreadNode.setAttribute("aria-label", `${unread} unread`);
    item.classList.toggle("has-unread", unread > 0);
    item.setAttribute("aria-label", `${user}${unread ? `, ${unread} unread` : ""}`);
  }

  function lastPreview(message) {
    if (message.text) return message.text;
    const files = Array.isArray(message.attachments) ? message.attachments : [];
    if (files.length === 1) return `Attachment: ${files[0].name}`;
    if (files.length > 1) return `${files.length} attachments`;
    return "";
  }

  function onConversationListClick(event) {
    const item = event.target.closest("li.conversation");
    if (!item || !item.dataset.user) return;
    openConversation(item.dataset.user, { focusComposer: true });
  }

  function onConversationListKeydown(event) {
    const item = event.target.closest("li.conversation");
    if (!item) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openConversation(item.dataset.user, { focusComposer: event.key === "Enter" });
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? item.nextElementSibling : item.previousElementSibling;
      if (next) next.focus();
    }
  }

  // ---------- New conversation ----------

  function toggleNewConversation(force) {
    const form = $("new-conversation-form");
    const open = force === undefined ? form.hidden : force;
    form.hidden = !open;
    $("new-conversation").setAttribute("aria-expanded", String(open));
    showError($("new-error"), "");
    if (open) {
      $("new-username").focus();
    } else {
      $("new-username").value = "";
    }
  }

  function onNewConversationSubmit(event) {
    event.preventDefault();
    const input = $("new-username");
    const name = input.value.trim();
    if (!USERNAME_RE.test(name)) {
      showError($("new-error"), "Usernames are 3–32 characters: a-z, 0-9, - and _.");
      input.focus();
      return;
    }
    toggleNewConversation(false);
    openConversation(name, { focusComposer: true });
  }

  // ---------- Conversation ----------

  function saveDraft() {
    if (!state.current) return;
    const text = $("composer-text").value;
    if (text || state.staged.length) state.drafts.set(state.current, { text, staged: state.staged.slice() });
    else state.drafts.delete(state.current);
  }

  function restoreDraft(user) {
    const draft = state.drafts.get(user);
    state.drafts.delete(user);
    $("composer-text").value = draft ? draft.text : "";
    state.staged = draft ? draft.staged.slice() : [];
    renderStagedAttachments();
    autoGrow();
  }

  async function openConversation(user, options = {}) {
    if (!user) return;
    if (user !== state.current) {
      saveDraft();
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

  function updateConversationView() {
    const open = Boolean(state.current);
    $("no-conversation").hidden = open;
    $("conversation-view").hidden = !open;
    if (open) renderConversationHeader();
  }

  function renderConversationHeader() {
    const user = state.current;
    if (!user) return;
    setText($("conversation-name"), user);
    $("conversation-name").title = user;
    const online = state.presence.has(user) ? state.presence.get(user) : null;
    setPresence($("conversation-presence"), online);
    setText($("conversation-presence-text"), online === true ? "online" : online === false ? "offline" : "");
    $("composer-text").placeholder = user.length <= 16 ? `Message ${user}` : "Write a message";
  }

  async function loadHistory({ scroll } = {}) {
    const user = state.current;
    if (!user || state.stopped) return;
    const seq = ++state.historySeq;
    try {
      const history = await invoke("history", { with: user });
      if (seq !== state.historySeq || user !== state.current) return;
      const messages = history && Array.isArray(history.messages) ? history.messages : [];
      renderHistory(messages, scroll);
    } catch (err) {
      if (seq !== state.historySeq || user !== state.current) return;
      showComposerMessage(`Could not load the conversation: ${errorMessage(err)}`, "error");
    }
  }

  // Keyed by data-id: existing nodes are updated in place, never duplicated.
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

  function isExpired(message, now) {
    const expires = parseDate(message.expires_at);
    return Boolean(expires && expires.getTime() <= now);
  }

  function findMessage(id) {
    const key = String(id);
    for (const item of $("messages").children) {
      if (item.dataset.id === key) return item;
    }
    return null;
  }

  function appendMessage(message) {
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

  function updateMessagesEmpty() {
    $("messages-empty").hidden = $("messages").children.length > 0;
  }

  function isNearBottom() {
    const list = $("messages");
    return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  }

  // ---------- Messages ----------

  function renderMessage(message) {
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

  // Mutable parts of a message: delivery state and verification.
  function updateMessage(item, message) {
    const verified = message.verified === true;
    item.classList.toggle("not-verified", !verified);
    const badge = item.querySelector(".badge");
    if (badge) badge.replaceWith(renderBadge(message));
    const delivery = item.querySelector(".delivery");
    if (delivery && message.delivery) renderDelivery(delivery, message.delivery, message.delivery_at);
    return item;
  }

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

  const DELIVERY_TEXT = {
    pending: "pending…",
    delivered: "delivered ✓",
    received: "received",
    rejected: "rejected ✕",
  };

  function renderDelivery(node, delivery, deliveredAt) {
    node.className = `delivery ${delivery}`;
    node.closest("li.message")?.classList.remove("delivery-pending", "delivery-delivered", "delivery-received", "delivery-rejected");
    node.closest("li.message")?.classList.add(`delivery-${delivery}`);
    setText(node, DELIVERY_TEXT[delivery] || delivery);
    const at = parseDate(deliveredAt);
    node.title = delivery === "delivered" && at ? `Delivered ${formatFullDate(at)}` : delivery === "pending" ? "Waiting for the recipient's receipt" : "";
  }

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

  function updateTtl(node, now) {
    const left = Number(node.dataset.expires) - now;
    setText(node, `disappears in ${formatDuration(left)}`);
    return left;
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

  async function saveAttachment(button, message, index) {
    const user = peerOf(message);
    const box = button.closest(".attachments");
    let result = box.querySelector(`.attachment-result[data-index="${index}"]`);
    if (!result) {
      result = el("div", "attachment-result");
      result.dataset.index = String(index);
      result.setAttribute("role", "status");
      button.after(result);
    }
    button.disabled = true;
    result.classList.remove("error");
    setText(result, "Saving…");
    try {
      const saved = await invoke("save_attachment", { with: user, id: message.id, index });
      setText(result, `Saved to ${saved && saved.saved ? saved.saved : "Downloads"}`);
    } catch (err) {
      result.classList.add("error");
      setText(result, errorMessage(err));
    } finally {
      button.disabled = false;
    }
  }

  // ---------- Composer ----------

  function autoGrow() {
    const area = $("composer-text");
    if (area.offsetParent === null) {
      // Hidden: nothing to measure; fall back to the stylesheet's height.
      area.style.height = "";
      area.style.overflowY = "";
      return;
    }
    area.style.height = "auto";
    const max = parseFloat(getComputedStyle(area).maxHeight) || 142;
    const wanted = area.scrollHeight + 2; // borders
    area.style.height = `${Math.min(wanted, max)}px`;
    area.style.overflowY = wanted > max ? "auto" : "hidden";
  }

  function onComposerKeydown(event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    sendCurrent();
  }

  function clearComposerMessage() {
    if (state.noteTimer) clearTimeout(state.noteTimer);
    state.noteTimer = null;
    const node = $("composer-error");
    node.classList.remove("note", "error");
    showError(node, "");
  }

  function showComposerMessage(text, kind) {
    clearComposerMessage();
    const node = $("composer-error");
    node.classList.add(kind);
    showError(node, text);
    if (kind === "note") {
      state.noteTimer = setTimeout(() => {
        if (node.classList.contains("note")) clearComposerMessage();
      }, NOTE_CLEAR_MS);
    }
  }

  async function sendCurrent() {
    const to = state.current;
    if (!to) return;
    const area = $("composer-text");
    const original = area.value;
    const text = original.trim();
    const staged = state.staged.slice();
    if (!text && staged.length === 0) {
      area.focus();
      return;
    }
    const ttl = $("composer-ttl").value || null;
    area.value = "";
    state.staged = [];
    renderStagedAttachments();
    autoGrow();
    clearComposerMessage();
    area.focus();
    try {
      const result = await invoke("send", { to, text, ttl, attachments: staged.map((s) => s.token) });
      if (result && result.id !== undefined && result.delivered === true && to === state.current) {
        const item = findMessage(result.id);
        const delivery = item && item.querySelector(".delivery");
        if (delivery) renderDelivery(delivery, "delivered", null);
      }
      if (result && result.queued && to === state.current) {
        showComposerMessage(result.note || `${to} is not reachable right now; the message will be retried.`, "note");
      }
      scheduleConversationsRefresh();
    } catch (err) {
      restoreUnsent(to, original, staged);
      if (to === state.current) showComposerMessage(errorMessage(err), "error");
      else showBanner(`Message to ${to} was not sent: ${errorMessage(err)}`);
    }
  }

  // Put a rejected message back where the user can fix and resend it.
  function restoreUnsent(to, text, staged) {
    if (to === state.current) {
      const area = $("composer-text");
      // Several overlapping sends may bounce: keep them in the order they were written, and
      // before anything typed since.
      if (!area.value) area.value = text;
      else if (area.value === state.restoredText) area.value = `${area.value}\n${text}`;
      else area.value = `${text}\n${area.value}`;
      state.restoredText = area.value;
      state.staged = staged.concat(state.staged);
      renderStagedAttachments();
      autoGrow();
      area.focus();
    } else {
      const draft = state.drafts.get(to) || { text: "", staged: [] };
      draft.text = draft.text ? `${text}\n${draft.text}` : text;
      draft.staged = staged.concat(draft.staged);
      state.drafts.set(to, draft);
    }
  }

  async function onFilesChosen(event) {
    const input = event.target;
    const files = Array.from(input.files || []);
    input.value = "";
    const target = state.current;
    for (const file of files) stageFile(file, target);
  }

  async function stageFile(file, target) {
    const placeholder = renderStagingChip(file.name);
    $("composer-attachments").append(placeholder);
    $("composer-attachments").hidden = false;
    state.stagingCount += 1;
    try {
      const buffer = await file.arrayBuffer();
      const staged = await invoke("stage_attachment", new Uint8Array(buffer), {
        headers: { "x-file-name": encodeURIComponent(file.name) },
      });
      const entry = { token: staged.token, name: staged.name || file.name, size: staged.size ?? file.size };
      if (target === state.current) state.staged.push(entry);
      else {
        const draft = state.drafts.get(target) || { text: "", staged: [] };
        draft.staged.push(entry);
        state.drafts.set(target, draft);
      }
    } catch (err) {
      showComposerMessage(`Could not attach ${file.name}: ${errorMessage(err)}`, "error");
    } finally {
      state.stagingCount -= 1;
      placeholder.remove();
      renderStagedAttachments();
    }
  }

  function renderStagingChip(name) {
    const chip = el("li", "chip staging");
    const label = el("span", "chip-name", name);
    label.title = name;
    chip.append(label, el("span", "chip-size", "attaching…"));
    return chip;
  }

  function renderStagedAttachments() {
    const box = $("composer-attachments");
    for (const chip of Array.from(box.querySelectorAll(".chip:not(.staging)"))) chip.remove();
    const staging = Array.from(box.children);
    state.staged.forEach((file, i) => box.insertBefore(renderAttachmentChip(file, i), staging[0] || null));
    box.hidden = box.children.length === 0;
  }

  function renderAttachmentChip(file, i) {
    const chip = el("li", "chip");
    const name = el("span", "chip-name", file.name);
    name.title = file.name;
    const remove = el("button", "icon-button chip-remove", "×");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.title = "Remove";
    remove.addEventListener("click", () => {
      const [removed] = state.staged.splice(i, 1);
      renderStagedAttachments();
      $("composer-text").focus();
      // The app keeps a copy of a picked file until it is sent: let it go now.
      if (removed) invoke("discard_attachment", { token: removed.token }).catch(() => {});
    });
    chip.append(name, el("span", "chip-size", formatSize(file.size)), remove);
    return chip;
  }

  // ---------- Read state ----------

  async function markRead(user) {
    if (!user || state.stopped) return;
    try {
      await invoke("mark_read", { with: user });
    } catch (err) {
      console.warn("mark_read failed", err);
    }
    scheduleConversationsRefresh();
  }

  // ---------- Contact details ----------

  function openDialog(dialog) {
    if (dialog.open) return;
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
  }

  function closeDialog(dialog) {
    if (typeof dialog.close === "function") dialog.close();
    else dialog.removeAttribute("open");
  }

  async function openContactDetails() {
    const user = state.current;
    if (!user) return;
    state.contactUser = user;
    setText($("contact-user"), user);
    $("contact-info").hidden = true;
    showError($("contact-error"), "");
    showError($("trust-error"), "");
    openDialog($("contact-details"));
    $("contact-close").focus();
    await loadContact(user);
  }

  async function loadContact(user) {
    try {
      const contact = await invoke("contact", { user });
      if (state.contactUser !== user) return;
      renderContact(contact);
    } catch (err) {
      if (state.contactUser !== user) return;
      $("contact-info").hidden = true;
      const message = errorCode(err) === "unknown_contact"
        ? errorMessage(err)
        : `Could not load the contact: ${errorMessage(err)}`;
      showError($("contact-error"), message);
    }
  }

  function renderContact(contact) {
    const user = contact && contact.user ? contact.user : state.contactUser;
    setText($("contact-user"), user);
    showError($("contact-error"), "");
    setText($("safety-number"), contact.safety_number || "");
    setText($("safety-help"), `Compare this number with ${user} in person or over a call; if it matches, your conversation is private.`);
    renderContactFacts(contact);
    const pending = contact.pending_safety_number;
    $("contact-pending").hidden = !pending;
    setText($("pending-text"), pending ? `${user}'s keys changed. Compare this new safety number with ${user} before you accept the new keys; until then, messages to ${user} are not sent.` : "");
    setText($("pending-safety-number"), pending || "");
    showError($("trust-error"), "");
    $("contact-info").hidden = false;
  }

  const FACTS = [
    ["first_seen", "First seen"],
    ["last_seen", "Last seen"],
    ["keys_changed_at", "Keys changed"],
    ["peer_id", "Peer id"],
  ];

  function renderContactFacts(contact) {
    const list = $("contact-facts");
    list.replaceChildren();
    for (const [key, label] of FACTS) {
      const value = contact[key];
      if (typeof value !== "string" && typeof value !== "number") continue;
      const date = key.endsWith("_seen") || key.endsWith("_at") ? parseDate(value) : null;
      const dd = el("dd", null, date ? formatFullDate(date) : value);
      list.append(el("dt", null, label), dd);
    }
  }

  async function onTrustKeys() {
    const user = state.contactUser;
    if (!user) return;
    const button = $("trust-keys");
    button.disabled = true;
    try {
      await invoke("trust", { user });
      await loadContact(user);
      if (user === state.current) loadHistory();
      scheduleConversationsRefresh();
    } catch (err) {
      showError($("trust-error"), errorMessage(err));
    } finally {
      button.disabled = false;
    }
  }

  // ---------- Events ----------

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
      case "keys_changed":
        showBanner(`${payload.user}'s keys changed — open contact details to compare the safety number`);
        if (state.contactUser === payload.user && $("contact-details").open) loadContact(payload.user);
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

  function onStoredMessage(message) {
    if (!message) return;
    if (peerOf(message) === state.current) appendMessage(message);
    scheduleConversationsRefresh();
  }

  function onDelivered(id) {
    if (id === undefined || id === null) return;
    const item = findMessage(id);
    const delivery = item && item.querySelector(".delivery");
    if (delivery) renderDelivery(delivery, "delivered", new Date().toISOString());
    scheduleConversationsRefresh();
  }

  function onPresence(user, online) {
    if (typeof user !== "string") return;
    state.presence.set(user, online === true ? true : online === false ? false : null);
    for (const item of $("conversation-list").children) {
      if (item.dataset.user === user) setPresence(item.querySelector(".presence"), state.presence.get(user));
    }
    if (user === state.current) renderConversationHeader();
  }

  // ---------- Keyboard ----------

  function onGlobalKeydown(event) {
    if (event.key !== "Escape") return;
    const dialog = $("contact-details");
    if (dialog.open) {
      event.preventDefault();
      closeDialog(dialog);
      $("contact-details-button").focus();
      return;
    }
    if (!$("new-conversation-form").hidden) {
      event.preventDefault();
      toggleNewConversation(false);
      $("new-conversation").focus();
    }
  }

  // ---------- Wiring ----------

  function wire() {
    $("enroll-form").addEventListener("submit", onEnrollSubmit);
    $("unlock-form").addEventListener("submit", onUnlockSubmit);

    $("banner-close").addEventListener("click", hideBanner);

    $("new-conversation").addEventListener("click", () => toggleNewConversation());
    $("empty-new-conversation").addEventListener("click", () => toggleNewConversation(true));
    $("new-conversation-form").addEventListener("submit", onNewConversationSubmit);
    $("new-username").addEventListener("input", () => showError($("new-error"), ""));

    $("conversation-list").addEventListener("click", onConversationListClick);
    $("conversation-list").addEventListener("keydown", onConversationListKeydown);

    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      sendCurrent();
    });
    $("composer-text").addEventListener("keydown", onComposerKeydown);
    $("composer-text").addEventListener("input", () => {
      autoGrow();
      if ($("composer-error").classList.contains("error")) clearComposerMessage();
    });
    $("composer-ttl").addEventListener("change", (event) => {
      event.target.classList.toggle("active", Boolean(event.target.value));
    });
    $("composer-attach").addEventListener("click", () => $("composer-file").click());
    $("composer-file").addEventListener("change", onFilesChosen);

    $("contact-details-button").addEventListener("click", openContactDetails);
    $("contact-close").addEventListener("click", () => {
      closeDialog($("contact-details"));
      $("contact-details-button").focus();
    });
    $("contact-details").addEventListener("close", () => {
      // The close event is asynchronous: the dialog may already be open again.
      if (!$("contact-details").open) state.contactUser = null;
    });
    $("contact-details").addEventListener("click", (event) => {
      // A click on the backdrop (outside the dialog box) closes it.
      if (event.target === $("contact-details")) closeDialog($("contact-details"));
    });
    $("trust-keys").addEventListener("click", onTrustKeys);

    document.addEventListener("keydown", onGlobalKeydown);
    window.addEventListener("resize", autoGrow);
  }

  async function start() {
    wire();
    if (!tauri || !tauri.core || !tauri.event) {
      showFatal("This page must run inside the Parley desktop app.");
      return;
    }
    try {
      handleBoot(await invoke("boot"));
    } catch (err) {
      showFatal(errorMessage(err));
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
