// Event ids as the page orders them: a server's "<run>-<seq>", a fleet's "<ms>-<n>".
import assert from "node:assert/strict";
import { test } from "node:test";
import { compareIds, parseId } from "../../web/static/js/ids.js";

test("an id is two numbers; anything else is not one of ours", () => {
  assert.deepEqual(parseId("1765000000000-42"), [1765000000000, 42]);
  for (const bad of ["", null, undefined, "42", "a-1", "1-2-3", " 1-2"]) assert.equal(parseId(bad), null);
});

test("ids order by run (or ms), then by seq, as numbers, not as text", () => {
  const order = (a, b) => compareIds(parseId(a), parseId(b));
  assert.equal(order("5-9", "5-10"), -1);
  assert.equal(order("5-10", "5-9"), 1);
  assert.equal(order("5-10", "5-10"), 0);
  assert.equal(order("6-0", "5-99"), 1);
  assert.equal(order("10-1", "9-1"), 1);
});
