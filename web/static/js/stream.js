// The event stream, shared by every dashboard tab of a browser profile. Browsers allow six
// HTTP/1.1 connections per origin, so an EventSource per tab would leave the 7th tab (and its
// fetches) stalled. One tab, the leader, holds the lock below and the only EventSource, and
// forwards every event over a BroadcastChannel. Another tab starts from /api/state, then
// applies the forwarded events newer than what it holds. When the leader tab closes, its lock
// is released and a waiting tab takes over, resuming from the last id it saw.
// Without Web Locks (plain http to a host other than localhost is not a secure context) or
// BroadcastChannel, each tab has its own EventSource, as before.
import { apiUrl, config } from "./config.js";
import { compareIds, parseId } from "./ids.js";

const TYPES = ["hello", "reset", "gap", "status", "metrics", "log", "alert"];
// Per host: on a fleet server, the tabs of one host share a stream, another host's do not.
const FOR_HOST = config.host ? `:${config.host}` : "";
const LOCK = `sse-monitor:stream-leader${FOR_HOST}`;
const CHANNEL = `sse-monitor:stream${FOR_HOST}`;
const STATE_URL = apiUrl(config.state_url);
// The server writes events that come faster than this as one `batch` event (?batch_ms): a
// page shows a frame's worth of lines at a time, and Chrome's own cost per EventSource
// message, at 10,000 lines/s, kept the page from 60 frames/s (#17).
const BATCH_MS = 16;
// A follower loads /api/state once the leader has answered its ask (and so forwards every
// event from then on); with no answer by then, it loads it anyway.
const ASK_TIMEOUT_MS = 2000;

/** Each event of a `batch` event's data, a line each: "<type> <id> <JSON>", in order. */
function* unbatch(data) {
  for (const line of data.split("\n")) {
    const afterType = line.indexOf(" ");
    const afterId = line.indexOf(" ", afterType + 1);
    if (afterType > 0 && afterId > afterType) {
      yield [line.slice(0, afterType), line.slice(afterType + 1, afterId), line.slice(afterId + 1)];
    }
  }
}

class SharedStream {
  /**
   * deliver(type, payload, id): called once per event, in order, however it arrived.
   * showState(state): "live" or "reconnecting", the state of the stream the page is fed by.
   */
  constructor({ url, retryMs, deliver, showState }) {
    this.url = url;
    this.retryMs = retryMs;
    this.deliver = deliver;
    this.showState = showState;
    this.channel = null;
    this.isLeader = false;
    this.state = "connecting";
    this.last = null; // [run, seq] of the newest event delivered
    this.lastId = "";
    this.buffer = []; // forwarded events held until /api/state is applied; then null
    this.leaderState = null; // the leader's last reported state, while buffering
    // A leader posts events only once another tab has asked for them: alone, posting each
    // one cost a sixth of the main thread at 10,000 lines/s (#17).
    this.forwarding = false;
    this.askTimer = null; // while a follower waits for the leader's answer
  }

  start() {
    if (!navigator.locks || typeof BroadcastChannel !== "function") {
      this.lead();
      return;
    }
    this.channel = new BroadcastChannel(CHANNEL);
    this.channel.addEventListener("message", (e) => this.onMessage(e.data));
    // Ask first, so the answer says at once whether another tab already streams.
    navigator.locks.request(LOCK, { ifAvailable: true }, (lock) => {
      if (lock) return this.lead();
      this.follow();
      // Taking over from a leader that went away: the other tabs are still there.
      const takeOver = () => { this.forwarding = true; return this.lead(); };
      navigator.locks.request(LOCK, takeOver).catch(takeOver);
      return undefined;
    }).catch(() => this.lead()); // locks refused (e.g. an opaque origin): stream alone
  }

  /** Deliver an event unless this tab has it: ids grow within a run; a new run is newer. */
  accept(type, id, data) {
    const parsed = parseId(id);
    // A reset starts over (its id may be lower than ours); everything else must be newer,
    // but a gap may carry our own id (a fleet's, when what followed it is not known).
    if (parsed && this.last && type !== "reset") {
      const order = compareIds(parsed, this.last);
      if (order < 0 || (order === 0 && type !== "gap")) return false;
    }
    let payload = data;
    if (typeof data === "string") {
      try {
        payload = JSON.parse(data);
      } catch {
        return false; // not ours to show; the stream goes on
      }
    }
    if (parsed) { this.last = parsed; this.lastId = id; }
    this.deliver(type, payload, id);
    return true;
  }

  // ---- leader -------------------------------------------------------------------------
  /** Become the one tab that streams; the promise holds the lock until the tab goes away. */
  lead() {
    if (this.isLeader) return new Promise(() => {});
    this.isLeader = true;
    // Taking over before /api/state came back: start afresh (hello + history), not from a
    // half-known position; the fetch's answer is ignored.
    this.buffer = null;
    this.connect();
    return new Promise(() => {});
  }

  connect() {
    const url = apiUrl(this.url);
    // A new EventSource cannot send Last-Event-ID: pass it in the query instead.
    if (this.lastId) url.searchParams.set("last_event_id", this.lastId);
    url.searchParams.set("batch_ms", String(BATCH_MS));
    const source = new EventSource(url);
    source.addEventListener("open", () => this.announce("live"));
    source.addEventListener("error", () => {
      this.announce("reconnecting");
      if (source.readyState === EventSource.CLOSED) { // HTTP error: the browser gave up
        setTimeout(() => this.connect(), this.retryMs);
      }
    });
    for (const type of TYPES) {
      source.addEventListener(type, (e) => {
        if (this.accept(type, e.lastEventId, e.data) && this.forwarding) {
          this.channel.postMessage({ type, id: e.lastEventId, data: e.data });
        }
      });
    }
    source.addEventListener("batch", (e) => {
      this.acceptBatch(e.data);
      // Forwarded whole: a follower drops, line by line, what it already has.
      if (this.forwarding) this.channel.postMessage({ batch: e.data });
    });
  }

  acceptBatch(data) {
    for (const [type, id, json] of unbatch(data)) this.accept(type, id, json);
  }

  announce(state) {
    this.state = state;
    this.showState(state);
    if (this.channel) this.channel.postMessage({ state });
  }

  // ---- follower -----------------------------------------------------------------------
  follow() {
    this.channel.postMessage({ ask: true }); // the leader answers with its state
    this.askTimer = setTimeout(() => this.answered(), ASK_TIMEOUT_MS);
  }

  /** The leader forwards events from now on: what /api/state says next misses none. */
  answered() {
    if (this.askTimer === null) return;
    clearTimeout(this.askTimer);
    this.askTimer = null;
    this.loadState();
  }

  onMessage(msg) {
    if (this.isLeader) {
      if (msg.ask) {
        this.forwarding = true;
        this.channel.postMessage({ state: this.state, answer: true });
      }
      return; // events from an old leader: our own stream replays them from our last id
    }
    if (msg.ask) return;
    if (msg.state) {
      if (msg.answer) this.answered();
      if (this.buffer) this.leaderState = msg.state;
      else this.showState(msg.state);
    } else if (this.buffer) {
      this.buffer.push(msg);
    } else {
      this.acceptMessage(msg);
    }
  }

  /** An event, or a batch of them, the leader forwarded. */
  acceptMessage(msg) {
    if (msg.batch !== undefined) this.acceptBatch(msg.batch);
    else this.accept(msg.type, msg.id, msg.data);
  }

  /** The current state from the server, then what the leader forwarded meanwhile. */
  async loadState() {
    while (!this.isLeader) {
      let events;
      try {
        const resp = await fetch(STATE_URL);
        if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
        ({ events } = await resp.json());
      } catch {
        if (this.isLeader) return;
        this.showState("reconnecting");
        await new Promise((resolve) => setTimeout(resolve, this.retryMs));
        continue;
      }
      if (this.isLeader) return;
      for (const e of events) this.accept(e.type, e.id, e.data);
      const held = this.buffer;
      this.buffer = null;
      for (const msg of held) this.acceptMessage(msg); // older ones drop out
      if (this.leaderState) this.showState(this.leaderState);
      return;
    }
  }
}

/** Start the page's stream; events reach `deliver` whichever tab holds the connection. */
export function start(options) {
  new SharedStream(options).start();
}
