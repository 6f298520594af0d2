// One log source's tab and pane: lines batched per frame, filter, levels, follow/pause, status.
import { clock, el } from "./format.js";
import { scheduler } from "./frame.js";
import { levelOf, parseFilter } from "./text.js";

const MAX_LINES = 5000;
// Lines live in blocks of this many, each with CSS containment: a new line lays out and paints
// its block, not all 5,000 lines (at 1,000 lines/s that was most of the main thread).
const BLOCK_LINES = 100;
// A quiet log's line shows at the next frame; under a storm the pane redraws at most this
// often (nobody reads 1,000 lines a second, and every redraw lays out and paints).
const MIN_REDRAW_MS = 100;
const STATE_LABELS = { following: "following", waiting: "waiting for file", error: "error" };

export class LogPane {
  constructor(name, onSelect) {
    this.name = name;
    this.pending = [];
    this.following = true;
    this.newWhilePaused = 0;
    this.unread = 0;
    this.active = false;
    this.filter = null;
    this.schedule = scheduler(() => this.flush(), { minIntervalMs: MIN_REDRAW_MS });
    this.expectedTop = 0;
    this.count = 0; // lines (and gap marks) in the pane
    this.buildTab(onSelect);
    this.buildPane();
  }

  buildTab(onSelect) {
    this.tab = el("button", "log-tab");
    this.tab.type = "button";
    this.tab.dataset.source = this.name;
    this.tab.setAttribute("role", "tab");
    this.dot = el("span", "dot");
    this.badge = el("span", "badge");
    this.badge.hidden = true;
    this.tab.append(this.dot, el("span", "tab-name", this.name), this.badge);
    this.tab.addEventListener("click", () => onSelect(this.name));
  }

  buildPane() {
    this.pane = el("section", "log-pane");
    this.pane.dataset.source = this.name;
    this.pane.hidden = true;
    const bar = el("div", "log-toolbar");
    this.input = el("input", "log-filter");
    Object.assign(this.input, { type: "search", placeholder: "Filter: text or /regex/   ( / )", spellcheck: false, autocomplete: "off" });
    this.input.setAttribute("aria-label", `filter ${this.name} lines`);
    this.error = el("span", "log-filter-error");
    this.error.hidden = true;
    this.followBtn = el("button", "log-follow");
    this.followBtn.title = "Follow new lines (space)";
    this.wrapBtn = el("button", "log-wrap", "Wrap");
    this.wrapBtn.setAttribute("aria-pressed", "false");
    this.wrapBtn.title = "Wrap long lines";
    const clearBtn = el("button", "log-clear", "Clear");
    clearBtn.title = "Clear this pane (new lines still arrive)";
    for (const b of [this.followBtn, this.wrapBtn, clearBtn]) b.type = "button";
    const filterBox = el("div", "filter-box");
    filterBox.append(this.input, this.error);
    bar.append(filterBox, this.followBtn, this.wrapBtn, clearBtn);
    this.lines = el("div", "log-lines");
    this.lines.setAttribute("role", "log");
    this.lines.tabIndex = 0;
    this.lines.dataset.empty = "No lines yet.";
    const foot = el("div", "log-foot");
    this.statusEl = el("div", "log-status", "starting");
    this.statusEl.dataset.state = "starting";
    this.countEl = el("div", "log-count muted", "0 lines");
    foot.append(this.statusEl, this.countEl);
    this.pane.append(bar, this.lines, foot);

    this.input.addEventListener("input", () => this.setFilter(this.input.value));
    this.input.addEventListener("keydown", (e) => { if (e.key === "Escape") { this.input.value = ""; this.setFilter(""); this.input.blur(); } });
    this.followBtn.addEventListener("click", () => (this.following ? this.pause() : this.resume()));
    this.wrapBtn.addEventListener("click", () => {
      const on = this.pane.classList.toggle("wrap");
      this.wrapBtn.setAttribute("aria-pressed", String(on));
    });
    clearBtn.addEventListener("click", () => this.clear());
    this.lines.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.drawFollow();
  }

  /** Queue lines; they reach the DOM at the next animation frame. */
  push(lines) {
    for (const line of lines) this.pending.push(typeof line === "string" ? line : String(line?.text ?? line));
    if (this.pending.length > MAX_LINES) this.pending.splice(0, this.pending.length - MAX_LINES);
    if (!this.active) this.unread += lines.length;
    this.schedule();
  }

  gap(missed) {
    this.pending.push({ gap: missed });
    this.schedule();
  }

  // Called through this.schedule (or .now()), never directly: the storm throttle times from it.
  flush() {
    const batch = this.pending;
    this.pending = [];
    const box = this.lines;
    let block = box.lastElementChild;
    let added = 0;
    for (const item of batch) {
      const node = el("div", "line");
      if (typeof item === "string") {
        node.textContent = item;
        const level = levelOf(item);
        if (level) node.classList.add(`lvl-${level}`);
        if (this.filter && !this.filter(item)) node.classList.add("filtered");
        added++;
      } else {
        node.classList.add("gap");
        node.textContent = `… ${item.gap} lines missed`;
      }
      if (!block || block.childElementCount >= BLOCK_LINES) {
        block = el("div", "block");
        box.append(block);
      }
      block.append(node);
    }
    this.count += batch.length;
    const extra = this.count - MAX_LINES;
    if (extra > 0) this.trim(extra);
    if (this.following) this.toBottom();
    else this.newWhilePaused += added;
    this.drawFollow();
    this.countEl.textContent = `${this.count.toLocaleString()} lines${this.count >= MAX_LINES ? " (max)" : ""}`;
    this.badge.hidden = !this.unread;
    this.badge.textContent = this.unread > 999 ? "999+" : String(this.unread);
  }

  trim(count) {
    const box = this.lines;
    const before = this.following ? 0 : box.scrollHeight;
    this.count -= count;
    while (count > 0) { // whole blocks, then the first lines of the next one
      const first = box.firstElementChild;
      const n = first.childElementCount;
      if (n <= count) {
        first.remove();
        count -= n;
      } else {
        const range = document.createRange();
        range.setStartBefore(first.firstChild);
        range.setEndAfter(first.children[count - 1]);
        range.deleteContents();
        count = 0;
      }
    }
    if (!this.following) { // keep what the reader is looking at in place
      box.scrollTop -= before - box.scrollHeight;
      this.expectedTop = box.scrollTop;
    }
  }

  toBottom() {
    this.lines.scrollTop = this.lines.scrollHeight;
    this.expectedTop = this.lines.scrollTop;
  }

  onScroll() {
    const box = this.lines;
    if (Math.abs(box.scrollTop - this.expectedTop) < 2) return; // ours, not the reader's
    this.expectedTop = box.scrollTop;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
    if (this.following && !atBottom) this.pause();
    else if (!this.following && atBottom) this.resume();
  }

  pause() {
    if (this.pending.length) this.schedule.now(); // lines that came before the pause are not "new"
    this.following = false;
    this.drawFollow();
  }

  resume() {
    this.following = true;
    this.newWhilePaused = 0;
    this.schedule.now();
  }

  drawFollow() {
    const b = this.followBtn;
    b.dataset.following = String(this.following);
    b.textContent = this.following ? "Live" : `Paused${this.newWhilePaused ? ` · ${this.newWhilePaused.toLocaleString()} new` : ""}`;
    b.title = this.following ? "Following new lines; space or scrolling up pauses" : "Jump back to the newest line (space)";
  }

  setFilter(text) {
    const { test, error } = parseFilter(text.trim());
    this.filter = test;
    this.error.hidden = !error;
    this.error.textContent = error || "";
    this.input.classList.toggle("invalid", Boolean(error));
    for (const node of this.lines.querySelectorAll(".line:not(.gap)")) {
      node.classList.toggle("filtered", Boolean(test) && !test(node.textContent));
    }
    if (this.following) this.toBottom();
  }

  status(st) {
    const label = STATE_LABELS[st.state] || st.state;
    const detail = st.detail || "";
    // "waiting for /x.log to appear" already says the state
    const parts = detail.toLowerCase().startsWith(st.state) ? [detail] : [label, ...(detail ? [detail] : [])];
    if (st.state === "error" && st.retry_in_s) parts.push(`retry in ${Math.round(st.retry_in_s)}s`);
    if (st.mode) parts.push(st.mode);
    if (st.change) parts.push(`${st.change} at ${clock(st.ts || Date.now() / 1000)}`);
    if (st.errors?.length) parts.push(st.errors.join("; "));
    this.statusEl.textContent = parts.join(" · ");
    this.statusEl.dataset.state = st.state;
    this.statusEl.title = this.statusEl.textContent;
    this.lines.dataset.empty = st.state === "following" ? "No lines yet: new lines appear here as they are written."
      : `No lines: ${parts.join(" · ")}`;
    this.dot.dataset.state = st.state;
    this.tab.title = `${this.name}: ${label}`;
  }

  setActive(active) {
    this.active = active;
    this.pane.hidden = !active;
    this.tab.setAttribute("aria-selected", String(active));
    if (active) {
      this.unread = 0;
      this.schedule.now();
    }
  }

  clear() {
    this.pending = [];
    this.lines.replaceChildren();
    this.count = 0;
    this.newWhilePaused = 0;
    this.unread = 0;
    this.schedule.now();
  }
}
