// Small DOM helpers. Text reaches the page through textContent only: never innerHTML.

/**
 * The element with this id (the page's ids are fixed in index.html).
 * @param {string} id
 * @returns {any}
 */
export const $ = (id) => document.getElementById(id);

/**
 * A new element with a class and text.
 * @param {string} tag
 * @param {string | null} [className]
 * @param {unknown} [text]
 * @returns {any}
 */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/**
 * @param {HTMLElement} node
 * @param {unknown} text
 */
export function setText(node, text) {
  node.textContent = text === undefined || text === null ? "" : String(text);
}

/**
 * Shows an error line, or hides it when `text` is empty.
 * @param {HTMLElement} node
 * @param {string} text
 */
export function showError(node, text) {
  setText(node, text);
  node.hidden = !text;
}

/**
 * A presence dot: its class, label and tooltip.
 * @param {HTMLElement} node
 * @param {boolean | null | undefined} online
 */
export function setPresence(node, online) {
  const label = online === true ? "online" : online === false ? "offline" : "presence unknown";
  node.classList.remove("online", "offline", "unknown");
  node.classList.add(online === true ? "online" : online === false ? "offline" : "unknown");
  node.setAttribute("aria-label", label);
  node.title = label;
}

/** @param {any} dialog */
export function openDialog(dialog) {
  if (dialog.open) return;
  if (typeof dialog.showModal === "function") dialog.showModal();
  else dialog.setAttribute("open", "");
}

/** @param {any} dialog */
export function closeDialog(dialog) {
  if (typeof dialog.close === "function") dialog.close();
  else dialog.removeAttribute("open");
}
