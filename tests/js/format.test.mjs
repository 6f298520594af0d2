// Numbers as the dashboard shows them: sizes in 1024s, durations, compact axis labels.
import assert from "node:assert/strict";
import { test } from "node:test";
import { bytes, duration, percent, rate, short } from "../../web/static/js/format.js";

test("sizes count in 1024s, with one decimal under 100 of a unit", () => {
  assert.equal(bytes(0), "0 B");
  assert.equal(bytes(1023), "1023 B");
  assert.equal(bytes(1536), "1.5 KiB");
  assert.equal(bytes(200 * 1024 ** 2), "200 MiB");
  assert.equal(bytes(3.25 * 1024 ** 3, 2), "3.25 GiB");
  assert.equal(bytes(-2048), "-2.0 KiB");
});

test("a missing number reads as a dash, not NaN", () => {
  for (const missing of [null, undefined, NaN, Infinity]) {
    assert.equal(bytes(missing), "–");
    assert.equal(percent(missing), "–");
    assert.equal(duration(missing), "–");
  }
  assert.equal(rate(null), "–");
  assert.equal(short(null), "–");
});

test("rates and percentages", () => {
  assert.equal(rate(1536), "1.5 KiB/s");
  assert.equal(percent(12.345), "12.3%");
  assert.equal(percent(100, 0), "100%");
});

test("durations: days, hours, minutes; seconds only under an hour", () => {
  assert.equal(duration(273000), "3d 3h 50m");
  assert.equal(duration(3720), "1h 2m");
  assert.equal(duration(125.9), "2m 5s");
  assert.equal(duration(7), "7s");
  assert.equal(duration(-3), "0s");
});

test("axis numbers are short", () => {
  assert.equal(short(0.25), "0.25");
  assert.equal(short(3), "3");
  assert.equal(short(42.7), "43");
  assert.equal(short(1234), "1.2k");
  assert.equal(short(2_500_000), "2.5M");
});
