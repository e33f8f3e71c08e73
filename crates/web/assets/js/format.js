// Formatting of times, durations and counts for display.

export function dateTime(ms) {
  if (ms === undefined || ms === null) return "—";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function duration(ms) {
  if (ms === undefined || ms === null) return "—";
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many || one + "s"}`;
}

export function since(startMs, endMs) {
  if (!startMs) return "—";
  return duration((endMs || Date.now()) - startMs);
}
