// Contact details: the safety number to compare and, when the contact's keys changed, the new
// number and "Accept new keys".

/** @typedef {import('./types.js').Contact} Contact */

import { errorCode, errorMessage, invoke } from "./api.js";
import { loadHistory } from "./conversation.js";
import { $, closeDialog, openDialog, setText, showError } from "./dom.js";
import { scheduleConversationsRefresh } from "./list.js";
import { state } from "./state.js";

/** Whose details the dialog shows, while it is open. */
let contactUser = /** @type {string | null} */ (null);

export function wireContact() {
  const dialog = $("contact-details");
  $("contact-details-button").addEventListener("click", openContactDetails);
  $("contact-close").addEventListener("click", () => {
    closeDialog(dialog);
    $("contact-details-button").focus();
  });
  dialog.addEventListener("close", () => {
    // The close event is asynchronous: the dialog may already be open again.
    if (!dialog.open) contactUser = null;
  });
  dialog.addEventListener("click", (/** @type {MouseEvent} */ event) => {
    // A click on the backdrop (outside the dialog box) closes it.
    if (event.target === dialog) closeDialog(dialog);
  });
  $("trust-keys").addEventListener("click", onTrustKeys);
}

/** Closes the dialog; `true` if it was open. */
export function closeContactDetails() {
  const dialog = $("contact-details");
  if (!dialog.open) return false;
  closeDialog(dialog);
  return true;
}

/**
 * The user's keys changed: show the new number if their details are open.
 * @param {string} user
 */
export function onKeysChanged(user) {
  if (contactUser === user && $("contact-details").open) loadContact(user);
}

async function openContactDetails() {
  const user = state.current;
  if (!user) return;
  contactUser = user;
  setText($("contact-user"), user);
  $("contact-info").hidden = true;
  showError($("contact-error"), "");
  showError($("trust-error"), "");
  openDialog($("contact-details"));
  $("contact-close").focus();
  await loadContact(user);
}

/** @param {string} user */
async function loadContact(user) {
  try {
    /** @type {Contact} */
    const contact = await invoke("contact", { user });
    if (contactUser !== user) return;
    renderContact(contact, user);
  } catch (err) {
    if (contactUser !== user) return;
    $("contact-info").hidden = true;
    const message = errorCode(err) === "unknown_contact"
      ? errorMessage(err)
      : `Could not load the contact: ${errorMessage(err)}`;
    showError($("contact-error"), message);
  }
}

/**
 * @param {Contact} contact
 * @param {string} asked whose details were asked for.
 */
function renderContact(contact, asked) {
  const user = contact && contact.user ? contact.user : asked;
  setText($("contact-user"), user);
  showError($("contact-error"), "");
  setText($("safety-number"), contact.safety_number || "");
  setText($("safety-help"), `Compare this number with ${user} in person or over a call; if it matches, your conversation is private.`);
  setText($("keys-moved"), keysMoved(contact.ratchet));
  const pending = contact.pending_safety_number;
  $("contact-pending").hidden = !pending;
  setText($("pending-text"), pending ? `${user}'s keys changed. Compare this new safety number with ${user} before you accept the new keys; until then, messages to ${user} are not sent.` : "");
  setText($("pending-safety-number"), pending || "");
  showError($("trust-error"), "");
  $("contact-info").hidden = false;
}

/**
 * When the conversation's keys last moved on: what a stolen device could no longer open.
 * @param {Contact["ratchet"]} ratchet
 */
function keysMoved(ratchet) {
  if (!ratchet || !ratchet.last_step_at) {
    return "The conversation's keys have not moved on yet: they do with the next messages.";
  }
  const when = new Date(ratchet.last_step_at).toLocaleString();
  const steps = ratchet.steps === 1 ? "1 time" : `${ratchet.steps} times`;
  return `The conversation's keys last moved on ${when} (${steps} in all): messages from before then cannot be opened even with this device's keys.`;
}

async function onTrustKeys() {
  const user = contactUser;
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
