// Which screen shows: loading, fatal, unlock, first run, or the main screen.

import { closeContactDetails } from "./contact.js";
import { $, setText } from "./dom.js";
import { stopTicking } from "./messages.js";
import { state } from "./state.js";

const SCREENS = ["screen-fatal", "screen-unlock", "screen-enroll", "screen-main"];

/** @param {string} id */
export function showScreen(id) {
  $("loading").hidden = true;
  for (const screen of SCREENS) $(screen).hidden = screen !== id;
}

/**
 * The app cannot go on: say why, and call nothing more.
 * @param {string | null | undefined} message
 */
export function showFatal(message) {
  state.stopped = true;
  stopTicking();
  closeContactDetails();
  setText($("fatal-message"), message || "Parley stopped unexpectedly.");
  document.title = "Parley";
  showScreen("screen-fatal");
}
