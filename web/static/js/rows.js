// A log pane's rows as data, apart from the DOM: the rows kept (oldest dropped first), the
// ones the filter shows, and where each shown row sits, so that the pane puts only the rows in
// view into the DOM. Under a storm a pane that made a node per line made ~1,000 a redraw and
// missed frames (#17); now a redraw rewrites the few dozen rows in view.

export const LINE = 0, GAP = 1, NOTE = 2;

/** One row: a line's text, a gap mark's or a note's; `seq` orders rows, oldest lowest. */
function row(seq, text, kind = LINE) {
  // h: its measured height (px), 0 if not known; cls: its class names, once drawn
  return { seq, text, kind, mark: false, h: 0, cls: "" };
}

export class Rows {
  /** rowPx: a row's height unwrapped (every row's, until an estimate is set). */
  constructor(rowPx) {
    this.rowPx = rowPx;
    this.items = []; // every row kept, oldest first
    this.shown = this.items; // the rows the filter keeps: the same array without a filter
    this.filter = null;
    this.nextSeq = 0;
    this.notes = 0;
    // With wrapped lines, rows are as tall as the browser makes them: their measured height,
    // else estimate(row). Without, every row is rowPx and nothing needs adding up.
    this.estimate = null;
    this.tops = null; // with estimate: each shown row's top (px), and the total last; null: stale
    this.longest = 0; // the longest text's length; -1: not known (recounted when asked)
  }

  /** Rows kept, notes aside: lines and gap marks. */
  get count() {
    return this.items.length - this.notes;
  }

  /** The height of every shown row together (px). */
  get height() {
    return this.estimate ? this.offsets()[this.shown.length] : this.shown.length * this.rowPx;
  }

  /** Add `items` (a line's text, or { gap: n }) after the newest row. */
  append(items) {
    const added = items.map((it) => (typeof it === "string" ? row(this.nextSeq++, it) : row(this.nextSeq++, `… ${it.gap} lines missed`, GAP)));
    this.add(added, "end");
  }

  /** Add lines before the oldest row; the height of those shown (px), to keep the view still. */
  prepend(texts) {
    const first = (this.items.length ? this.items[0].seq : this.nextSeq) - texts.length;
    const added = texts.map((t, i) => row(first + i, t));
    return this.heightOf(this.add(added, "start"));
  }

  /** Start again with these rows (a moment's lines), a note before the marked one. */
  replace(texts, markAt, note) {
    this.clear();
    const added = texts.map((t) => row(0, t));
    const noteRow = row(0, note, NOTE);
    if (markAt >= 0 && markAt < added.length) {
      added[markAt].mark = true;
      added.splice(markAt, 0, noteRow);
    } else {
      added.push(noteRow);
    }
    added.forEach((r, i) => { r.seq = i; });
    this.nextSeq = added.length;
    this.notes = 1;
    this.add(added, "end");
    return this.shown.indexOf(noteRow);
  }

  add(added, end) {
    const shown = this.filter ? added.filter((r) => this.keeps(r)) : added;
    if (end === "end") {
      for (const r of added) this.items.push(r);
      if (this.filter) for (const r of shown) this.shown.push(r);
    } else {
      this.items.unshift(...added);
      if (this.filter) this.shown.unshift(...shown);
    }
    if (shown.length) this.tops = null;
    if (this.longest >= 0) for (const r of added) this.longest = Math.max(this.longest, r.text.length);
    return shown;
  }

  /** Drop `n` rows from the start (oldest) or the end; the height of those shown (px). */
  drop(n, end = "start") {
    n = Math.min(n, this.items.length);
    if (!n) return 0;
    const gone = end === "start" ? this.items.splice(0, n) : this.items.splice(this.items.length - n, n);
    this.notes -= gone.filter((r) => r.kind === NOTE).length;
    let shownGone = gone; // the filter's view loses the rows of the same seqs
    if (this.filter && end === "start") shownGone = this.shown.splice(0, this.indexFromSeq(gone[n - 1].seq + 1));
    else if (this.filter) shownGone = this.shown.splice(this.indexFromSeq(gone[0].seq));
    if (shownGone.length) this.tops = null;
    if (gone.some((r) => r.text.length >= this.longest)) this.longest = -1;
    return this.heightOf(shownGone);
  }

  clear() {
    this.items = [];
    this.shown = this.filter ? [] : this.items;
    this.notes = 0;
    this.nextSeq = 0;
    this.tops = null;
    this.longest = 0;
  }

  /** The length of the longest row's text (the pane's width unwrapped). */
  widest() {
    if (this.longest < 0) this.longest = this.items.reduce((n, r) => Math.max(n, r.text.length), 0);
    return this.longest;
  }

  /** The index of the first shown row at or after `seq` (the number shown if none is). */
  indexFromSeq(seq) {
    let lo = 0, hi = this.shown.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.shown[mid].seq < seq) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /** Show only the lines `test` keeps (gap marks and notes always); null shows every row. */
  setFilter(test) {
    this.filter = test;
    this.shown = test ? this.items.filter((r) => this.keeps(r)) : this.items;
    this.tops = null;
  }

  keeps(r) {
    return r.kind !== LINE || this.filter(r.text);
  }

  /** Rows' heights vary (wrapped lines): estimate(row) until a row is measured; null: they
   * don't. Either way every measurement so far is forgotten (the width changed). */
  setEstimate(estimate) {
    this.estimate = estimate;
    for (const r of this.items) r.h = 0;
    this.tops = null;
  }

  /** A row's height as drawn; true if that moved the rows after it. */
  measured(r, px) {
    if (!this.estimate || px === this.heightOfRow(r)) return false;
    r.h = px;
    this.tops = null;
    return true;
  }

  heightOfRow(r) {
    return this.estimate ? r.h || this.estimate(r) : this.rowPx;
  }

  heightOf(rows) {
    if (!this.estimate) return rows.length * this.rowPx;
    let px = 0;
    for (const r of rows) px += this.heightOfRow(r);
    return px;
  }

  offsets() {
    if (!this.tops) {
      const tops = new Float64Array(this.shown.length + 1);
      for (let i = 0; i < this.shown.length; i++) tops[i + 1] = tops[i] + this.heightOfRow(this.shown[i]);
      this.tops = tops;
    }
    return this.tops;
  }

  /** The top (px) of shown row `i` (the total height for i = the number shown). */
  topOf(i) {
    return this.estimate ? this.offsets()[i] : i * this.rowPx;
  }

  /** The index of the shown row at `px` from the top (clamped to the rows there are). */
  indexAt(px) {
    const n = this.shown.length;
    if (!n) return 0;
    if (!this.estimate) return Math.min(n - 1, Math.max(0, Math.floor(px / this.rowPx)));
    const tops = this.offsets();
    let lo = 0, hi = n - 1;
    while (lo < hi) { // the last row whose top is at or above px
      const mid = (lo + hi + 1) >> 1;
      if (tops[mid] <= px) lo = mid; else hi = mid - 1;
    }
    return lo;
  }
}
