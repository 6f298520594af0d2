// The charts' numbers, apart from the DOM: one time axis (epoch seconds) and a column per series,
// each sample a point, or (for long windows) one point per bucket holding the bucket's average.

/** A sample's number at a dotted path ("load.1m", "cpu.per_core.3"); null if it has none. */
export function valueAt(sample, path) {
  const v = path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), sample);
  return typeof v === "number" ? v : null;
}

/** The running mean of `count` values, with `value` added; a null value is a gap, not a zero. */
export function addToMean(mean, count, value) {
  if (value == null) return { mean, count };
  if (mean == null || !count) return { mean: value, count: 1 };
  return { mean: mean + (value - mean) / (count + 1), count: count + 1 };
}

/** Columns drawn stacked: each the sum of itself and those before it; a gap in all stays a gap. */
export function stack(columns) {
  const out = columns.slice(0, 1);
  for (const c of columns.slice(1)) {
    const below = out[out.length - 1];
    out.push(c.map((v, i) => (v == null && below[i] == null ? null : (v || 0) + (below[i] || 0))));
  }
  return out;
}

export class Series {
  constructor() {
    this.reset(0);
  }

  /** Empty, with points every sample (bucketS 0) or one per bucketS seconds. */
  reset(bucketS) {
    this.bucketS = bucketS;
    this.xs = [];
    this.cols = new Map();   // key → one value (or null) per x
    this.counts = new Map(); // key → values averaged into the last bucket so far
  }

  /** Start from /api/history's answer: `series` is name → values, bucket averages if is_bucketed. */
  load(history, keys) {
    this.reset(history.is_bucketed ? history.resolution_s : 0);
    this.xs = history.ts.slice();
    for (const key of keys) {
      if (history.series[key]) this.cols.set(key, history.series[key].slice());
    }
    // The open bucket's sample count is not sent: its average weighs as one sample.
    const last = this.xs.length - 1;
    for (const [key, c] of this.cols) if (c[last] != null) this.counts.set(key, 1);
  }

  /** A key's values, one per x; a key first seen now starts with gaps. */
  column(key) {
    if (!this.cols.has(key)) this.cols.set(key, this.xs.map(() => null));
    return this.cols.get(key);
  }

  /** Add the sample taken at `ts`: values is key → number or null. False if it adds nothing. */
  add(ts, values) {
    const n = this.xs.length;
    const x = this.bucketS ? Math.floor(ts / this.bucketS) * this.bucketS : ts;
    if (n && x < this.xs[n - 1]) return false;
    if (n && x === this.xs[n - 1]) {
      if (!this.bucketS) return false; // a sample the history already had
      for (const [key, value] of Object.entries(values)) {
        const c = this.column(key);
        const { mean, count } = addToMean(c[n - 1], this.counts.get(key) ?? 0, value);
        c[n - 1] = mean;
        this.counts.set(key, count);
      }
      return true;
    }
    for (const key of Object.keys(values)) this.column(key);
    this.xs.push(x);
    this.counts = new Map();
    for (const [key, c] of this.cols) {
      const value = values[key] ?? null;
      c.push(value);
      if (value != null) this.counts.set(key, 1);
    }
    return true;
  }

  /** Drop the points older than `windowS` before the newest (a bucket's worth is kept). */
  trim(windowS) {
    const cutoff = this.xs[this.xs.length - 1] - windowS - this.bucketS;
    let drop = 0;
    while (drop < this.xs.length && this.xs[drop] < cutoff) drop++;
    if (!drop) return;
    this.xs.splice(0, drop);
    for (const c of this.cols.values()) c.splice(0, drop);
  }

  /** [xs, ...ys] for uPlot: copies, as uPlot keeps the arrays it is given and ours change. */
  data(keys, isStacked) {
    const ys = keys.map((k) => this.cols.get(k)?.slice() ?? this.xs.map(() => null));
    return [this.xs.slice(), ...(isStacked ? stack(ys) : ys)];
  }
}
