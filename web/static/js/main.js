// Owns the page's one EventSource; placeholder view until the dashboard issue lands.
const config = JSON.parse(document.body.dataset.config);
const MAX_LOG_LINES = 5000;
const $ = (id) => document.getElementById(id);

function setState(state) {
  const el = $("state");
  el.dataset.state = state;
  el.textContent = state;
}

function seen() {
  $("last-event").textContent = `last event ${new Date().toLocaleTimeString()}`;
}

function showSource(status) {
  let li = document.querySelector(`#sources li[data-source="${CSS.escape(status.source)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.source = status.source;
    $("sources").append(li);
  }
  li.textContent = `${status.source}: ${status.state} ${status.detail || ""}`;
}

function appendLog(source, lines) {
  const pre = $("log");
  for (const line of lines) {
    pre.append(document.createTextNode(`${source} ${typeof line === "string" ? line : line.text}\n`));
  }
  while (pre.childNodes.length > MAX_LOG_LINES) pre.firstChild.remove();
}

const es = new EventSource(config.events_url);
es.addEventListener("open", () => setState("live"));
es.addEventListener("error", () => setState(es.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
function greet(info) {
  $("no-logs").hidden = info.sources.length > 0;
  seen();
}

es.addEventListener("hello", (e) => { setState("live"); greet(JSON.parse(e.data)); });
es.addEventListener("reset", (e) => {
  setState("reset");
  $("log").textContent = "";
  greet(JSON.parse(e.data));
});
es.addEventListener("metrics", (e) => {
  const m = JSON.parse(e.data);
  $("cpu").textContent = `${m.cpu.percent.toFixed(1)} %`;
  $("mem").textContent = `${m.memory.percent.toFixed(1)} %`;
  seen();
});
es.addEventListener("status", (e) => { showSource(JSON.parse(e.data)); seen(); });
es.addEventListener("log", (e) => { const m = JSON.parse(e.data); appendLog(m.source, m.lines); seen(); });
