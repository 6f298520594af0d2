// Event ids: "<run>-<seq>" from one server (the run is its first start's time in ms), or a
// Redis stream's "<ms>-<n>" on a fleet's dashboard. Within a stream they only grow.

/** "<run>-<seq>" → [run, seq]; null if it is not one of ours. */
export function parseId(id) {
  const match = /^(\d+)-(\d+)$/.exec(id || "");
  return match ? [Number(match[1]), Number(match[2])] : null;
}

/** -1, 0 or 1 as parsed id `a` is older than, the same as, or newer than `b`. */
export function compareIds(a, b) {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  return a[1] === b[1] ? 0 : a[1] < b[1] ? -1 : 1;
}
