// How figures and times read on the page.

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function percent(p) {
  return p === null || p === undefined ? "—" : `${p.toFixed(1)}%`;
}

// 42s, 5m 03s, 2h 05m, 3d 4h: the two largest units, like `stoker status`.
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

// An ISO time as this browser's local time: "14:03:22" today, "2024-05-01 14:03" otherwise.
export function time(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  const today = new Date();
  const clock = `${pad(t.getHours())}:${pad(t.getMinutes())}`;
  if (t.toDateString() === today.toDateString()) return `${clock}:${pad(t.getSeconds())}`;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${clock}`;
}

// How long something took: 0.35s, 4.2s, then as duration() (5m 03s).
export function took(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 1) return `${s.toFixed(2)}s`;
  if (s < 10) return `${s.toFixed(1)}s`;
  return duration(s);
}

// An ISO time in full, in this browser's zone: "2026-12-05 14:03:22 GMT+8" (a cell's title).
export function full(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  const date = `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
  const offset = -t.getTimezoneOffset();
  const zone = offset === 0 ? "UTC" : `UTC${offset > 0 ? "+" : "-"}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  return `${date} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())} ${zone}`;
}

// "in 4m 10s" / "12s ago"
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const delta = (new Date(iso).getTime() - now) / 1000;
  return delta >= 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

// A job parameter or result as text: strings as they are, anything else as JSON.
export function value(v) {
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}
