// The open conversation's header: the name, its presence, and the composer's placeholder.

import { $, setPresence, setText } from "./dom.js";
import { state } from "./state.js";

/** How the header names a connection's path. */
const PATHS = { direct: "direct", relayed: "via relay" };

export function renderConversationHeader() {
  const user = state.current;
  if (!user) return;
  setText($("conversation-name"), user);
  $("conversation-name").title = user;
  const online = state.presence.has(user) ? state.presence.get(user) : null;
  setPresence($("conversation-presence"), online);
  const presence = online === true ? "online" : online === false ? "offline" : "";
  const path = PATHS[state.paths.get(user)];
  setText($("conversation-presence-text"), path ? (presence ? `${presence} · ${path}` : path) : presence);
  $("conversation-presence-text").title = path === "via relay"
    ? "Connected through the rendezvous's relay: it carries ciphertext only, end-to-end encrypted"
    : path === "direct" ? "Connected straight to this contact's device" : "";
  $("composer-text").placeholder = user.length <= 16 ? `Message ${user}` : "Write a message";
}
