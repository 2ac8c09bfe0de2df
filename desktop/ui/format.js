// Dates, sizes and durations as the window writes them.

/** @typedef {import('./types.js').Message} Message */

/** @param {number} n */
function pad2(n) {
  return String(n).padStart(2, "0");
}

/**
 * @param {string | null | undefined} value RFC 3339.
 * @returns {Date | null}
 */
export function parseDate(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** HH:MM. @param {Date} d */
export function formatClock(d) {
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** @param {Date} d */
export function formatFullDate(d) {
  try {
    return d.toLocaleString(undefined, { dateStyle: "full", timeStyle: "medium" });
  } catch {
    return d.toString();
  }
}

/** @param {Date} a @param {Date} b */
function isSameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/**
 * Short time for the conversation list: today HH:MM, this week weekday, else date.
 * @param {Date} d
 */
export function formatListTime(d) {
  const now = new Date();
  if (isSameDay(d, now)) return formatClock(d);
  const ageDays = (now.getTime() - d.getTime()) / 86400000;
  try {
    if (ageDays >= 0 && ageDays < 6) return d.toLocaleDateString(undefined, { weekday: "short" });
    if (d.getFullYear() === now.getFullYear()) return d.toLocaleDateString(undefined, { day: "numeric", month: "short" });
    return d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  } catch {
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  }
}

/** "812 B", "4.2 KiB", "17 MiB". @param {unknown} bytes */
export function formatSize(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return "? B";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  const shown = value < 10 ? value.toFixed(1).replace(/\.0$/, "") : String(Math.round(value));
  return `${shown} ${units[i]}`;
}

/** Relative duration: "42s", "4m 12s", "1h 03m", "2d 4h". @param {number} ms */
export function formatDuration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${pad2(minutes)}m`;
  if (minutes > 0) return `${minutes}m ${pad2(seconds)}s`;
  return `${seconds}s`;
}

/** The other side of a message. @param {Message} message */
export function peerOf(message) {
  return message.direction === "outgoing" ? message.to : message.from;
}
