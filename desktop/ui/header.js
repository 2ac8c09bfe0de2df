// The open conversation's header: the name, its presence, and the composer's placeholder.

import { $, setPresence, setText } from "./dom.js";
import { state } from "./state.js";

export function renderConversationHeader() {
  const user = state.current;
  if (!user) return;
  setText($("conversation-name"), user);
  $("conversation-name").title = user;
  const online = state.presence.has(user) ? state.presence.get(user) : null;
  setPresence($("conversation-presence"), online);
  setText($("conversation-presence-text"), online === true ? "online" : online === false ? "offline" : "");
  $("composer-text").placeholder = user.length <= 16 ? `Message ${user}` : "Write a message";
}
