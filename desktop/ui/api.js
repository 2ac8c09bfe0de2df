// The bridge to the app: its commands and its `parley` events.

/** @typedef {import('./types.js').Event} Event */

/**
 * How every command fails.
 * @typedef {{code: string, message: string, queued?: boolean}} Failure
 */

const tauri = window.__TAURI__;

/** Whether the page runs inside the app. */
export function available() {
  return Boolean(tauri && tauri.core && tauri.event);
}

/**
 * Calls one of the app's commands.
 * @param {string} cmd
 * @param {Record<string, unknown> | Uint8Array} [args]
 * @param {{headers: Record<string, string>}} [options]
 * @returns {Promise<any>} the command's document (see types.js).
 */
export function invoke(cmd, args, options) {
  if (options === undefined) return tauri.core.invoke(cmd, args);
  return tauri.core.invoke(cmd, args, options);
}

/**
 * Calls `handler` with each `parley` event.
 * @param {(event: Event | undefined) => void} handler
 */
export function listen(handler) {
  return tauri.event.listen("parley", (/** @type {{payload?: Event}} */ event) => handler(event && event.payload));
}

/**
 * The sentence to show for a failed call.
 * @param {unknown} err a {@link Failure}, or whatever else the call threw.
 */
export function errorMessage(err) {
  if (err && typeof err === "object" && "message" in err && typeof err.message === "string" && err.message) return err.message;
  if (typeof err === "string" && err) return err;
  return "Something went wrong.";
}

/**
 * The stable code of a failed call, if it has one.
 * @param {unknown} err
 * @returns {string | null}
 */
export function errorCode(err) {
  return err && typeof err === "object" && "code" in err && typeof err.code === "string" ? err.code : null;
}

/**
 * Asks the app whether `name` can be a username: `null` when it can (or when the app cannot
 * say, since the command that follows applies the same rule), else the sentence saying why not.
 * @param {string} name
 * @returns {Promise<string | null>}
 */
export async function usernameProblem(name) {
  try {
    await invoke("check_username", { name });
    return null;
  } catch (err) {
    return errorCode(err) === "invalid_username" ? errorMessage(err) : null;
  }
}
