// The composer: Enter sends (Shift+Enter is a new line), the timer, the text area that grows
// with its text, and what happens to a message the app refuses (its text comes back).

/** @typedef {import('./types.js').Sent} Sent */
/** @typedef {import('./drafts.js').StagedFile} StagedFile */

import { errorMessage, invoke } from "./api.js";
import { showBanner } from "./banner.js";
import { restoreStaged, setStaged, stagedFiles, wireComposerFiles } from "./composer-files.js";
import { clearComposerMessage, composerShowsError, showComposerMessage } from "./composer-note.js";
import { $ } from "./dom.js";
import { draftOf, keepDraft, takeDraft } from "./drafts.js";
import { scheduleConversationsRefresh } from "./list.js";
import { showDelivered } from "./messages.js";
import { state } from "./state.js";

/** The composer's text as last put back by refused sends, while the user has not touched it. */
let restoredText = /** @type {string | null} */ (null);

export function wireComposer() {
  $("composer").addEventListener("submit", (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    sendCurrent();
  });
  const area = $("composer-text");
  area.addEventListener("keydown", onKeydown);
  area.addEventListener("input", () => {
    autoGrow();
    if (composerShowsError()) clearComposerMessage();
  });
  $("composer-ttl").addEventListener("change", (/** @type {Event} */ event) => {
    const select = /** @type {HTMLSelectElement} */ (event.target);
    select.classList.toggle("active", Boolean(select.value));
  });
  wireComposerFiles();
  window.addEventListener("resize", autoGrow);
}

/**
 * Keeps the open conversation's unsent text and files aside.
 * @param {string} user
 */
export function saveDraft(user) {
  keepDraft(user, $("composer-text").value, stagedFiles());
}

/**
 * Puts back what was left unsent to `user`.
 * @param {string} user
 */
export function restoreDraft(user) {
  const draft = takeDraft(user);
  $("composer-text").value = draft ? draft.text : "";
  setStaged(draft ? draft.staged : []);
  autoGrow();
}

/** Fits the text area to its text, up to the stylesheet's maximum height. */
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

/** @param {KeyboardEvent} event */
function onKeydown(event) {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  sendCurrent();
}

async function sendCurrent() {
  const to = state.current;
  if (!to) return;
  const area = $("composer-text");
  const original = area.value;
  const text = original.trim();
  const staged = stagedFiles();
  if (!text && staged.length === 0) {
    area.focus();
    return;
  }
  const ttl = $("composer-ttl").value || null;
  area.value = "";
  setStaged([]);
  autoGrow();
  clearComposerMessage();
  area.focus();
  try {
    /** @type {Sent} */
    const result = await invoke("send", { to, text, ttl, attachments: staged.map((s) => s.token) });
    if (result && result.id !== undefined && result.delivered === true && to === state.current) {
      showDelivered(result.id, null);
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

/**
 * Puts a refused message back where the user can fix and resend it.
 * @param {string} to
 * @param {string} text
 * @param {StagedFile[]} staged
 */
function restoreUnsent(to, text, staged) {
  if (to === state.current) {
    const area = $("composer-text");
    // Several overlapping sends may bounce: keep them in the order they were written, and
    // before anything typed since.
    if (!area.value) area.value = text;
    else if (area.value === restoredText) area.value = `${area.value}\n${text}`;
    else area.value = `${text}\n${area.value}`;
    restoredText = area.value;
    restoreStaged(staged);
    autoGrow();
    area.focus();
  } else {
    const draft = draftOf(to);
    draft.text = draft.text ? `${text}\n${draft.text}` : text;
    draft.staged = staged.concat(draft.staged);
  }
}
