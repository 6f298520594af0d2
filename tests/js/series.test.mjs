// The charts' data: history loaded in /api/history's one shape, live samples, buckets, the window.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Series, addToMean, stack, valueAt } from "../../web/static/js/series.js";

const history = (over) => ({ resolution_s: 1, is_bucketed: false, ts: [], series: {}, min: {}, max: {}, ...over });

test("a sample's numbers are found by dotted path, list items too", () => {
  const m = { load: { "1m": 0.5 }, cpu: { per_core: [10, 20] }, host: "db1" };
  assert.equal(valueAt(m, "load.1m"), 0.5);
  assert.equal(valueAt(m, "cpu.per_core.1"), 20);
  assert.equal(valueAt(m, "cpu.per_core.2"), null);
  assert.equal(valueAt(m, "swap.percent"), null);
  assert.equal(valueAt(m, "host"), null);
});

test("a running mean skips gaps instead of counting them as zero", () => {
  let acc = { mean: null, count: 0 };
  for (const v of [null, 10, null, 20]) acc = addToMean(acc.mean, acc.count, v);
  assert.deepEqual(acc, { mean: 15, count: 2 });
});

test("full-resolution history loads the keys asked for, from series", () => {
  const s = new Series();
  s.load(history({ ts: [100, 101], series: { "cpu.user": [1, 2], "cpu.system": [3, null], other: [9, 9] } }),
    ["cpu.user", "cpu.system", "load.1m"]);
  assert.equal(s.bucketS, 0);
  assert.deepEqual(s.data(["cpu.user", "cpu.system", "load.1m"]), [[100, 101], [1, 2], [3, null], [null, null]]);
  assert.equal(s.cols.has("other"), false);
});

test("a live sample already in the history is not added twice", () => {
  const s = new Series();
  s.load(history({ ts: [100, 101], series: { a: [1, 2] } }), ["a"]);
  assert.equal(s.add(101, { a: 2 }), false);
  assert.equal(s.add(102, { a: 3 }), true);
  assert.deepEqual(s.data(["a"]), [[100, 101, 102], [1, 2, 3]]);
});

test("bucketed history: live samples average into the open bucket, gaps skipped", () => {
  const s = new Series();
  s.load(history({ resolution_s: 60, is_bucketed: true, ts: [0, 60], series: { a: [5, null] },
    min: { a: [1, null] }, max: { a: [9, null] } }), ["a"]);
  assert.equal(s.bucketS, 60);
  for (const [ts, a] of [[61, 10], [62, null], [63, 20]]) s.add(ts, { a });
  assert.deepEqual(s.data(["a"]), [[0, 60], [5, 15]]);
  s.add(125, { a: 7 }); // the next minute opens a new bucket at its start
  assert.deepEqual(s.data(["a"]), [[0, 60, 120], [5, 15, 7]]);
});

test("the open bucket's history average weighs as one sample", () => {
  const s = new Series();
  s.load(history({ resolution_s: 60, is_bucketed: true, ts: [60], series: { a: [10] } }), ["a"]);
  s.add(90, { a: 20 });
  assert.deepEqual(s.data(["a"]), [[60], [15]]);
});

test("a series first seen live starts with gaps; one that stops reporting gets gaps", () => {
  const s = new Series();
  s.add(1, { a: 1 });
  s.add(2, { a: 2, b: 20 });
  s.add(3, { b: 30 });
  assert.deepEqual(s.data(["a", "b"]), [[1, 2, 3], [1, 2, null], [null, 20, 30]]);
});

test("trim keeps the window before the newest point", () => {
  const s = new Series();
  for (let ts = 0; ts <= 400; ts += 100) s.add(ts, { a: ts });
  s.trim(300);
  assert.deepEqual(s.data(["a"]), [[100, 200, 300, 400], [100, 200, 300, 400]]);
});

test("stacked columns add up; a gap in every column below stays a gap", () => {
  assert.deepEqual(stack([[1, null, null], [2, 3, null], [4, null, null]]), [[1, null, null], [3, 3, null], [7, 3, null]]);
});

test("data() hands out copies: later samples do not change what a chart holds", () => {
  const s = new Series();
  s.add(1, { a: 1 });
  const held = s.data(["a"]);
  s.add(2, { a: 2 });
  assert.deepEqual(held, [[1], [1]]);
});
