// The coord dashboard: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every number on the page comes from coord.v1 Connect JSON calls on this listener
// (coord_server/http/connect.py), with the token typed in as "Authorization: Bearer".
// Members are read with "Coord-Member: <id>", which routes a call to that member.
"use strict";

const MEMBERS_EVERY_MS = 500;
const COORDINATION_EVERY_MS = 2000;
const KEYS_EVERY_MS = 5000;
const TIMELINE_MS = 5 * 60 * 1000;
const LEASES_SCANNED = 100;
const RING_SAMPLES = 32;
const COLORS = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#455a64"];

const state = {
  token: sessionStorage.getItem("coord-token") || "",
  members: [],          // from Cluster.MemberList
  statuses: new Map(),  // member id -> {ok, status, error}
  leaderHistory: [],    // {t, leader (id or ""), name, term}
  rings: new Set(),     // ring names to draw (found on leases, or typed in)
  prefix: "",
};

// ---------------------------------------------------------------- Connect calls

async function rpc(method, body = {}, { member = "", timeoutMs = 1500 } = {}) {
  const headers = {
    "Content-Type": "application/json",
    "Connect-Protocol-Version": "1",
    "Connect-Timeout-Ms": String(timeoutMs),
  };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (member) headers["Coord-Member"] = member;
  const response = await fetch("/" + method, { method: "POST", headers, body: JSON.stringify(body) });
  let answer = {};
  try { answer = await response.json(); } catch (err) { answer = { code: "unknown", message: String(err) }; }
  if (!response.ok) {
    const error = new Error(`${answer.code || response.status}: ${answer.message || ""}`);
    error.code = answer.code;
    throw error;
  }
  return answer;
}

// ---------------------------------------------------------------- helpers

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: false });

function b64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function unb64(text) {
  const s = atob(text || "");
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function show(bytes) {
  const text = dec.decode(bytes);
  return /^[\x20-\x7e\u00a0-\uffff]*$/.test(text) ? text : "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function prefixEnd(bytes) {
  const end = Array.from(bytes);
  while (end.length) {
    if (end[end.length - 1] < 0xff) { end[end.length - 1] += 1; return new Uint8Array(end); }
    end.pop();
  }
  return new Uint8Array([0]);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const roleName = (role) => (role || "RAFT_ROLE_UNSPECIFIED").replace("RAFT_ROLE_", "").toLowerCase().replace("_", "-");
const num = (v) => Number(v || 0);
const nameOf = (id) => (state.members.find((m) => m.id === id) || {}).name || (id ? "0x" + BigInt(id).toString(16) : "none");

function setError(where, err) {
  document.getElementById("error").textContent = err ? `${where}: ${err.message}` : "";
}

// ---------------------------------------------------------------- members

async function refreshMembers() {
  const list = await rpc("coord.v1.Cluster/MemberList");
  state.members = (list.members || []).map((m) => ({ id: m.id, name: m.name || m.id, address: m.clientAddress || "", learner: !!m.isLearner }));
  await Promise.all(state.members.map(async (m) => {
    try {
      state.statuses.set(m.id, { ok: true, status: await rpc("coord.v1.Cluster/Status", {}, { member: m.id, timeoutMs: 800 }) });
    } catch (err) {
      state.statuses.set(m.id, { ok: false, error: err.message });
    }
  }));
  noteLeader();
  drawMembers();
  drawTimeline();
}

function currentLeader() {
  // The member that says it leads, in the highest term any member reports.
  let best = null;
  for (const m of state.members) {
    const s = state.statuses.get(m.id);
    if (!s || !s.ok || roleName(s.status.role) !== "leader") continue;
    const term = num(s.status.header.raftTerm);
    if (!best || term > best.term) best = { id: m.id, term };
  }
  return best;
}

function noteLeader() {
  const leader = currentLeader();
  const id = leader ? leader.id : "";
  const last = state.leaderHistory[state.leaderHistory.length - 1];
  if (!last || last.leader !== id) {
    state.leaderHistory.push({ t: Date.now(), leader: id, name: id ? nameOf(id) : "no leader", term: leader ? leader.term : 0 });
  }
  const cutoff = Date.now() - TIMELINE_MS;
  while (state.leaderHistory.length > 1 && state.leaderHistory[1].t < cutoff) state.leaderHistory.shift();
}

function drawMembers() {
  const leader = currentLeader();
  document.getElementById("leader-name").textContent = leader ? nameOf(leader.id) : "none";
  document.getElementById("term").textContent = leader ? leader.term : "?";
  const maxCommit = Math.max(0, ...[...state.statuses.values()].filter((s) => s.ok).map((s) => num(s.status.commitIndex)));
  let watchers = 0, leases = 0;
  const body = document.querySelector("#members tbody");
  body.replaceChildren(...state.members.map((m) => {
    const s = state.statuses.get(m.id);
    if (!s || !s.ok) {
      const health = el("td", { class: "bad health", title: s ? s.error : "" }, s ? "unreachable (" + s.error.split(":")[0] + ")" : "…");
      return el("tr", { "data-member": m.name, class: "down" }, el("td", {}, m.name), el("td", {}, "0x" + BigInt(m.id).toString(16)),
        el("td", {}, m.address), el("td", { colspan: "7" }, ""), health);
    }
    const st = s.status;
    watchers += num(st.watchers);
    leases = Math.max(leases, num(st.leases));
    const role = m.learner ? "learner" : roleName(st.role);
    return el("tr", { "data-member": m.name, class: role === "leader" ? "leader" : "" },
      el("td", {}, m.name), el("td", {}, "0x" + BigInt(m.id).toString(16)), el("td", {}, m.address),
      el("td", { class: "role role-" + role }, role), el("td", { class: "num" }, st.header.raftTerm || 0),
      el("td", {}, nameOf(st.leader || "")), el("td", { class: "num" }, st.commitIndex || 0),
      el("td", { class: "num" }, st.appliedIndex || 0), el("td", { class: "num" }, maxCommit - num(st.appliedIndex)),
      el("td", { class: "num" }, st.watchers || 0), el("td", { class: "ok health" }, "healthy"));
  }));
  document.getElementById("watch-count").textContent = watchers;
  document.getElementById("lease-count").textContent = leases;
  document.getElementById("cluster-line").textContent =
    `${state.members.length} members · revision ${(state.statuses.values().next().value || {}).status?.header?.revision ?? "?"} · updated ${new Date().toLocaleTimeString()}`;
}

function drawTimeline() {
  const box = document.getElementById("timeline");
  // The window grows from the page's first observation up to TIMELINE_MS.
  const now = Date.now();
  const span = Math.min(TIMELINE_MS, Math.max(10000, now - (state.leaderHistory[0] || { t: now }).t));
  const start = now - span;
  const x = (t) => ((Math.max(t, start) - start) / span) * 1000;
  const names = [...new Set(state.leaderHistory.map((h) => h.name))];
  const parts = [];
  state.leaderHistory.forEach((h, i) => {
    const end = i + 1 < state.leaderHistory.length ? state.leaderHistory[i + 1].t : now;
    if (end < start) return;
    const color = h.leader ? COLORS[names.indexOf(h.name) % COLORS.length] : "#c62828";
    parts.push(svg("rect", { x: x(h.t), y: 10, width: Math.max(1, x(end) - x(h.t)), height: 34, fill: color, opacity: h.leader ? 0.85 : 0.4 }));
    if (x(end) - x(h.t) > 70) {
      const label = svg("text", { x: x(h.t) + 4, y: 60, "font-size": 12, fill: "#1d2330" });
      label.textContent = h.leader ? `${h.name} (term ${h.term})` : "no leader";
      parts.push(label);
    }
  });
  box.replaceChildren(...parts);
  document.getElementById("changes").replaceChildren(...state.leaderHistory.slice().reverse().map((h) =>
    el("li", {}, `${new Date(h.t).toLocaleTimeString()} — ${h.name}${h.term ? " (term " + h.term + ")" : ""}`)));
}

// ---------------------------------------------------------------- locks, elections, rings

async function refreshCoordination() {
  const listed = await rpc("coord.v1.Lease/List");
  const leases = (listed.leases || []).slice(0, LEASES_SCANNED);
  const locks = new Set(), elections = new Map();
  const infos = await Promise.all(leases.map((l) => rpc("coord.v1.Lease/TimeToLive", { id: l.id, attachments: true }).catch(() => null)));
  for (const info of infos) {
    if (!info) continue;
    for (const name of info.locks || []) locks.add(name);
    for (const name of info.elections || []) {
      if (!elections.has(name)) elections.set(name, []);
      elections.get(name).push(info.id);
    }
    for (const rm of info.ringMembers || []) state.rings.add(rm.ring);
  }
  const lockRows = await Promise.all([...locks].sort().map(async (name) => {
    const info = await rpc("coord.v1.Lock/Inspect", { name });
    const holders = info.holders || [];
    return el("tr", { "data-lock": name }, el("td", {}, name),
      el("td", {}, holders.map((h) => `${h.owner || "?"} (lease ${h.lease})`).join(", ") || "—"),
      el("td", { class: "num token" }, holders.map((h) => h.token).join(", ") || "—"),
      el("td", {}, (info.waiters || []).map((w) => w.owner || "lease " + w.lease).join(" → ") || "none"));
  }));
  document.querySelector("#locks tbody").replaceChildren(...lockRows);
  const electionRows = await Promise.all([...elections.keys()].sort().map(async (name) => {
    const now = await rpc("coord.v1.Election/Leader", { name });
    const leaderLease = now.leader ? now.leader.lease : "";
    const campaigners = elections.get(name).filter((id) => id !== leaderLease);
    return el("tr", { "data-election": name }, el("td", {}, name),
      el("td", {}, now.leader ? `${show(unb64(now.value))} (lease ${leaderLease})` : "none"),
      el("td", { class: "num" }, now.leader ? now.leader.token : "—"),
      el("td", {}, campaigners.map((id) => "lease " + id).join(", ") || "none"));
  }));
  document.querySelector("#elections tbody").replaceChildren(...electionRows);
}

async function refreshRings() {
  const boxes = [];
  for (const name of [...state.rings].sort()) {
    let ring;
    try { ring = await rpc("coord.v1.Ring/Get", { ring: name }); } catch (err) { continue; }
    const members = ring.members || [];
    if (!members.length) continue;
    const counts = new Map(members.map((m) => [m.id, 0]));
    const samples = await Promise.all(Array.from({ length: RING_SAMPLES }, (_, i) =>
      rpc("coord.v1.Ring/Lookup", { ring: name, key: b64(enc.encode("dashboard-sample-" + i)), n: 1 }).catch(() => null)));
    for (const s of samples) {
      const owner = s && s.members && s.members[0];
      if (owner) counts.set(owner.id, (counts.get(owner.id) || 0) + 1);
    }
    boxes.push(drawRing(name, ring, members, counts));
  }
  document.getElementById("rings").replaceChildren(...boxes);
}

function drawRing(name, ring, members, counts) {
  // Arcs: each member's share of the circle's points (weight / total weight); the
  // legend adds the share of RING_SAMPLES sample keys the server placed on it.
  const total = members.reduce((a, m) => a + num(m.weight || 1), 0);
  const box = svg("svg", { viewBox: "-110 -110 220 220", width: 200, height: 200, role: "img", "aria-label": "ring " + name });
  box.append(svg("circle", { r: 80, fill: "none", stroke: "#dde1ea", "stroke-width": 22 }));
  let angle = -Math.PI / 2;
  members.forEach((m, i) => {
    const share = num(m.weight || 1) / total;
    const next = angle + share * 2 * Math.PI;
    const large = share > 0.5 ? 1 : 0;
    const p = (a) => `${(80 * Math.cos(a)).toFixed(2)} ${(80 * Math.sin(a)).toFixed(2)}`;
    const d = share >= 0.999 ? "M 0 -80 A 80 80 0 1 1 -0.01 -80" : `M ${p(angle)} A 80 80 0 ${large} 1 ${p(next)}`;
    box.append(svg("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 22 }));
    angle = next;
  });
  const title = svg("text", { "text-anchor": "middle", y: 5, "font-size": 13 });
  title.textContent = `v${ring.version || 0}`;
  box.append(title);
  const legend = el("ul", {}, ...members.map((m, i) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = COLORS[i % COLORS.length];
    const keys = counts.get(m.id) || 0;
    return el("li", { "data-ring-member": m.id }, swatch,
      `${m.id} · weight ${m.weight || 1} (${Math.round((100 * num(m.weight || 1)) / total)}% of the circle) · ${Math.round((100 * keys) / RING_SAMPLES)}% of ${RING_SAMPLES} sample keys`);
  }));
  return el("div", { class: "ring", "data-ring": name }, el("h3", {}, name), box, legend);
}

// ---------------------------------------------------------------- key space

async function refreshKeys() {
  const prefix = enc.encode(state.prefix);
  const request = prefix.length ? { key: b64(prefix), rangeEnd: b64(prefixEnd(prefix)) } : { key: b64([0]), rangeEnd: b64([0]) };
  const answer = await rpc("coord.v1.KV/Range", { ...request, limit: "200" });
  const folders = new Map(), rows = [];
  for (const kv of answer.kvs || []) {
    const key = show(unb64(kv.key));
    const rest = key.slice(state.prefix.length);
    const slash = rest.indexOf("/");
    if (slash >= 0 && slash < rest.length - 1) {
      const folder = state.prefix + rest.slice(0, slash + 1);
      folders.set(folder, (folders.get(folder) || 0) + 1);
      continue;
    }
    rows.push(el("tr", { "data-key": key }, el("td", { class: "key" }, key), el("td", { class: "value" }, show(unb64(kv.value))),
      el("td", { class: "num" }, kv.version || 0), el("td", { class: "num" }, kv.modRevision || 0), el("td", {}, kv.lease || "")));
  }
  const folderRows = [...folders].sort().map(([folder, n]) => el("tr", { "data-folder": folder },
    el("td", { class: "key" }, el("a", { onclick: () => browse(folder) }, folder)), el("td", {}, `${n} key${n > 1 ? "s" : ""} shown`),
    el("td", {}), el("td", {}), el("td", {})));
  document.querySelector("#keys tbody").replaceChildren(...folderRows, ...rows);
  document.getElementById("keys-note").textContent =
    `${answer.count || 0} keys under "${state.prefix}"${answer.more ? " (first 200 shown)" : ""} at revision ${answer.header?.revision ?? "?"}`;
}

function browse(prefix) {
  state.prefix = prefix;
  document.getElementById("prefix").value = prefix;
  refreshKeys().then(() => setError("", null), (err) => setError("keys", err));
}

// ---------------------------------------------------------------- loops

function every(ms, what, fn) {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try { await fn(); setError("", null); } catch (err) { setError(what, err); } finally { running = false; }
  };
  tick();
  return setInterval(tick, ms);
}

document.getElementById("token").value = state.token;
document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("coord-token", state.token);
});
document.getElementById("prefix-form").addEventListener("submit", (e) => { e.preventDefault(); browse(document.getElementById("prefix").value); });
document.getElementById("prefix-up").addEventListener("click", () => {
  const p = state.prefix.replace(/[^/]*\/?$/, "");
  browse(p);
});
document.getElementById("ring-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = document.getElementById("ring-name").value.trim();
  if (name) { state.rings.add(name); refreshRings(); }
});

every(MEMBERS_EVERY_MS, "members", refreshMembers);
every(COORDINATION_EVERY_MS, "locks and elections", async () => { await refreshCoordination(); await refreshRings(); });
every(KEYS_EVERY_MS, "keys", refreshKeys);
