// The first-run screen: an invite that fills in the server and CA fingerprint (both kept in
// view, so the user sees what will be trusted), username, password and, for a new store, a
// passphrase typed twice. The secret fields are cleared when the call returns, whatever the
// answer.

/** @typedef {import('./types.js').Boot} Boot */
/** @typedef {import('./types.js').Invite} Invite */

import { errorMessage, invoke, usernameProblem } from "./api.js";
import { $, showError } from "./dom.js";
import { showScreen } from "./screens.js";

/** @param {Boot} boot */
export function showEnroll(boot) {
  const defaults = boot.defaults || {};
  const server = $("enroll-server");
  const fingerprint = $("enroll-fingerprint");
  if (defaults.server && !server.value) server.value = defaults.server;
  if (defaults.fingerprint && !fingerprint.value) fingerprint.value = defaults.fingerprint;
  const invite = $("enroll-invite");
  if (defaults.invite && !invite.value) {
    invite.value = defaults.invite;
    void readInvite();
  }
  $("enroll-passphrase-row").hidden = Boolean(boot.store_exists);
  showError($("enroll-error"), boot.message || "");
  showScreen("screen-enroll");
  // An invite fills in the server as it is read: the username comes first then.
  const first = [defaults.invite ? null : server, $("enroll-username")].find((input) => input && !input.value) || $("enroll-password");
  first.focus();
}

/** @param {(boot: Boot) => void} onBoot what to do with the screen the app answers. */
export function wireEnroll(onBoot) {
  $("enroll-invite").addEventListener("input", () => void readInvite());
  $("enroll-form").addEventListener("submit", async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const submit = $("enroll-submit");
    if (submit.disabled) return;
    const errorNode = $("enroll-error");
    submit.disabled = true;
    const invalid = await validate();
    if (invalid) {
      submit.disabled = false;
      showError(errorNode, invalid.message);
      $(invalid.field).focus();
      return;
    }
    showError(errorNode, "");
    submit.textContent = "Enrolling…";
    const passwordInput = $("enroll-password");
    const passphraseInput = $("enroll-passphrase");
    const withPassphrase = !$("enroll-passphrase-row").hidden;
    /** @type {Boot | null} */
    let boot = null;
    try {
      boot = await invoke("enroll", {
        server: $("enroll-server").value.trim(),
        fingerprint: $("enroll-fingerprint").value.trim(),
        username: $("enroll-username").value.trim(),
        password: passwordInput.value,
        passphrase: withPassphrase ? passphraseInput.value : "",
        totp: $("enroll-totp").value.trim(),
      });
    } catch (err) {
      showError(errorNode, errorMessage(err));
    } finally {
      passwordInput.value = "";
      $("enroll-totp").value = "";
      passphraseInput.value = "";
      $("enroll-passphrase-again").value = "";
      submit.disabled = false;
      submit.textContent = "Enroll";
    }
    if (boot) onBoot(boot);
    else passwordInput.focus();
  });
}

/**
 * The first field the form cannot be sent with, and why.
 * @returns {Promise<{field: string, message: string} | null>}
 */
async function validate() {
  if ($("enroll-invite").value.trim()) {
    const problem = await readInvite();
    if (problem) return { field: "enroll-invite", message: problem };
  }
  if (!$("enroll-server").value.trim()) {
    return { field: "enroll-server", message: "Enter the rendezvous server URL, for example https://127.0.0.1:8443." };
  }
  const problem = await usernameProblem($("enroll-username").value.trim());
  if (problem) return { field: "enroll-username", message: problem };
  if (!$("enroll-password").value) return { field: "enroll-password", message: "Enter your password." };
  if (!$("enroll-passphrase-row").hidden && $("enroll-passphrase").value !== $("enroll-passphrase-again").value) {
    return { field: "enroll-passphrase-again", message: "The two passphrases differ; type the same one twice, or leave both empty." };
  }
  return null;
}

/** Counts reads of the Invite field, so that only the answer to the latest one is shown. */
let inviteReads = 0;

/**
 * Reads the Invite field: a valid invite fills in the server and fingerprint fields, a
 * malformed one shows why under the field.
 * @returns {Promise<string | null>} why the invite is refused, or null.
 */
async function readInvite() {
  const read = ++inviteReads;
  const text = $("enroll-invite").value.trim();
  const errorNode = $("enroll-invite-error");
  if (!text) {
    showError(errorNode, "");
    return null;
  }
  /** @type {string | null} */
  let problem = null;
  try {
    /** @type {Invite} */
    const invite = await invoke("read_invite", { text });
    if (read === inviteReads) {
      $("enroll-server").value = invite.server;
      $("enroll-fingerprint").value = invite.fingerprint;
    }
  } catch (err) {
    problem = errorMessage(err);
  }
  if (read === inviteReads) showError(errorNode, problem || "");
  return problem;
}
