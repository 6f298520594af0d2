// When the page redraws: at most once per animation frame, however many events asked for it,
// and not while the tab is hidden (nothing is painted then); a redraw asked for while hidden
// happens once the tab is shown again.

const deferred = new Set(); // schedule functions called while the tab was hidden
let isListening = false;

function showAgain() {
  if (document.hidden) return;
  const waiting = [...deferred];
  deferred.clear();
  for (const schedule of waiting) schedule();
}

function defer(schedule) {
  deferred.add(schedule);
  // added on first use, not at import, so node can load this module for its tests
  if (!isListening) document.addEventListener("visibilitychange", showAgain);
  isListening = true;
}

/**
 * schedule() asks for draw() at the next animation frame; calls before it add nothing.
 * minIntervalMs: at most one draw per that many ms, for sources that can storm.
 * schedule.now() draws at once (a user's action), in place of a pending draw.
 */
export function scheduler(draw, { minIntervalMs = 0 } = {}) {
  let frame = 0;
  let timer = 0;
  let lastDrawMs = -Infinity;

  function run() {
    frame = 0;
    lastDrawMs = performance.now();
    draw();
  }

  function schedule() {
    if (frame || timer) return;
    if (document.hidden) {
      defer(schedule);
      return;
    }
    const waitMs = lastDrawMs + minIntervalMs - performance.now();
    if (waitMs <= 0) {
      frame = requestAnimationFrame(run);
    } else {
      timer = setTimeout(() => {
        timer = 0;
        frame = requestAnimationFrame(run);
      }, waitMs);
    }
  }

  schedule.now = () => {
    if (frame) cancelAnimationFrame(frame);
    if (timer) clearTimeout(timer);
    timer = 0;
    run();
  };
  return schedule;
}
