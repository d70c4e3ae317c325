"use strict";
// The models page. It reads and acts through this server's own API, same origin, as the signed-in
// user; every value from the API goes into the page as text (textContent), never as markup.

const ML = "/_plugins/_ml";
const REFRESH_MS = 2000;
const MODELS_SHOWN = 200;
const TASKS_SHOWN = 20;
const TASK_WATCH_MS = 15 * 60 * 1000;
const DASH = "–";
const SERVING = new Set(["DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING"]);
const TASK_DONE = new Set(["COMPLETED", "COMPLETED_WITH_ERROR", "FAILED", "CANCELLED"]);

const actions = new Map(); // model id -> {busy, text, failed}: what its buttons last did
let models = []; // the last models listed, to render again when an action moves on
let metrics = {before: null, rates: null, note: ""};
let refreshing = false;
let again = false;
let timer = null;

// ---- talking to the API ------------------------------------------------------------------

async function api(method, path, body) {
  const init = {method, headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store"};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const reason = data && data.error && (data.error.reason || data.error.message);
    throw new Error(reason ? `${response.status}: ${reason}` : `${response.status} ${response.statusText}`);
  }
  return data;
}

function modelPath(id, what) {
  return `${ML}/models/${encodeURIComponent(id)}/${what}`;
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- metrics: throughput and mean latency from two successive scrapes ----------------------

// Prometheus' text format 0.0.4: `name{label="value",...} value [timestamp]`.
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m) samples.push({name: m[1], labels: parseLabels(m[2] || ""), value: Number(m[3])});
  }
  return samples;
}

function parseLabels(text) {
  const labels = {};
  const re = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  }
  return labels;
}

function snapshot(samples) {
  const byModel = new Map();
  const of = (id) => {
    if (!byModel.has(id)) byModel.set(id, {requests: 0, sum: 0, count: 0});
    return byModel.get(id);
  };
  for (const s of samples) {
    const id = s.labels.model;
    if (!id || !Number.isFinite(s.value)) continue;
    if (s.name === "mlcommons_predict_requests_total") of(id).requests += s.value;
    else if (s.name === "mlcommons_predict_duration_seconds_sum") of(id).sum += s.value;
    else if (s.name === "mlcommons_predict_duration_seconds_count") of(id).count += s.value;
  }
  return {at: performance.now(), byModel};
}

// model id -> {rps, latency (seconds, or null)} between two snapshots; a counter that went back
// (an API process restarted) gives no rate for that model this time.
function rates(before, now) {
  const out = new Map();
  const seconds = (now.at - before.at) / 1000;
  if (seconds <= 0) return out;
  const zero = {requests: 0, sum: 0, count: 0};
  for (const [id, cur] of now.byModel) {
    const old = before.byModel.get(id) || zero;
    const requests = cur.requests - old.requests;
    const count = cur.count - old.count;
    const sum = cur.sum - old.sum;
    if (requests < 0 || count < 0 || sum < 0) continue;
    out.set(id, {rps: requests / seconds, latency: count > 0 ? sum / count : null});
  }
  return out;
}

async function scrape() {
  try {
    const response = await fetch("/_prometheus/metrics", {credentials: "same-origin", cache: "no-store"});
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const now = snapshot(parseMetrics(await response.text()));
    metrics.rates = metrics.before ? rates(metrics.before, now) : null;
    metrics.before = now;
    metrics.note = "Requests/s and mean latency: the change of the API's prediction metrics between two refreshes.";
  } catch (err) {
    metrics = {before: null, rates: null, note: `Metrics unavailable (${err.message}).`};
  }
}

// ---- building the page (text only) ----------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setText(node, text) {
  const value = text === undefined || text === null || text === "" ? DASH : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function setState(node, state) {
  const value = state || "UNKNOWN";
  setText(node, value);
  node.className = `state state-${value.toLowerCase().replace(/[^a-z_]/g, "")}`;
}

// Keep one row per key, in the order of `items`: rows are updated in place, so a button under
// the pointer stays the same element across refreshes.
function syncRows(table, items, keyOf, create, update) {
  const tbody = table.tBodies[0];
  const old = new Map();
  for (const row of tbody.rows) old.set(row.dataset.key, row);
  items.forEach((item, i) => {
    const key = keyOf(item);
    let row = old.get(key);
    if (row) {
      old.delete(key);
    } else {
      row = create(item, key);
      row.dataset.key = key;
    }
    update(row, item);
    if (tbody.rows[i] !== row) tbody.insertBefore(row, tbody.rows[i] || null);
  });
  for (const row of old.values()) row.remove();
  document.getElementById(`${table.id}-empty`).hidden = items.length > 0;
}

function cells(row, count) {
  const out = [];
  for (let i = 0; i < count; i++) out.push(row.appendChild(el("td")));
  return out;
}

function bytes(n) {
  if (!Number.isFinite(n) || n <= 0) return DASH;
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

function ago(ms) {
  if (!Number.isFinite(ms) || ms <= 0) return DASH;
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleString();
}

function number(x) {
  return x.toFixed(x < 10 ? 2 : 1);
}

// ---- models ---------------------------------------------------------------------------------

function createModelRow(model, id) {
  const row = el("tr");
  const [name, idCell, state, nodes, rps, latency, act] = cells(row, 7);
  name.append(el("span", "name"), el("span", "muted version"));
  idCell.className = "mono";
  state.append(el("span"));
  nodes.className = "mono nowrap";
  rps.className = latency.className = "num";
  act.className = "nowrap";
  const deploy = el("button", "deploy", "Deploy");
  const undeploy = el("button", "undeploy secondary", "Undeploy");
  deploy.type = undeploy.type = "button";
  deploy.addEventListener("click", () => runDeploy(id));
  undeploy.addEventListener("click", () => runUndeploy(id));
  act.append(deploy, undeploy, el("span", "action"));
  return row;
}

function updateModelRow(row, model) {
  const m = model._source;
  const [name, idCell, state, nodes, rps, latency, act] = row.cells;
  setText(name.firstChild, m.name);
  setText(name.lastChild, m.model_version ? `v${m.model_version}` : "");
  setText(idCell, model._id);
  setState(state.firstChild, m.model_state);
  const current = m.current_worker_nodes || [];
  const planned = m.planning_worker_node_count;
  let where = current.join(", ");
  if (planned && planned !== current.length) where = `${where || "none"} (${current.length} of ${planned})`;
  setText(nodes, where);
  const rate = metrics.rates && (metrics.rates.get(model._id) || {rps: 0, latency: null});
  setText(rps, rate ? number(rate.rps) : DASH);
  setText(latency, rate && rate.latency !== null ? `${number(rate.latency * 1000)} ms` : DASH);
  const action = actions.get(model._id) || {};
  const [deploy, undeploy, status] = act.children;
  deploy.disabled = Boolean(action.busy) || m.model_state === "DEPLOYED" || m.model_state === "DEPLOYING";
  undeploy.disabled = Boolean(action.busy) || !(SERVING.has(m.model_state) || current.length > 0);
  status.className = action.failed ? "action failed" : "action";
  if (status.textContent !== (action.text || "")) status.textContent = action.text || "";
}

function renderModels() {
  syncRows(document.getElementById("models"), models, (h) => h._id, createModelRow, updateModelRow);
  setText(document.getElementById("metrics-note"), metrics.note);
}

function setAction(id, action) {
  actions.set(id, action);
  renderModels();
}

async function runDeploy(id) {
  setAction(id, {busy: true, text: "deploy requested"});
  try {
    const reply = await api("POST", modelPath(id, "_deploy"));
    const taskId = reply.task_id;
    const deadline = Date.now() + TASK_WATCH_MS;
    for (;;) {
      refreshSoon();
      const task = await api("GET", `${ML}/tasks/${encodeURIComponent(taskId)}`);
      if (TASK_DONE.has(task.state)) {
        const failed = task.state !== "COMPLETED";
        const detail = task.error ? `: ${task.error}` : "";
        setAction(id, {busy: false, failed, text: failed ? `deploy ${task.state}${detail}` : "deployed"});
        break;
      }
      setAction(id, {busy: true, text: `deploy task ${task.state || "sent"}`});
      if (Date.now() > deadline) {
        setAction(id, {busy: false, text: `deploy task ${taskId} still ${task.state}`});
        break;
      }
      await delay(1000);
    }
  } catch (err) {
    setAction(id, {busy: false, failed: true, text: `deploy failed: ${err.message}`});
  }
  refreshSoon();
}

async function runUndeploy(id) {
  setAction(id, {busy: true, text: "undeploying"});
  try {
    // ML Commons answers {node_id: {stats: {model_id: "undeployed"}}} for each node that dropped it.
    const reply = (await api("POST", modelPath(id, "_undeploy"))) || {};
    const from = Object.keys(reply).filter((n) => reply[n] && reply[n].stats && reply[n].stats[id] === "undeployed");
    setAction(id, {busy: false, text: from.length ? `undeployed from ${from.join(", ")}` : "undeployed"});
  } catch (err) {
    setAction(id, {busy: false, failed: true, text: `undeploy failed: ${err.message}`});
  }
  refreshSoon();
}

// ---- nodes ----------------------------------------------------------------------------------

function renderNodes(body, names) {
  const nodes = Object.entries((body && body.nodes) || {}).map(([id, info]) => ({id, ...info}));
  syncRows(document.getElementById("nodes"), nodes, (n) => n.id, (node) => {
    const row = el("tr");
    const c = cells(row, 7);
    c[0].append(el("span", "mono"), el("span", "muted"));
    c[0].className = c[4].className = "nowrap";
    c[3].className = c[6].className = "num";
    const meter = el("meter");
    meter.min = 0;
    meter.max = 100;
    meter.low = 70;
    meter.high = 90;
    meter.optimum = 0;
    c[4].append(meter, el("span"));
    return row;
  }, (row, node) => {
    const c = row.cells;
    setText(c[0].firstChild, node.id);
    setText(c[0].lastChild, node.name && node.name !== node.id ? ` ${node.name}` : "");
    setText(c[1], node.host);
    setText(c[2], node.device);
    const memory = node.memory || {};
    setText(c[3], bytes(memory.rss_bytes));
    const used = memory.total_bytes ? memory.total_bytes - (memory.available_bytes || 0) : NaN;
    c[4].firstChild.value = Number.isFinite(memory.used_percent) ? memory.used_percent : 0;
    setText(c[4].lastChild, memory.total_bytes ? ` ${bytes(used)} of ${bytes(memory.total_bytes)} used` : "");
    setText(c[5], (node.models || []).map((id) => names.get(id) || id).join(", "));
    setText(c[6], ago(node.last_heartbeat));
  });
  setText(document.getElementById("nodes-count"), `(${nodes.length})`);
}

// ---- tasks ----------------------------------------------------------------------------------

function renderTasks(body, names) {
  const hits = (body && body.hits && body.hits.hits) || [];
  syncRows(document.getElementById("tasks"), hits, (h) => h._id, () => {
    const row = el("tr");
    const c = cells(row, 7);
    c[0].className = c[4].className = "mono";
    c[2].append(el("span"));
    c[5].className = "num";
    return row;
  }, (row, hit) => {
    const t = hit._source;
    const c = row.cells;
    setText(c[0], hit._id);
    setText(c[1], t.task_type);
    setState(c[2].firstChild, t.state);
    setText(c[3], t.model_id ? names.get(t.model_id) || t.model_id : "");
    setText(c[4], (t.worker_node || []).join(", "));
    setText(c[5], ago(t.create_time));
    setText(c[6], t.error || "");
    c[6].className = t.error ? "error" : "muted";
    c[6].title = t.error || "";
  });
  const total = body && body.hits && body.hits.total ? body.hits.total.value : hits.length;
  setText(document.getElementById("tasks-count"), total > hits.length ? `(latest ${hits.length} of ${total})` : `(${hits.length})`);
}

// ---- the refresh loop -----------------------------------------------------------------------

// OpenSearch Dashboards' ML page lists models without their chunk documents the same way.
const MODELS_QUERY = {
  size: MODELS_SHOWN,
  query: {bool: {must_not: [{exists: {field: "chunk_number"}}]}},
  sort: [{"name.keyword": {order: "asc"}}],
};
const TASKS_QUERY = {size: TASKS_SHOWN, query: {match_all: {}}, sort: [{create_time: {order: "desc"}}]};

async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  clearTimeout(timer);
  try {
    if (document.hidden) return; // a tab nobody looks at asks nothing; shown again, it refreshes at once
    const [found, nodes, tasks, root] = await Promise.allSettled([
      api("POST", `${ML}/models/_search`, MODELS_QUERY),
      api("GET", "/_nodes"),
      api("POST", `${ML}/tasks/_search`, TASKS_QUERY),
      api("GET", "/"),
      scrape(),
    ]);
    const problems = [];
    if (found.status === "fulfilled") {
      models = found.value.hits.hits;
      const total = found.value.hits.total.value;
      setText(document.getElementById("models-count"),
        total > models.length ? `(first ${models.length} of ${total})` : `(${models.length})`);
    } else {
      problems.push(`models: ${found.reason.message}`);
    }
    renderModels();
    const names = new Map(models.map((h) => [h._id, h._source.name]));
    if (nodes.status === "fulfilled") renderNodes(nodes.value, names);
    else problems.push(`nodes: ${nodes.reason.message}`);
    if (tasks.status === "fulfilled") renderTasks(tasks.value, names);
    else problems.push(`tasks: ${tasks.reason.message}`);
    if (root.status === "fulfilled" && root.value) {
      const v = root.value.version || {};
      setText(document.getElementById("cluster"),
        `cluster ${root.value.cluster_name}${v.mlcommons_version ? ` · version ${v.mlcommons_version}` : ""}`);
    }
    const status = document.getElementById("status");
    status.className = problems.length ? "status failed" : "status";
    setText(status, problems.length ? `Refresh failed: ${problems.join("; ")}`
      : `Updated ${new Date().toLocaleTimeString()}`);
  } finally {
    refreshing = false;
    timer = setTimeout(refresh, REFRESH_MS);
    if (again) {
      again = false;
      refreshSoon();
    }
  }
}

function refreshSoon() {
  setTimeout(refresh, 0);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refreshSoon();
});
refresh();
