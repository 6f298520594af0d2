// rows.js: a log pane's rows as data; what is kept, what the filter shows, where each row sits.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GAP, NOTE, Rows } from "../../web/static/js/rows.js";

const texts = (rows, list = rows.shown) => list.map((r) => r.text);
const lines = (from, to) => Array.from({ length: to - from }, (_, i) => `line ${from + i}`);

test("rows keep their order, oldest dropped first, and say how tall they are", () => {
  const rows = new Rows(18);
  rows.append(lines(0, 10));
  rows.append([{ gap: 3 }]);
  assert.equal(rows.count, 11);
  assert.equal(rows.shown[10].kind, GAP);
  assert.equal(rows.shown[10].text, "… 3 lines missed");
  assert.equal(rows.drop(4), 4 * 18);
  assert.deepEqual(texts(rows).slice(0, 2), ["line 4", "line 5"]);
  assert.equal(rows.height, 7 * 18);
  assert.equal(rows.drop(2, "end"), 2 * 18);
  assert.deepEqual(texts(rows), lines(4, 9));
  assert.equal(rows.drop(100), 5 * 18);
  assert.equal(rows.count, 0);
});

test("earlier lines go before the oldest, in order, with lower seqs", () => {
  const rows = new Rows(18);
  rows.append(lines(10, 20));
  assert.equal(rows.prepend(lines(0, 10)), 10 * 18);
  assert.deepEqual(texts(rows), lines(0, 20));
  const seqs = rows.items.map((r) => r.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.equal(new Set(seqs).size, 20);
  rows.drop(5);
  rows.prepend(["line 4"]);
  assert.equal(rows.items[0].seq, rows.items[1].seq - 1);
});

test("the filter shows what it keeps, gap marks always, and follows drops at either end", () => {
  const rows = new Rows(18);
  rows.append(lines(0, 20));
  rows.append([{ gap: 1 }]);
  rows.setFilter((t) => t.endsWith("5") || t.endsWith("0"));
  assert.deepEqual(texts(rows), ["line 0", "line 5", "line 10", "line 15", "… 1 lines missed"]);
  assert.equal(rows.count, 21); // the filter hides; the pane still holds them
  rows.append(lines(20, 26));
  assert.deepEqual(texts(rows).slice(-2), ["line 20", "line 25"]);
  assert.equal(rows.drop(6), 2 * 18); // line 0..5 gone, of them line 0 and line 5 were shown
  assert.equal(rows.drop(3, "end"), 1 * 18); // line 23..25: only 25 was shown
  assert.deepEqual(texts(rows), ["line 10", "line 15", "… 1 lines missed", "line 20"]);
  assert.equal(rows.prepend(["line 0", "line 1"]), 18);
  rows.setFilter(null);
  assert.equal(rows.shown, rows.items);
  assert.equal(rows.shown.length, rows.count);
});

test("a moment's rows: a note before the marked line, not counted as a line", () => {
  const rows = new Rows(18);
  rows.append(lines(0, 3));
  const at = rows.replace(lines(0, 6), 4, "around 12:00:00");
  assert.equal(at, 4);
  assert.equal(rows.shown[4].kind, NOTE);
  assert.ok(rows.shown[5].mark);
  assert.equal(rows.count, 6);
  assert.equal(rows.replace([], -1, "No lines around 12:00:00"), 0);
  assert.equal(rows.count, 0);
  rows.drop(1);
  assert.equal(rows.count, 0);
});

test("wrapped rows: estimated, then measured, and found by their position", () => {
  const rows = new Rows(18);
  rows.append(["a", "b".repeat(250), "c", "d".repeat(95)]);
  rows.setEstimate((r) => 18 * Math.max(1, Math.ceil(r.text.length / 100)));
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => rows.topOf(i)), [0, 18, 72, 90, 108]);
  assert.equal(rows.indexAt(17), 0);
  assert.equal(rows.indexAt(18), 1);
  assert.equal(rows.indexAt(71), 1);
  assert.equal(rows.indexAt(1e9), 3);
  assert.equal(rows.measured(rows.shown[1], 54), false); // as estimated
  assert.equal(rows.measured(rows.shown[3], 36), true); // wrapped at a space, one row more
  assert.equal(rows.height, 126);
  assert.equal(rows.drop(2), 18 + 54);
  assert.equal(rows.topOf(2), 18 + 36);
  rows.setEstimate(null); // unwrapped again: every row one high, measurements forgotten
  assert.equal(rows.height, 2 * 18);
  assert.equal(rows.shown[1].h, 0);
});

test("the longest line is known after drops, and a seq finds its row under a filter", () => {
  const rows = new Rows(18);
  rows.append(["a".repeat(50), "bb", "c".repeat(30)]);
  assert.equal(rows.widest(), 50);
  rows.drop(1);
  assert.equal(rows.widest(), 30);
  rows.append(["d".repeat(70)]);
  assert.equal(rows.widest(), 70);
  rows.setFilter((t) => t.startsWith("d") || t.startsWith("bb"));
  const [bb, c, d] = rows.items;
  assert.equal(rows.indexFromSeq(bb.seq), 0);
  assert.equal(rows.indexFromSeq(c.seq), 1); // hidden: the next shown row
  assert.equal(rows.shown[1], d);
  assert.equal(rows.indexFromSeq(d.seq + 1), 2); // none at or after: the number shown
});
