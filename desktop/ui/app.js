// Parley desktop — the window's entry point: asks the app which screen to show, and wires the
// page's controls to the modules that own them.
//
// Safety rule: every string that comes from the app (usernames, message text, file names,
// reasons, errors, paths) reaches the DOM through textContent / createTextNode only.

/** @typedef {import('./types.js').Boot} Boot */

import { available, errorMessage, invoke } from "./api.js";
import { hideBanner, showBanner } from "./banner.js";
import { wireComposer } from "./composer.js";
import { closeContactDetails, wireContact } from "./contact.js";
import { openConversation, updateConversationView } from "./conversation.js";
import { $, setText } from "./dom.js";
import { showEnroll, wireEnroll } from "./enroll.js";
import { subscribe } from "./events.js";
import { refreshConversations, wireList } from "./list.js";
import { startTicking } from "./messages.js";
import { newConversationOpen, toggleNewConversation, wireNewConversation } from "./new-conversation.js";
import { showFatal, showScreen } from "./screens.js";
import { state } from "./state.js";
import { refreshStatus } from "./status.js";
import { closeTotp, wireTotp } from "./totp.js";
import { showUnlock, wireUnlock } from "./unlock.js";

/** @param {Boot | undefined} boot */
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

/** @param {Boot} boot */
async function showMain(boot) {
  state.stopped = false;
  state.me = boot.user || null;
  document.title = state.me ? `Parley — ${state.me}` : "Parley";
  if (state.me) setText($("status-user"), state.me);
  showScreen("screen-main");
  if (boot.warning) showBanner(boot.warning);
  updateConversationView();
  await subscribe();
  startTicking();
  refreshStatus();
  await refreshConversations();
}

/** Escape closes the contact details, else the new-conversation form. */
function onGlobalKeydown(/** @type {KeyboardEvent} */ event) {
  if (event.key !== "Escape") return;
  if (closeTotp()) {
    event.preventDefault();
    return;
  }
  if (closeContactDetails()) {
    event.preventDefault();
    $("contact-details-button").focus();
    return;
  }
  if (newConversationOpen()) {
    event.preventDefault();
    toggleNewConversation(false);
    $("new-conversation").focus();
  }
}

function wire() {
  wireEnroll(handleBoot);
  wireUnlock(handleBoot);
  $("banner-close").addEventListener("click", hideBanner);
  wireNewConversation(openConversation);
  wireList(openConversation);
  wireComposer();
  wireContact();
  wireTotp();
  document.addEventListener("keydown", onGlobalKeydown);
}

async function start() {
  wire();
  if (!available()) {
    showFatal("This page must run inside the Parley desktop app.");
    return;
  }
  try {
    handleBoot(await invoke("boot"));
  } catch (err) {
    showFatal(errorMessage(err));
  }
}

// A module runs once the document is parsed.
start();
