// The warning banner above the main screen.

import { $, setText } from "./dom.js";

/** @param {string} text */
export function showBanner(text) {
  setText($("banner-text"), text);
  $("banner").hidden = false;
}

export function hideBanner() {
  $("banner").hidden = true;
  setText($("banner-text"), "");
}
