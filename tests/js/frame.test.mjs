// frame.js with a stand-in for the browser: a document that can be hidden, frames run by hand.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

const frames = new Map(); // id → callback waiting for the next frame
let nextId = 1;
const listeners = [];
globalThis.document = {
  hidden: false,
  addEventListener: (type, fn) => listeners.push([type, fn]),
};
globalThis.requestAnimationFrame = (fn) => { frames.set(nextId, fn); return nextId++; };
globalThis.cancelAnimationFrame = (id) => frames.delete(id);

function runFrame() {
  const due = [...frames.values()];
  frames.clear();
  for (const fn of due) fn(performance.now());
}

function setHidden(hidden) {
  globalThis.document.hidden = hidden;
  for (const [type, fn] of listeners) if (type === "visibilitychange") fn();
}

const { scheduler } = await import("../../web/static/js/frame.js");

beforeEach(() => { frames.clear(); setHidden(false); });

test("many requests before a frame draw once, at that frame", () => {
  let draws = 0;
  const schedule = scheduler(() => draws++);
  for (let i = 0; i < 100; i++) schedule();
  assert.equal(draws, 0);
  runFrame();
  assert.equal(draws, 1);
  runFrame();
  assert.equal(draws, 1, "nothing new asked for, nothing drawn");
});

test("a hidden tab draws nothing, then draws once when shown again", () => {
  let draws = 0;
  const schedule = scheduler(() => draws++);
  setHidden(true);
  schedule();
  schedule();
  assert.equal(frames.size, 0, "no frame asked for while hidden");
  setHidden(false);
  runFrame();
  assert.equal(draws, 1);
});

test("a hidden tab with nothing asked for draws nothing when shown", () => {
  let draws = 0;
  scheduler(() => draws++);
  setHidden(true);
  setHidden(false);
  runFrame();
  assert.equal(draws, 0);
});

test("under a storm, minIntervalMs spaces the draws out", async () => {
  let draws = 0;
  const schedule = scheduler(() => draws++, { minIntervalMs: 50 });
  schedule();
  runFrame();
  assert.equal(draws, 1);
  schedule(); // right after a draw: waits out the interval, not the next frame
  assert.equal(frames.size, 0);
  await sleep(80);
  assert.equal(frames.size, 1);
  runFrame();
  assert.equal(draws, 2);
});

test("now() draws at once and replaces the pending draw", () => {
  let draws = 0;
  const schedule = scheduler(() => draws++);
  schedule();
  schedule.now();
  assert.equal(draws, 1);
  runFrame();
  assert.equal(draws, 1);
});
