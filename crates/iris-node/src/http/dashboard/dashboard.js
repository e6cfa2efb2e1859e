// iris dashboard: one page, no framework, no build step.
//
// Data flow: a snapshot (teams, sessions, status of each pair, budget, cluster, healthz) is loaded when the
// event stream says hello from a run we have not seen, then server-sent events are applied one by one. Budget,
// healthz and cluster are also polled every 10 s. All text from the node goes through textContent.
'use strict';

const TOKEN_KEY = 'iris-token';
const LOG_MAX = 200;
const TEXT_MAX = 200000; // characters of streamed text kept per turn
const REPORT_LIMIT = 20;
const POLL_MS = 10000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  authFailed: false,
  teams: [], // names from the `teams` command, in its order
  extraTeams: [], // teams seen only through sessions or events
  pairs: new Map(), // "from->to" -> pair (see newPair)
  turns: new Map(), // "from->to" -> the turn shown in the pair panel (see newTurn)
  cells: new Map(), // "from->to" -> its <td> in the matrix
  matrixTeams: '', // the team list the matrix was built for
  selected: null,
  run: null, // run id of the node process the stream last said hello from
  nodeName: null, // from hello: the node's name in a cluster
  unavailable: [], // cluster nodes that did not answer sessions_list
  lastEventId: null,
  streamGen: 0, // bumped to stop an older stream loop
  streamAbort: null, // aborts the open stream's fetch
  snapshotBusy: false,
  snapshotAgain: false,
  snapshotTried: false,
  helloReloaded: false, // this connection's hello already asked for a snapshot
  reportSeq: 0,
  health: null,
  healthAt: 0,
  clustered: null, // false once the node said it is not in a cluster (config: fixed until a restart)
  sideTimer: null,
  resultTimer: null,
  pendingAction: null,
};

// ---------------------------------------------------------------------------------------------------------
// Small helpers

/** Builds an element; `props` may hold class, text, title and data-* (as `data: {...}`). */
function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
  if (props.title) node.title = props.title;
  if (props.scope) node.scope = props.scope;
  for (const [k, v] of Object.entries(props.data || {})) node.dataset[k] = v;
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const pairKey = (from, to) => `${from}->${to}`;
const arrow = (key) => key.replace('->', ' → ');
const splitKey = (key) => {
  const i = key.indexOf('->');
  return { from: key.slice(0, i), to: key.slice(i + 2) };
};
const short = (id) => (id ? String(id).slice(0, 8) : '');
const clip = (s, n) => {
  const text = s === null || s === undefined ? '' : String(s);
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
};
const parseTime = (s) => {
  const t = s ? Date.parse(s) : NaN;
  return Number.isNaN(t) ? 0 : t;
};
const pad2 = (n) => String(n).padStart(2, '0');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function fmtCost(usd) {
  if (usd === null || usd === undefined || Number.isNaN(Number(usd))) return '–';
  const n = Number(usd);
  return `$${n.toFixed(Math.abs(n) < 1 ? 4 : 2)}`;
}

function fmtInt(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
}

/** "12 s", "3 min 12 s", "2 h 5 min", "3 d 4 h". */
function fmtSecs(totalSecs) {
  const s = Math.max(0, Math.floor(totalSecs));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return fmtSecs(ms / 1000);
}

/** "12 s ago" for the past, "in 5 h 3 min" for the future; `short` keeps only the largest unit. */
function fmtRel(ts, short = false) {
  if (!ts) return '–';
  const diff = (Date.now() - ts) / 1000;
  const abs = Math.abs(diff);
  let text;
  if (abs < 60) text = `${Math.floor(abs)} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) text = short ? `${Math.floor(abs / 3600)} h` : fmtSecs(abs);
  else text = `${Math.floor(abs / 86400)} d`;
  if (diff >= 0) return abs < 1 ? 'just now' : `${text} ago`;
  return `in ${text}`;
}

/** Local time of day, with the date when it is not today. */
function fmtClock(ts) {
  if (!ts) return '–';
  const d = new Date(ts);
  const clock = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  if (d.toDateString() === new Date().toDateString()) return clock;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${clock}`;
}

/** A span whose text the 1 s ticker keeps as a relative time. */
function relSpan(ts, cls = '', short = false) {
  const span = el('span', { class: cls, text: fmtRel(ts, short), title: ts ? new Date(ts).toString() : '' });
  if (ts) span.dataset.relTime = String(ts);
  if (short) span.dataset.relShort = '';
  return span;
}

function setRel(span, ts) {
  span.textContent = fmtRel(ts);
  if (ts) span.dataset.relTime = String(ts);
  else delete span.dataset.relTime;
}

// Turn ids may come as a plain string or, defensively, as an object carrying one.
function turnIdOf(x) {
  if (!x) return null;
  if (typeof x === 'string') return x;
  return x.turn_id || x.id || null;
}

// ---------------------------------------------------------------------------------------------------------
// Token: read once from the URL fragment, kept in sessionStorage (per tab), never put in a URL.

function readStoredToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

function storeToken(token) {
  state.token = token;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* memory only */
  }
}

function takeTokenFromFragment() {
  if (!location.hash) return;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token === null) return;
  if (token) storeToken(token);
  // Drop the fragment so the token does not stay in the address bar or the history.
  history.replaceState(null, '', location.pathname + location.search);
}

function needToken(note) {
  if (state.authFailed) return;
  state.authFailed = true;
  stopStream();
  if (state.token) storeToken(null); // a refused token is of no further use
  setConn('off', 'no token');
  $('app').hidden = true;
  $('token-note').hidden = !note;
  $('token-note').textContent = note || '';
  $('token-form').hidden = false;
  $('token-input').focus();
}

function onTokenSubmit(e) {
  e.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) return;
  $('token-input').value = '';
  storeToken(token);
  start();
}

// ---------------------------------------------------------------------------------------------------------
// HTTP API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, init = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(init.headers || {}) };
  let res;
  try {
    res = await fetch(path, { ...init, headers, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', `the node did not answer (${e.message})`);
  }
  if (res.status === 401) {
    needToken('The node refused the token.');
    throw new ApiError(401, 'UNAUTHORIZED', 'the node refused the token');
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* an answer without JSON: only the status speaks */
  }
  if (!res.ok) {
    const err = (body && body.error) || {};
    throw new ApiError(res.status, err.code || `HTTP_${res.status}`, err.message || res.statusText);
  }
  return body;
}

function command(body) {
  return api('/api/v1/command', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** Shows an error in the banner; background calls stay quiet about an unreachable node (#conn says it). */
function reportError(e, quiet = false) {
  if (e instanceof ApiError && e.status === 401) return; // the token form is up
  if (quiet && e instanceof ApiError && e.code === 'NETWORK') return;
  const code = e instanceof ApiError ? e.code : 'ERROR';
  showError(code, e.message || String(e));
}

function showError(code, message) {
  $('error-code').textContent = code;
  $('error-message').textContent = message;
  $('error').hidden = false;
}

// ---------------------------------------------------------------------------------------------------------
// Model: pairs and their turns

function newPair(key) {
  const { from, to } = splitKey(key);
  return {
    key,
    from,
    to,
    session: null, // {session_id, status, process_state, message_count, cost, usage, node} or null
    awake: null,
    busy: false,
    queued: 0,
    activity: null, // from `status`; derived from events while a turn runs
    lastAt: 0, // ms: last use or last event
  };
}

function getPair(key) {
  let pair = state.pairs.get(key);
  if (!pair) {
    pair = newPair(key);
    state.pairs.set(key, pair);
    noteTeams(pair.from, pair.to);
  }
  return pair;
}

function noteTeams(...names) {
  for (const name of names) {
    if (!state.teams.includes(name) && !state.extraTeams.includes(name)) state.extraTeams.push(name);
  }
}

function allTeams() {
  return [...state.teams, ...state.extraTeams.filter((t) => !state.teams.includes(t))];
}

function touch(pair, ts) {
  if (ts > pair.lastAt) pair.lastAt = ts;
}

function applySessionRecord(rec) {
  const pair = getPair(pairKey(rec.from_team, rec.to_team));
  const usage = rec.usage || {};
  pair.session = {
    session_id: rec.session_id,
    status: rec.status,
    process_state: rec.process_state,
    message_count: rec.message_count,
    cost: usage.cost_usd,
    usage,
    node: rec.node || null,
  };
  const current = turnIdOf(rec.current_turn);
  pair.busy = Boolean(current);
  touch(pair, parseTime(rec.last_used_at));
  return pair;
}

function applyStatus(data) {
  const pair = getPair(pairKey(data.from, data.to));
  if (data.session) applySessionRecord(data.session);
  else pair.session = null;
  pair.awake = data.awake;
  pair.busy = Boolean(data.busy);
  pair.queued = data.queued || 0;
  pair.activity = data.activity || null;
  const current = turnIdOf(data.current_turn);
  const turn = state.turns.get(pair.key);
  if (current && (!turn || turn.id !== current)) {
    // A turn is running that we have not seen start: show it, its earlier text is not replayed.
    state.turns.set(pair.key, newTurn(current));
  }
  return pair;
}

function newTurn(id) {
  return { id, state: 'running', text: '', tools: new Map() }; // tools: tool_use_id -> {tool, since}
}

/** The pair's turn with this id, starting a new one if the stream skipped its start. */
function turnFor(key, id) {
  let turn = state.turns.get(key);
  if (!turn || (id && turn.id !== id)) {
    turn = newTurn(id);
    state.turns.set(key, turn);
    if (key === state.selected) renderTurn();
  }
  return turn;
}

function turnStateLabel(status, code) {
  if (status === 'failed') return code ? `failed: ${code}` : 'failed';
  return status || '';
}

// ---------------------------------------------------------------------------------------------------------
// Snapshot and polling

function scheduleSnapshot() {
  if (state.snapshotBusy) {
    state.snapshotAgain = true;
    return;
  }
  loadSnapshot();
}

async function loadSnapshot() {
  state.snapshotBusy = true;
  state.snapshotTried = true;
  try {
    do {
      state.snapshotAgain = false;
      await loadPairs();
      refreshSide(true);
      if (state.selected) loadReport(state.selected);
    } while (state.snapshotAgain);
  } catch (e) {
    reportError(e);
  } finally {
    state.snapshotBusy = false;
  }
}

async function loadPairs() {
  const [teams, sessions] = await Promise.all([
    command({ command: 'teams' }),
    command({ command: 'sessions_list' }),
  ]);
  state.teams = (teams.data || []).map((t) => t.name);
  const { records, unavailable } = sessionRecords(sessions);
  state.unavailable = unavailable;

  // Newest use comes first: the first record of a pair is its current one.
  const seen = new Set();
  for (const rec of records) {
    const key = pairKey(rec.from_team, rec.to_team);
    if (seen.has(key)) continue;
    seen.add(key);
    applySessionRecord(rec);
  }
  for (const pair of state.pairs.values()) {
    if (!seen.has(pair.key)) {
      pair.session = null;
      pair.busy = false;
      pair.queued = 0;
    }
  }
  renderMatrix();
  await Promise.all([...seen].map((key) => refreshStatus(key, true)));
}

function sessionRecords(answer) {
  if (answer.kind === 'cluster_sessions') {
    const data = answer.data || {};
    return { records: data.sessions || [], unavailable: data.unavailable_nodes || [] };
  }
  return { records: answer.data || [], unavailable: [] };
}

async function refreshStatus(key, quiet = false) {
  const { from, to } = splitKey(key);
  try {
    const answer = await command({ command: 'status', from, to });
    applyStatus(answer.data);
    renderPair(key);
  } catch (e) {
    reportError(e, quiet);
  }
}

/**
 * Budget, healthz and cluster: cheap, polled and refreshed after each finished turn. A node outside a cluster
 * answers 400, which browsers log as a console error, so that is asked again only with a full snapshot.
 */
function refreshSide(full = false) {
  if (!state.token || state.authFailed) return;
  loadHealth();
  loadBudget();
  if (full || state.clustered !== false) loadCluster();
}

function refreshSideSoon() {
  clearTimeout(state.sideTimer);
  state.sideTimer = setTimeout(() => refreshSide(), 300); // a burst of finished turns costs one refresh
}

async function loadHealth() {
  try {
    state.health = await api('/healthz');
    state.healthAt = Date.now();
    renderHealth();
  } catch (e) {
    reportError(e, true);
  }
}

async function loadBudget() {
  try {
    const answer = await command({ command: 'budget' });
    renderBudgets(answer.data || {});
  } catch (e) {
    reportError(e, true);
  }
}

async function loadCluster() {
  try {
    const cluster = await api('/api/v1/cluster');
    state.clustered = true;
    renderCluster(cluster);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'CONFIG_ERROR') {
      state.clustered = false;
      renderCluster(null);
    } else {
      reportError(e, true);
    }
  }
}

async function loadReport(key) {
  const seq = ++state.reportSeq;
  const pair = getPair(key);
  if (!pair.session) {
    renderReport([], 'no session yet');
    return;
  }
  try {
    const { from, to } = splitKey(key);
    const answer = await command({ command: 'report', from, to, limit: REPORT_LIMIT });
    if (seq !== state.reportSeq || key !== state.selected) return; // a newer load or another pair
    const turns = answer.data || [];
    syncTurnFromReport(key, turns);
    renderReport(turns, 'no turns yet');
  } catch (e) {
    if (seq === state.reportSeq) reportError(e);
  }
}

/** Fills the turn panel from the ledger when the stream gave nothing (page just loaded, or a gap). */
function syncTurnFromReport(key, turns) {
  const pair = getPair(key);
  const shown = state.turns.get(key);
  let rec = null;
  if (!shown) rec = turns[0];
  else if (shown.state === 'running' && !pair.busy) rec = turns.find((t) => t.turn_id === shown.id);
  if (!rec) return;
  const turn = newTurn(rec.turn_id);
  turn.state = turnStateLabel(rec.status, rec.error && rec.error.code);
  turn.text = rec.text || (rec.error ? rec.error.message : '') || '';
  state.turns.set(key, turn);
  if (key === state.selected) renderTurn();
}

// ---------------------------------------------------------------------------------------------------------
// Event stream: fetch + ReadableStream, because EventSource cannot send the Authorization header.

function setConn(cls, text) {
  const conn = $('conn');
  conn.className = `conn ${cls}`;
  conn.textContent = text;
}

function stopStream() {
  state.streamGen += 1; // the loop sees it and returns
  if (state.streamAbort) state.streamAbort.abort();
  state.streamAbort = null;
}

async function streamLoop() {
  stopStream();
  const gen = state.streamGen;
  let delay = BACKOFF_MIN_MS;
  while (gen === state.streamGen) {
    try {
      await readStream(gen, () => {
        delay = BACKOFF_MIN_MS;
      });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
    }
    if (gen !== state.streamGen) return;
    setConn('retry', 'reconnecting…');
    // Without a stream there is no hello to trigger the first snapshot: load one anyway.
    if (!state.snapshotTried) scheduleSnapshot();
    await sleep(delay);
    delay = Math.min(delay * 2, BACKOFF_MAX_MS);
  }
}

async function readStream(gen, onOpen) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' };
  if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
  const abort = new AbortController();
  state.streamAbort = abort;
  const res = await fetch('/api/v1/events', { headers, cache: 'no-store', signal: abort.signal });
  if (res.status === 401) {
    needToken('The node refused the token.');
    throw new ApiError(401, 'UNAUTHORIZED', 'the node refused the token');
  }
  if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  setConn('live', 'live');
  state.helloReloaded = false;
  onOpen();
  const parser = sseParser(onSse);
  for (;;) {
    const { value, done } = await reader.read();
    if (done || gen !== state.streamGen) return;
    parser.push(value);
  }
}

/** A minimal SSE parser: fields event, data, id; lines starting with ':' are keep-alives. */
function sseParser(dispatch) {
  let buffer = '';
  let event = '';
  let id = null;
  let data = [];
  function onLine(line) {
    if (line === '') {
      if (data.length) dispatch({ id, event, data: data.join('\n') });
      event = '';
      id = null;
      data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
  }
  return {
    push(chunk) {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
      }
    },
  };
}

function onSse(msg) {
  if (msg.id) state.lastEventId = msg.id; // hello carries no id: keep the last one
  let ev;
  try {
    ev = JSON.parse(msg.data);
  } catch {
    return; // not ours
  }
  const kind = msg.event || ev.kind;
  try {
    applyEvent(kind, ev);
  } catch (e) {
    showError('DASHBOARD', `could not apply a ${kind} event: ${e.message}`); // a bug here, not in the node
  }
  logEvent(kind, ev);
}

function applyEvent(kind, ev) {
  if (kind === 'hello') {
    const newRun = ev.run !== state.run;
    state.run = ev.run;
    state.nodeName = ev.node || null;
    renderHealth();
    if (newRun) scheduleSnapshot();
    state.helloReloaded = newRun;
    return;
  }
  if (kind === 'reset') {
    // After a restart the node sends hello (new run) then reset: one snapshot is enough.
    if (!state.helloReloaded) scheduleSnapshot();
    return;
  }
  // What the header and the budgets show changes with these: refresh them (debounced).
  const SIDE_KINDS = ['budget_warning', 'budget_exceeded', 'session_created', 'session_deleted', 'process_started', 'process_stopped'];
  if (SIDE_KINDS.includes(kind)) refreshSideSoon();
  if (!ev.from || !ev.to) return;

  const pair = getPair(pairKey(ev.from, ev.to));
  touch(pair, parseTime(ev.at) || Date.now());
  const handler = PAIR_EVENTS[kind];
  if (handler) handler(pair, ev);
  if (!state.selected) selectPair(pair.key);
  renderPair(pair.key);
}

function ensureSession(pair, sessionId) {
  if (!pair.session) pair.session = { status: null, process_state: null, cost: null, usage: {} };
  if (sessionId) pair.session.session_id = sessionId;
  return pair.session;
}

// What each pair event changes in the model; rendering follows in applyEvent.
const PAIR_EVENTS = {
  session_created(pair, ev) {
    ensureSession(pair, ev.session_id);
  },
  session(pair, ev) {
    const s = ensureSession(pair, ev.session_id);
    s.status = ev.status;
    s.process_state = ev.process_state;
    s.message_count = ev.message_count;
    if (ev.cost_usd !== undefined && ev.cost_usd !== null) s.cost = ev.cost_usd;
    pair.busy = Boolean(turnIdOf(ev.current_turn));
    if (typeof ev.queued === 'number') pair.queued = ev.queued;
    touch(pair, parseTime(ev.last_used_at));
  },
  process_started(pair, ev) {
    ensureSession(pair, ev.session_id);
    pair.awake = true;
  },
  process_stopped(pair, ev) {
    ensureSession(pair, ev.session_id).process_state = 'stopped';
    pair.awake = false;
  },
  session_deleted(pair) {
    pair.session = null;
    pair.busy = false;
    pair.queued = 0;
  },
  turn_queued(pair, ev) {
    pair.queued = ev.queued ?? pair.queued + 1;
  },
  turn_started(pair, ev) {
    pair.busy = true;
    pair.queued = Math.max(0, pair.queued - 1); // the started turn no longer waits
    state.turns.set(pair.key, newTurn(ev.turn_id));
    if (pair.key === state.selected) renderTurn();
  },
  text(pair, ev) {
    appendText(pair.key, turnFor(pair.key, ev.turn_id), ev.text || '');
  },
  tool_started(pair, ev) {
    const turn = turnFor(pair.key, ev.turn_id);
    turn.tools.set(ev.tool_use_id || ev.tool, { tool: ev.tool, since: parseTime(ev.at) || Date.now() });
  },
  tool_finished(pair, ev) {
    const turn = turnFor(pair.key, ev.turn_id);
    turn.tools.delete(ev.tool_use_id || ev.tool);
  },
  turn_completed(pair, ev) {
    finishTurn(pair, ev, 'completed');
  },
  turn_failed(pair, ev) {
    finishTurn(pair, ev, turnStateLabel(ev.status || 'failed', ev.code));
  },
};

function finishTurn(pair, ev, label) {
  const turn = turnFor(pair.key, ev.turn_id);
  turn.state = label;
  turn.tools.clear();
  if (ev.status === 'failed' && ev.message && !turn.text) turn.text = ev.message;
  pair.busy = false;
  if (typeof ev.queued === 'number') pair.queued = ev.queued;
  if (pair.key === state.selected) {
    renderTurn();
    loadReport(pair.key);
  }
  refreshStatus(pair.key, true); // exact cost, tokens and queue from the node
  refreshSideSoon();
}

// ---------------------------------------------------------------------------------------------------------
// Rendering: header

function renderHealth() {
  const info = $('node-info');
  const h = state.health;
  const parts = [];
  if (state.nodeName) parts.push(el('span', { class: 'node-name', text: state.nodeName }));
  if (h) {
    parts.push(el('span', { text: `pid ${h.pid}` }));
    parts.push(el('span', { text: `v${h.version}` }));
    parts.push(el('span', { class: 'mono', text: h.addr }));
    parts.push(el('span', { text: `up ${fmtSecs(h.uptime_secs)}`, data: { uptime: '' } }));
    parts.push(el('span', { text: `${h.live_sessions} sessions · ${h.live_processes} processes` }));
    const store = h.store || {};
    if (store.healthy === false) {
      parts.push(el('span', { class: 'warn', text: `store unhealthy (${store.failed_commits} failed commits)` }));
    }
  }
  if (!parts.length) return;
  info.replaceChildren(...parts);
}

function tickUptime() {
  const span = document.querySelector('#node-info [data-uptime]');
  if (span && state.health) {
    const secs = state.health.uptime_secs + (Date.now() - state.healthAt) / 1000;
    span.textContent = `up ${fmtSecs(secs)}`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Rendering: matrix

/** Builds the table when the team list changed; otherwise only cells are updated (stable elements). */
function renderMatrix() {
  const teams = allTeams();
  const signature = JSON.stringify(teams);
  if (signature !== state.matrixTeams) buildMatrix(teams, signature);
  for (const key of state.cells.keys()) renderCell(key);
}

function buildMatrix(teams, signature) {
  state.matrixTeams = signature;
  state.cells.clear();
  const head = el('tr', {}, [el('th', { class: 'corner', scope: 'col', text: 'from \\ to' })]);
  for (const to of teams) head.append(el('th', { scope: 'col', text: to }));
  const body = el('tbody');
  for (const from of teams) {
    const row = el('tr', {}, [el('th', { scope: 'row', text: from })]);
    for (const to of teams) {
      if (from === to) {
        row.append(el('td', { class: 'diag' }));
        continue;
      }
      const key = pairKey(from, to);
      const cell = el('td', { class: 'cell', title: arrow(key), data: { pair: key } });
      cell.tabIndex = 0;
      state.cells.set(key, cell);
      row.append(cell);
    }
    body.append(row);
  }
  $('matrix').replaceChildren(el('thead', {}, [head]), body);
  $('matrix-empty').hidden = teams.length > 0;
}

function renderCell(key) {
  const cell = state.cells.get(key);
  if (!cell) return;
  const pair = state.pairs.get(key);
  cell.classList.toggle('selected', key === state.selected);
  cell.classList.toggle('busy', Boolean(pair && pair.busy));
  if (!pair || !pair.session) {
    if (cell.dataset.mode !== 'none') {
      cell.dataset.mode = 'none';
      cell.replaceChildren(el('span', { class: 'none', text: '–' }));
    }
    return;
  }
  if (cell.dataset.mode !== 'session') {
    cell.dataset.mode = 'session';
    cell.replaceChildren(
      el('div', { class: 'cell-line' }, [el('span', { class: 'status' }), el('span', { class: 'process' })]),
      el('div', { class: 'cell-line' }, [
        el('span', { class: 'cost' }),
        el('span', { class: 'q' }, [el('span', { class: 'queued' }), ' queued']),
      ]),
      el('div', { class: 'cell-line' }, [el('span', { class: 'last' })]),
    );
  }
  const s = pair.session;
  const status = cell.querySelector('.status');
  status.textContent = s.status || 'new';
  status.className = `status st-${s.status || 'new'}`;
  const proc = cell.querySelector('.process');
  proc.textContent = s.process_state || '';
  proc.className = `process ps-${s.process_state || 'unknown'}`;
  cell.querySelector('.queued').textContent = String(pair.queued);
  cell.querySelector('.q').classList.toggle('zero', !pair.queued);
  cell.querySelector('.cost').textContent = fmtCost(s.cost);
  setRel(cell.querySelector('.last'), pair.lastAt);
  const node = s.node ? ` · node ${s.node}` : '';
  cell.title = `${arrow(key)} · session ${short(s.session_id)}${node}`;
}

/** Re-renders what shows a pair: its cell (adding a row/column if it is new) and the panel if selected. */
function renderPair(key) {
  if (!state.cells.has(key)) renderMatrix();
  else renderCell(key);
  if (key === state.selected) renderPanelFacts();
}

function onMatrixClick(e) {
  const cell = e.target.closest('td[data-pair]');
  if (cell) selectPair(cell.dataset.pair);
}

function onMatrixKey(e) {
  if (e.key !== 'Enter' && e.key !== ' ') return;
  const cell = e.target.closest('td[data-pair]');
  if (!cell) return;
  e.preventDefault();
  selectPair(cell.dataset.pair);
}

// ---------------------------------------------------------------------------------------------------------
// Rendering: pair panel

function selectPair(key) {
  const previous = state.selected;
  state.selected = key;
  if (previous) renderCell(previous);
  renderCell(key);
  const panel = $('pair');
  panel.dataset.pair = key;
  panel.classList.add('has-pair');
  $('pair-title').textContent = arrow(key);
  $('pair-hint').hidden = true;
  for (const id of ['btn-cancel', 'btn-sleep', 'btn-wake']) $(id).disabled = false;
  $('action-result').textContent = '';
  renderPanelFacts();
  renderTurn();
  renderReport([], 'loading…');
  loadReport(key);
}

function renderPanelFacts() {
  const pair = state.pairs.get(state.selected);
  if (!pair) return;
  const s = pair.session;
  const node = s && s.node ? ` · node ${s.node}` : '';
  $('pair-session').textContent = s ? `session ${s.session_id || '…'}${node}` : 'no session';
  setBadge($('pair-status'), s ? s.status : null, 'st');
  setBadge($('pair-process'), s ? s.process_state : null, 'ps');
  $('pair-queued').textContent = s ? String(pair.queued) : '–';
  $('pair-activity').textContent = s ? activityOf(pair) : '–';
  $('pair-cost').textContent = s ? fmtCost(s.cost) : '–';
  $('pair-tokens').textContent = s ? fmtTokens(s.usage) : '–';
  $('pair-messages').textContent = s ? fmtInt(s.message_count) : '–';
}

function setBadge(node, value, prefix) {
  node.textContent = value || '–';
  node.className = value ? `badge ${prefix}-${value}` : '';
}

function fmtTokens(usage) {
  if (!usage || usage.input_tokens === undefined) return '–';
  const cache = (usage.cache_creation_input_tokens || 0) + (usage.cache_read_input_tokens || 0);
  return `${fmtInt(usage.input_tokens)} in · ${fmtInt(usage.output_tokens)} out · ${fmtInt(cache)} cache`;
}

/** What the pair does now: from the live turn when we watch one, else from the last `status`. */
function activityOf(pair) {
  const turn = state.turns.get(pair.key);
  if (turn && turn.state === 'running' && pair.busy) {
    const tool = runningTool(turn);
    if (tool) return `running tool ${tool.tool} for ${fmtSecs((Date.now() - tool.since) / 1000)}`;
    return 'streaming';
  }
  const ps = pair.session && pair.session.process_state;
  if (ps === 'stopped' || pair.awake === false) return 'asleep';
  if (ps === 'spawning') return 'starting';
  if (pair.busy && pair.activity) return pair.activity;
  return ps === 'idle' ? 'idle' : pair.activity || ps || '–';
}

/** The oldest tool still running in a turn (tools may run side by side). */
function runningTool(turn) {
  let oldest = null;
  for (const t of turn.tools.values()) if (!oldest || t.since < oldest.since) oldest = t;
  return oldest;
}

function renderTurn() {
  const turn = state.turns.get(state.selected);
  $('turn-id').textContent = turn ? turn.id || '' : '';
  $('turn-id').title = turn && turn.id ? turn.id : '';
  renderTurnState(turn);
  const pre = $('turn-text');
  pre.textContent = turn ? turn.text : '';
  pre.scrollTop = pre.scrollHeight;
}

function renderTurnState(turn) {
  const badge = $('turn-state');
  const label = turn ? turn.state : '';
  badge.textContent = label;
  badge.className = label ? `badge ts-${label.split(':')[0]}` : 'badge';
  renderTurnTool(turn);
}

function renderTurnTool(turn) {
  const tool = turn && turn.state === 'running' ? runningTool(turn) : null;
  const names = tool ? [...new Set([...turn.tools.values()].map((t) => t.tool))].join(', ') : '';
  $('turn-tool').textContent = tool ? `${names} (running ${fmtSecs((Date.now() - tool.since) / 1000)})` : '';
}

/** Appends a piece of streamed text; follows the bottom unless the reader scrolled up. */
function appendText(key, turn, piece) {
  turn.text += piece;
  const trimmed = turn.text.length > TEXT_MAX;
  if (trimmed) turn.text = turn.text.slice(-TEXT_MAX);
  if (key !== state.selected) return;
  const pre = $('turn-text');
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  if (trimmed) pre.textContent = turn.text;
  else pre.append(piece);
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function renderReport(turns, emptyText) {
  const body = $('report-body');
  if (!turns.length) {
    const cell = el('td', { class: 'muted', text: emptyText });
    cell.colSpan = 7;
    body.replaceChildren(el('tr', {}, [cell]));
    return;
  }
  body.replaceChildren(...turns.map(reportRow));
}

function reportRow(t) {
  const code = t.error && t.error.code;
  const label = turnStateLabel(t.status, code);
  const answer = t.text || (t.error ? t.error.message : '');
  const queuedAt = parseTime(t.queued_at);
  return el('tr', { data: { turn: t.turn_id } }, [
    // data-label names the value when a narrow window stacks the row (see .stack in the CSS).
    el('td', { class: 'num', text: t.seq, data: { label: 'seq' } }),
    el('td', { data: { label: 'status' } }, [
      el('span', { class: `badge ts-${t.status}`, text: label, title: t.error ? t.error.message : '' }),
    ]),
    el('td', { class: 'nowrap', text: fmtClock(queuedAt), title: t.queued_at || '', data: { label: 'queued' } }),
    el('td', { class: 'num nowrap', text: fmtMs(t.duration_ms), data: { label: 'duration' } }),
    el('td', { class: 'num nowrap', text: fmtCost(t.usage && t.usage.cost_usd), data: { label: 'cost' } }),
    textCell('message', clip(t.message, 80), t.message),
    textCell('answer', clip(answer, 120), answer),
  ]);
}

/** A ledger text cell: clipped text, at most three lines on screen, the start of the full text on hover. */
function textCell(label, text, full) {
  return el('td', { class: 'clip wide', title: clip(full, 2000), data: { label } }, [
    el('div', { class: 'clamp', text }),
  ]);
}

// ---------------------------------------------------------------------------------------------------------
// Rendering: budgets and cluster

function renderBudgets(b) {
  const day = $('budgets-day');
  day.replaceChildren();
  if (b.day) {
    day.append(`day ${b.day} (${b.day_offset || 'UTC'}) · resets `, relSpan(parseTime(b.resets_at)));
  }
  const scopes = b.scopes || [];
  const body = $('budgets-body');
  if (!scopes.length) {
    body.replaceChildren(el('p', { class: 'muted', text: 'no budgets configured ([budgets] in the config)' }));
    return;
  }
  const head = el('tr', {}, ['scope', 'key', 'spent', 'cap', 'used', 'resets'].map((h) => el('th', { scope: 'col', text: h })));
  const rows = scopes.map(budgetRow);
  body.replaceChildren(el('table', { class: 'grid budgets stack' }, [el('thead', {}, [head]), el('tbody', {}, rows)]));
}

function budgetRow(s) {
  const key = s.scope === 'session' && s.pair ? arrow(s.pair) : s.key;
  const fill = el('div', { class: `meter-fill bs-${s.state}` });
  // CSSOM (not a style attribute) is allowed by the page's CSP.
  fill.style.width = `${Math.min(100, Math.max(0, Number(s.percent) || 0))}%`;
  const used = el('div', { class: 'used' }, [
    el('div', { class: 'meter', title: s.state }, [fill]),
    el('span', { class: `pct bs-text-${s.state}`, text: `${(Number(s.percent) || 0).toFixed(1)} %` }),
  ]);
  const resets = s.resets_at ? relSpan(parseTime(s.resets_at), '', true) : el('span', { class: 'muted', text: 'never' });
  return el('tr', { data: { scope: s.scope } }, [
    el('td', { data: { label: 'scope' } }, [el('span', { class: 'scope', text: s.scope })]),
    el('td', { class: 'key', text: key, title: s.key, data: { label: 'key' } }),
    el('td', { class: 'nowrap', data: { label: 'spent' } }, amountLines(s.spent)),
    el('td', { class: 'nowrap', data: { label: 'cap' } }, amountLines(s.cap)),
    el('td', { class: 'wide', data: { label: 'used' } }, [used]),
    el('td', { class: 'nowrap', data: { label: 'resets' } }, [resets]),
  ]);
}

/** "$1.25" over "4,000 tok", only the parts that are set: two short lines keep the table narrow. */
function amountLines(a) {
  const lines = [];
  if (a && a.usd !== null && a.usd !== undefined) lines.push(el('div', { text: fmtCost(a.usd) }));
  if (a && a.tokens !== null && a.tokens !== undefined) {
    lines.push(el('div', { class: 'tok', text: `${fmtInt(a.tokens)} tok` }));
  }
  return lines.length ? lines : [el('span', { class: 'muted', text: '–' })];
}

const isScalar = (v) => v === null || ['string', 'number', 'boolean'].includes(typeof v);

function renderCluster(c) {
  const body = $('cluster-body');
  const sub = $('cluster-node');
  const notes = (state.unavailable || []).map((u) =>
    el('p', { class: 'warn', text: `unavailable: ${u.node} (${u.reason})` }),
  );
  if (!c) {
    sub.textContent = '';
    body.replaceChildren(el('p', { class: 'muted', text: 'not part of a cluster' }));
    return;
  }
  sub.textContent = c.node ? `this node: ${c.node}` : '';
  const nodes = Array.isArray(c.nodes) ? c.nodes : [];
  const columns = [];
  for (const n of nodes) {
    for (const [k, v] of Object.entries(n)) if (isScalar(v) && !columns.includes(k)) columns.push(k);
  }
  const head = el('tr', {}, columns.map((k) => el('th', { scope: 'col', text: k.replace(/_/g, ' ') })));
  const rows = nodes.map((n) =>
    el('tr', { data: { node: String(n.name ?? '') } }, columns.map((k) => clusterCell(k, n[k]))),
  );
  const table = el('table', { class: 'grid' }, [el('thead', {}, [head]), el('tbody', {}, rows)]);
  body.replaceChildren(table, ...notes);
}

function clusterCell(key, value) {
  if (key === 'state' && value) return el('td', {}, [el('span', { class: `badge ns-${value}`, text: value })]);
  const text = value === null || value === undefined ? '–' : String(value);
  return el('td', { class: typeof value === 'number' ? 'num' : '', text });
}

// ---------------------------------------------------------------------------------------------------------
// Event log

function logEvent(kind, ev) {
  const log = $('log');
  const pair = ev.from && ev.to ? arrow(pairKey(ev.from, ev.to)) : ev.node || '';
  const top = log.firstElementChild;
  // Streamed text comes in many small pieces: one line per turn, updated, keeps the log readable.
  if (kind === 'text' && top && top.dataset.kind === 'text' && top.dataset.turn === ev.turn_id) {
    const pieces = Number(top.dataset.pieces) + 1;
    const chars = Number(top.dataset.chars) + (ev.text || '').length;
    top.dataset.pieces = String(pieces);
    top.dataset.chars = String(chars);
    top.querySelector('.log-detail').textContent = `${pieces} pieces, ${chars} chars`;
    top.querySelector('.log-time').textContent = fmtClock(parseTime(ev.at) || Date.now());
    return;
  }
  const line = el('li', { class: `log-line k-${kind}`, data: { kind } }, [
    el('span', { class: 'log-time', text: fmtClock(parseTime(ev.at) || Date.now()) }),
    el('span', { class: 'log-pair', text: pair }),
    el('span', { class: 'log-kind', text: kind }),
    el('span', { class: 'log-detail', text: eventDetail(kind, ev) }),
  ]);
  if (kind === 'text') {
    line.dataset.turn = ev.turn_id || '';
    line.dataset.pieces = '1';
    line.dataset.chars = String((ev.text || '').length);
  }
  log.prepend(line);
  while (log.childElementCount > LOG_MAX) log.lastElementChild.remove();
}

function eventDetail(kind, ev) {
  switch (kind) {
    case 'hello':
      return `run ${short(ev.run)}, last seq ${ev.last_seq}`;
    case 'reset':
      return ev.reason || '';
    case 'session_created':
    case 'session_deleted':
    case 'process_stopped':
      return `session ${short(ev.session_id)}`;
    case 'session':
      return `${ev.status} / ${ev.process_state}, ${ev.message_count} msgs, ${fmtCost(ev.cost_usd)}`;
    case 'process_started':
      return `pid ${ev.pid}`;
    case 'turn_queued':
      return `turn ${short(ev.turn_id)}, ${ev.queued} queued`;
    case 'turn_started':
      return `turn ${short(ev.turn_id)}`;
    case 'text':
      return clip(JSON.stringify(ev.text || ''), 60);
    case 'tool_started':
      return ev.tool || '';
    case 'tool_finished':
      return `${ev.tool} after ${fmtMs(ev.ran_for_ms)}`;
    case 'turn_completed':
      return `${fmtCost(ev.cost_usd)} in ${fmtMs(ev.duration_ms)}`;
    case 'turn_failed':
      return `${ev.status}${ev.code ? ` ${ev.code}` : ''}${ev.message ? `: ${clip(ev.message, 80)}` : ''}`;
    case 'budget_warning':
    case 'budget_exceeded':
      return `${ev.scope} ${ev.key}: ${(Number(ev.percent) || 0).toFixed(1)} %`;
    default:
      return '';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Actions: cancel, sleep, wake, each behind a confirmation dialog

const ACTIONS = {
  cancel: {
    question: (p) => `Cancel the turn in flight of ${p}?`,
    option: 'Also drop the turns waiting in its queue',
    ok: 'Cancel the turn',
    body: (from, to, opt) => ({ command: 'cancel', from, to, drop_queue: opt }),
  },
  sleep: {
    question: (p) => `Put ${p} to sleep (stop its agent process)?`,
    option: 'Force, even with a turn in flight',
    ok: 'Sleep',
    body: (from, to, opt) => ({ command: 'sleep', from, to, force: opt }),
  },
  wake: {
    question: (p) => `Wake ${p} (start its agent process)?`,
    option: null,
    ok: 'Wake',
    body: (from, to) => ({ command: 'wake', from, to }),
  },
};

function askAction(name) {
  const key = state.selected;
  if (!key) return;
  const action = ACTIONS[name];
  state.pendingAction = { name, key };
  $('confirm-text').textContent = action.question(arrow(key));
  $('confirm-option').hidden = !action.option;
  $('confirm-check').checked = false;
  $('confirm-check-label').textContent = action.option || '';
  $('confirm-ok').textContent = action.ok;
  const dialog = $('confirm');
  dialog.returnValue = '';
  dialog.showModal();
}

function onConfirmClose() {
  const pending = state.pendingAction;
  state.pendingAction = null;
  if (!pending || $('confirm').returnValue !== 'ok') return;
  runAction(pending.name, pending.key, $('confirm-check').checked);
}

async function runAction(name, key, option) {
  const { from, to } = splitKey(key);
  const result = $('action-result');
  result.className = 'action-result pending';
  result.textContent = `${name}…`;
  try {
    const answer = await command(ACTIONS[name].body(from, to, option));
    showResult(describeResult(answer));
  } catch (e) {
    result.textContent = '';
    reportError(e);
  }
  await refreshStatus(key, true);
  if (key === state.selected) loadReport(key);
}

function describeResult(answer) {
  const d = answer.data || {};
  switch (answer.kind) {
    case 'cancelled': {
      const what = d.interrupted ? 'interrupted the turn in flight' : 'no turn was in flight';
      return `cancelled: ${what}${d.dropped ? `, dropped ${d.dropped} queued` : ''}`;
    }
    case 'slept':
      return `slept: ${d.from} → ${d.to} is asleep`;
    case 'session':
      applySessionRecord(d);
      return `woke: ${d.from_team} → ${d.to_team}, session ${short(d.session_id)} (${d.process_state})`;
    default:
      return answer.kind || 'done';
  }
}

function showResult(text) {
  const result = $('action-result');
  result.className = 'action-result ok';
  result.textContent = text;
  clearTimeout(state.resultTimer);
  state.resultTimer = setTimeout(() => {
    result.textContent = '';
  }, 10000);
}

// ---------------------------------------------------------------------------------------------------------
// Timers and start

/** Every second: relative times, the running tool's clock, the uptime. */
function tick() {
  for (const span of document.querySelectorAll('[data-rel-time]')) {
    span.textContent = fmtRel(Number(span.dataset.relTime), 'relShort' in span.dataset);
  }
  const turn = state.turns.get(state.selected);
  if (turn && turn.state === 'running') {
    renderTurnTool(turn);
    const pair = state.pairs.get(state.selected);
    if (pair && pair.session) $('pair-activity').textContent = activityOf(pair);
  }
  tickUptime();
}

function start() {
  state.authFailed = false;
  state.run = null; // the first hello loads the snapshot
  state.snapshotTried = false;
  $('token-form').hidden = true;
  $('app').hidden = false;
  setConn('connecting', 'connecting…');
  streamLoop();
}

function init() {
  takeTokenFromFragment();
  state.token = state.token || readStoredToken();

  $('token-form').addEventListener('submit', onTokenSubmit);
  $('error-close').addEventListener('click', () => {
    $('error').hidden = true;
  });
  $('matrix').addEventListener('click', onMatrixClick);
  $('matrix').addEventListener('keydown', onMatrixKey);
  $('btn-cancel').addEventListener('click', () => askAction('cancel'));
  $('btn-sleep').addEventListener('click', () => askAction('sleep'));
  $('btn-wake').addEventListener('click', () => askAction('wake'));
  $('confirm').addEventListener('close', onConfirmClose);

  renderReport([], 'select a pair');
  setInterval(tick, 1000);
  setInterval(() => refreshSide(), POLL_MS);

  if (state.token) start();
  else needToken('');
}

init();
