// What a log line says, apart from the DOM: its level, and whether the pane's filter keeps it.

const LEVEL_SCAN_CHARS = 400;
// The earliest match in a line wins ("INFO retry after error" is info).
const LEVELS = [
  ["error", /\b(?:ERROR|ERR|FATAL|CRIT(?:ICAL)?|EMERG|PANIC|SEVERE)\b/i],
  ["warn", /\bWARN(?:ING)?\b/i],
  ["info", /\b(?:INFO|NOTICE)\b/i],
  ["debug", /\b(?:DEBUG|TRACE)\b/i],
];

/** "error", "warn", "info", "debug", or null: the level named first in the line's start. */
export function levelOf(line) {
  const head = line.length > LEVEL_SCAN_CHARS ? line.slice(0, LEVEL_SCAN_CHARS) : line;
  let best = null, at = Infinity;
  for (const [name, re] of LEVELS) {
    const m = re.exec(head);
    if (m && m.index < at) { best = name; at = m.index; }
  }
  return best;
}

/**
 * { test, error }: test(line) keeps a line, or is null when nothing is filtered out.
 * "/re/flags" is a regex, anything else a substring (case-insensitive unless it has capitals).
 */
export function parseFilter(text) {
  if (!text) return { test: null };
  const m = /^\/(.+)\/([dgimsuy]*)$/.exec(text);
  if (m) {
    try {
      // g and y would make test() resume from the last match, skipping lines
      const re = new RegExp(m[1], m[2].replace(/[gy]/g, ""));
      return { test: (s) => re.test(s) };
    } catch (err) {
      return { test: null, error: `bad regex: ${err.message.replace(/^Invalid regular expression: /, "")}` };
    }
  }
  if (text !== text.toLowerCase()) return { test: (s) => s.includes(text) };
  const lower = text.toLowerCase();
  return { test: (s) => s.toLowerCase().includes(lower) };
}
