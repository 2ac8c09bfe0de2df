// The second factor: turn it on (the otpauth:// URI as a QR code and as text, shown once) or
// off (with a current code), from the status line's "Second factor" button.

/** @typedef {import('./types.js').TotpEnabled} TotpEnabled */

import { errorMessage, invoke } from "./api.js";
import { $, closeDialog, openDialog, setText, showError } from "./dom.js";

export function wireTotp() {
  const dialog = $("totp-dialog");
  $("totp-open").addEventListener("click", () => {
    showError($("totp-error"), "");
    openDialog(dialog);
    $("totp-close").focus();
  });
  $("totp-close").addEventListener("click", () => closeTotp());
  dialog.addEventListener("click", (/** @type {MouseEvent} */ event) => {
    if (event.target === dialog) closeTotp();
  });
  dialog.addEventListener("close", () => forget());
  $("totp-enable").addEventListener("click", onEnable);
  $("totp-disable-form").addEventListener("submit", onDisable);
}

/** Closes the dialog; `true` if it was open. */
export function closeTotp() {
  const dialog = $("totp-dialog");
  if (!dialog.open) return false;
  closeDialog(dialog);
  $("totp-open").focus();
  return true;
}

/** The secret is shown once: nothing of it stays in the page once the dialog is closed. */
function forget() {
  $("totp-secret").hidden = true;
  $("totp-enable").hidden = false;
  /** @type {HTMLImageElement} */ ($("totp-qr")).removeAttribute("src");
  setText($("totp-uri"), "");
  /** @type {HTMLInputElement} */ ($("totp-code")).value = "";
  setText($("totp-done"), "");
}

async function onEnable() {
  const button = /** @type {HTMLButtonElement} */ ($("totp-enable"));
  showError($("totp-error"), "");
  setText($("totp-done"), "");
  button.disabled = true;
  try {
    /** @type {TotpEnabled} */
    const enabled = await invoke("totp_enable");
    const qr = /** @type {HTMLImageElement} */ ($("totp-qr"));
    if (enabled.qr_svg) qr.src = `data:image/svg+xml;base64,${btoa(enabled.qr_svg)}`;
    setText($("totp-uri"), enabled.uri);
    $("totp-secret").hidden = false;
    // Shown once: a second "Turn on" would only be refused.
    button.hidden = true;
  } catch (err) {
    showError($("totp-error"), errorMessage(err));
  } finally {
    button.disabled = false;
  }
}

/** @param {SubmitEvent} event */
async function onDisable(event) {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($("totp-code"));
  showError($("totp-error"), "");
  setText($("totp-done"), "");
  try {
    await invoke("totp_disable", { code: input.value.trim() });
    $("totp-secret").hidden = true;
    $("totp-enable").hidden = false;
    setText($("totp-done"), "The second factor is off: enrolling needs only the password again.");
  } catch (err) {
    showError($("totp-error"), errorMessage(err));
  } finally {
    input.value = "";
  }
}
