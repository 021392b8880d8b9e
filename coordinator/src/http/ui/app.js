// The operators' dashboard: polls the fleet endpoints with the key typed into the form.
"use strict";
const keyInput = document.getElementById("key");
const errBox = document.getElementById("err");
let timer = null;

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, toCells) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.append(...toCells(r));
    return tr;
  }));
}

function bytes(n) {
  if (n === null || n === undefined) return null;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

async function get(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + sessionStorage.getItem("pf_key") } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (body.errors || [body.title]).join(", "));
  return body;
}

async function refresh() {
  try {
    const [agents, phones, processes] = await Promise.all([
      get("/agents"), get("/phones"), get("/processes?limit=25"),
    ]);
    errBox.textContent = "";
    const count = (xs, f) => xs.filter(f).length;
    const ph = phones.phones;
    document.getElementById("summary").replaceChildren(...[
      "agents online: " + count(agents.agents, (a) => a.online) + " / " + agents.agents.length,
      "phones online: " + count(ph, (p) => p.state === "online") + ", busy: " + count(ph, (p) => p.state === "busy") +
        ", unauthorized: " + count(ph, (p) => p.state === "unauthorized") + ", offline: " + count(ph, (p) => p.state === "offline") +
        ", needs attention: " + count(ph, (p) => p.state === "needs_attention"),
    ].map((t) => { const s = document.createElement("span"); s.textContent = t; return s; }));
    fill("agents", agents.agents, (a) => [
      cell(a.agent_id), cell(a.state, "state " + a.state), cell(a.host), cell(a.version),
      cell(a.phone_count), cell(a.last_heartbeat_at),
    ]);
    fill("phones", ph, (p) => [
      cell(p.phone_id), cell(p.label), cell(p.state, "state " + p.state), cell(p.agent_id), cell(p.location),
      cell(p.model), cell(p.android_version), cell(p.app_version),
      cell(p.battery_level === null ? null : p.battery_level + "%"), cell(p.temperature_c),
      cell(bytes(p.storage_free_bytes)), cell(p.screen_state), cell(p.attended ? "yes" : "no"),
      cell(p.enabled ? "yes" : "no"), cell(p.current_queue_item_id), cell(p.last_seen_at),
    ]);
    fill("processes", processes.processes || [], (p) => [
      cell(p.process_id), cell(p.process_type), cell(p.status, "state " + p.status),
      cell(p.requested_by && p.requested_by.system), cell(p.request_id),
      cell(p.timestamps && p.timestamps.created_at),
      cell(p.partial_progress ? JSON.stringify(p.partial_progress) : null),
    ]);
  } catch (e) {
    errBox.textContent = e.message;
  }
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("pf_key", keyInput.value.trim());
  keyInput.value = "";
  start();
});

function start() {
  if (!sessionStorage.getItem("pf_key")) return;
  if (timer) clearInterval(timer);
  refresh();
  timer = setInterval(refresh, 5000);
}

start();
