// What several parts of the window share. Everything else is kept by the one module that
// uses it.

/**
 * @typedef {object} State
 * @property {string | null} me The enrolled user.
 * @property {string | null} current The user whose conversation is open.
 * @property {Map<string, boolean | null>} presence Who is online, as last heard; `null` unknown.
 * @property {Map<string, "direct" | "relayed">} paths How each connected contact is reached now.
 * @property {boolean} stopped The app stopped (a fatal error): call nothing more.
 */

/** @type {State} */
export const state = Object.seal({
  me: null,
  current: null,
  presence: new Map(),
  paths: new Map(),
  stopped: false,
});
