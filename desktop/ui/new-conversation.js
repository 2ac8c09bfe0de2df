// "New conversation": a username to write to, checked by the app's own rule.

import { usernameProblem } from "./api.js";
import { $, showError } from "./dom.js";

/**
 * Opens or closes the form (toggles without `force`).
 * @param {boolean} [force]
 */
export function toggleNewConversation(force) {
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

/** Whether the form is open. */
export function newConversationOpen() {
  return !$("new-conversation-form").hidden;
}

/**
 * @param {(user: string, options: {focusComposer: boolean}) => void} open
 */
export function wireNewConversation(open) {
  $("new-conversation").addEventListener("click", () => toggleNewConversation());
  $("empty-new-conversation").addEventListener("click", () => toggleNewConversation(true));
  $("new-username").addEventListener("input", () => showError($("new-error"), ""));
  let checking = false;
  $("new-conversation-form").addEventListener("submit", async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    if (checking) return;
    const input = $("new-username");
    const name = input.value.trim();
    checking = true;
    const problem = await usernameProblem(name).finally(() => {
      checking = false;
    });
    if (input.value.trim() !== name) return; // edited meanwhile: the next Start decides
    if (problem) {
      showError($("new-error"), problem);
      input.focus();
      return;
    }
    toggleNewConversation(false);
    open(name, { focusComposer: true });
  });
}
