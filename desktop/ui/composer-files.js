// Files attached in the composer: picked with the page's file input, their bytes handed to the
// app (which keeps a copy until the message is sealed), shown as chips that can be removed.

/** @typedef {import('./drafts.js').StagedFile} StagedFile */

import { errorMessage, invoke } from "./api.js";
import { showComposerMessage } from "./composer-note.js";
import { $, el } from "./dom.js";
import { draftOf } from "./drafts.js";
import { formatSize } from "./format.js";
import { state } from "./state.js";

/** The files staged for the open conversation's next message. @type {StagedFile[]} */
let staged = [];

/** A copy of the staged files. */
export function stagedFiles() {
  return staged.slice();
}

/**
 * Replaces the staged files (a conversation opened, a message sent).
 * @param {StagedFile[]} files
 */
export function setStaged(files) {
  staged = files.slice();
  renderStagedAttachments();
}

/**
 * Puts files back before those staged since (a send bounced).
 * @param {StagedFile[]} files
 */
export function restoreStaged(files) {
  staged = files.concat(staged);
  renderStagedAttachments();
}

export function wireComposerFiles() {
  $("composer-attach").addEventListener("click", () => $("composer-file").click());
  $("composer-file").addEventListener("change", (/** @type {Event} */ event) => {
    const input = /** @type {HTMLInputElement} */ (event.target);
    const files = Array.from(input.files || []);
    input.value = "";
    const target = state.current;
    if (!target) return;
    for (const file of files) stageFile(file, target);
  });
}

/**
 * Hands a file's bytes to the app; the file goes to `target`'s composer, open or not.
 * @param {File} file
 * @param {string} target
 */
async function stageFile(file, target) {
  const placeholder = renderStagingChip(file.name);
  $("composer-attachments").append(placeholder);
  $("composer-attachments").hidden = false;
  try {
    const buffer = await file.arrayBuffer();
    /** @type {StagedFile} */
    const answer = await invoke("stage_attachment", new Uint8Array(buffer), {
      headers: { "x-file-name": encodeURIComponent(file.name) },
    });
    const entry = { token: answer.token, name: answer.name || file.name, size: answer.size ?? file.size };
    if (target === state.current) staged.push(entry);
    else draftOf(target).staged.push(entry);
  } catch (err) {
    showComposerMessage(`Could not attach ${file.name}: ${errorMessage(err)}`, "error");
  } finally {
    placeholder.remove();
    renderStagedAttachments();
  }
}

/** @param {string} name */
function renderStagingChip(name) {
  const chip = el("li", "chip staging");
  const label = el("span", "chip-name", name);
  label.title = name;
  chip.append(label, el("span", "chip-size", "attaching…"));
  return chip;
}

function renderStagedAttachments() {
  const box = $("composer-attachments");
  for (const chip of Array.from(box.querySelectorAll(".chip:not(.staging)"))) chip.remove();
  const staging = Array.from(box.children);
  staged.forEach((file, i) => box.insertBefore(renderAttachmentChip(file, i), staging[0] || null));
  box.hidden = box.children.length === 0;
}

/**
 * @param {StagedFile} file
 * @param {number} i
 */
function renderAttachmentChip(file, i) {
  const chip = el("li", "chip");
  const name = el("span", "chip-name", file.name);
  name.title = file.name;
  const remove = el("button", "icon-button chip-remove", "×");
  remove.type = "button";
  remove.setAttribute("aria-label", `Remove ${file.name}`);
  remove.title = "Remove";
  remove.addEventListener("click", () => {
    const [removed] = staged.splice(i, 1);
    renderStagedAttachments();
    $("composer-text").focus();
    // The app keeps a copy of a picked file until it is sent: let it go now.
    if (removed) invoke("discard_attachment", { token: removed.token }).catch(() => {});
  });
  chip.append(name, el("span", "chip-size", formatSize(file.size)), remove);
  return chip;
}
