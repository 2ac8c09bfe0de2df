// The line under the composer: an error (stays until the user types), or a note (clears
// itself after a while).

import { $, showError } from "./dom.js";

const NOTE_CLEAR_MS = 10000;

/** @type {ReturnType<typeof setTimeout> | null} */
let noteTimer = null;

export function clearComposerMessage() {
  if (noteTimer) clearTimeout(noteTimer);
  noteTimer = null;
  const node = $("composer-error");
  node.classList.remove("note", "error");
  showError(node, "");
}

/**
 * @param {string} text
 * @param {"note" | "error"} kind
 */
export function showComposerMessage(text, kind) {
  clearComposerMessage();
  const node = $("composer-error");
  node.classList.add(kind);
  showError(node, text);
  if (kind === "note") {
    noteTimer = setTimeout(() => {
      if (node.classList.contains("note")) clearComposerMessage();
    }, NOTE_CLEAR_MS);
  }
}

/** Whether an error shows (typing clears it). */
export function composerShowsError() {
  return $("composer-error").classList.contains("error");
}
