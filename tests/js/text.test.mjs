// Log lines: the level a pane colours them by, and the filter box.
import assert from "node:assert/strict";
import { test } from "node:test";
import { levelOf, parseFilter } from "../../web/static/js/text.js";

const kept = (filter, lines) => lines.filter(parseFilter(filter).test);

test("the first level named in a line is its level", () => {
  assert.equal(levelOf("2026-11-25 12:00:00 INFO retry after error"), "info");
  assert.equal(levelOf("ERROR: INFO table missing"), "error");
  assert.equal(levelOf("[warning] disk 85%"), "warn");
  assert.equal(levelOf("kernel: CRITICAL temperature"), "error");
  assert.equal(levelOf("trace id=7 DEBUG cache hit"), "debug");
});

test("a word that only contains a level name is no level", () => {
  assert.equal(levelOf("GET /errors/informational 200"), null);
  assert.equal(levelOf("kernel: eth0 link up"), null);
});

test("only the start of a long line is scanned for a level", () => {
  assert.equal(levelOf(`${"x ".repeat(300)}ERROR at the end`), null);
  assert.equal(levelOf(`WARN ${"x".repeat(10_000)}`), "warn");
});

test("plain text matches anywhere, ignoring case unless it has capitals", () => {
  const lines = ["Alpha one", "beta two", "alpha three"];
  assert.deepEqual(kept("alpha", lines), ["Alpha one", "alpha three"]);
  assert.deepEqual(kept("Alpha", lines), ["Alpha one"]);
});

test("/re/ is a regular expression, with its flags", () => {
  const lines = ["beta two", "Beta three", "alpha beta"];
  assert.deepEqual(kept("/^beta/", lines), ["beta two"]);
  assert.deepEqual(kept("/^beta/i", lines), ["beta two", "Beta three"]);
});

test("a /re/g filter keeps every matching line, not every other one", () => {
  assert.deepEqual(kept("/a/g", ["a1", "a2", "a3", "b"]), ["a1", "a2", "a3"]);
});

test("a bad regex filters nothing and says why", () => {
  const { test: keep, error } = parseFilter("/[unclosed/");
  assert.equal(keep, null);
  assert.match(error, /^bad regex: .*unclosed/);
  assert.doesNotMatch(error, /Invalid regular expression/);
});

test("an empty filter keeps everything", () => {
  assert.deepEqual(parseFilter(""), { test: null });
});

test("a lone slash is text, not an empty regex", () => {
  assert.deepEqual(kept("/", ["GET /api", "no path"]), ["GET /api"]);
});
