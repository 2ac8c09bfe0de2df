// What was written to a conversation that is not open: its text and staged files, kept until
// the user comes back to it.

/**
 * A file picked for the next message, kept by the app until sent or removed.
 * @typedef {{token: string, name: string, size: number}} StagedFile
 */

/** @typedef {{text: string, staged: StagedFile[]}} Draft */

/** @type {Map<string, Draft>} */
const drafts = new Map();

/**
 * The user's draft, a new empty one if there was none.
 * @param {string} user
 */
export function draftOf(user) {
  let draft = drafts.get(user);
  if (!draft) {
    draft = { text: "", staged: [] };
    drafts.set(user, draft);
  }
  return draft;
}

/**
 * Keeps what the composer holds for `user`; nothing when it is empty.
 * @param {string} user
 * @param {string} text
 * @param {StagedFile[]} staged
 */
export function keepDraft(user, text, staged) {
  if (text || staged.length) drafts.set(user, { text, staged: staged.slice() });
  else drafts.delete(user);
}

/**
 * Takes the user's draft out, to put it back in the composer.
 * @param {string} user
 * @returns {Draft | null}
 */
export function takeDraft(user) {
  const draft = drafts.get(user) || null;
  drafts.delete(user);
  return draft;
}
