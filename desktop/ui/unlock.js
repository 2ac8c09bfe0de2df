// The unlock screen, for a store locked with a passphrase. The passphrase field is cleared
// when the call returns, whatever the answer.

/** @typedef {import('./types.js').Boot} Boot */

import { errorMessage, invoke } from "./api.js";
import { $, setText, showError } from "./dom.js";
import { showScreen } from "./screens.js";

/** @param {Boot} boot */
export function showUnlock(boot) {
  setText($("unlock-title"), boot.user ? `Unlock Parley for ${boot.user}` : "Unlock your messages");
  const home = $("unlock-home");
  setText(home, boot.home ? `Store: ${boot.home}` : "");
  home.hidden = !boot.home;
  showError($("unlock-error"), boot.message || "");
  showScreen("screen-unlock");
  $("unlock-passphrase").focus();
}

/** @param {(boot: Boot) => void} onBoot what to do with the screen the app answers. */
export function wireUnlock(onBoot) {
  $("unlock-form").addEventListener("submit", async (/** @type {SubmitEvent} */ event) => {
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
    /** @type {Boot | null} */
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
    if (boot) onBoot(boot);
    else input.focus();
  });
}
