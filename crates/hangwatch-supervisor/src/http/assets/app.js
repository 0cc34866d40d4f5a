// hangwatch's status page. No framework and no build step: the page reads /api/status,
// /api/incidents and /api/events, then follows /api/stream (server-sent events) and reloads
// the status whenever something happens. Between events the heartbeat bars advance on their
// own, and the status is read again every few seconds while the page is visible, so ages and
// uptimes stay true. Everything is written with textContent: nothing from the server is HTML.
'use strict';

const MAX_EVENTS = 300;
const REFRESH_EVERY_MS = 3000;
// A stall stays marked at least this long, even when the service is ready again sooner (a
// restart takes a fraction of a second): a stall must not pass unseen between two glances.
const STALL_SHOWN_MS = 5000;
const ALARMS = new Set(['stalled', 'incident', 'gave-up', 'over-memory', 'leak', 'start-failed', 'not-ready']);

const view = {
  status: null,
  fetchedAt: 0,
  incidents: [],
  stalled: new Map(), // service -> {at, recovered} of its last stall, while it is shown
  lastSeq: -1,
  pending: null,
};

function $(id) { return document.getElementById(id); }

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function duration(ms) {
  if (ms === undefined || ms === null) return '';
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + (s % 60) + 's';
  const h = Math.floor(m / 60);
  if (h < 48) return h + 'h ' + (m % 60) + 'm';
  return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
}

function clock(at) {
  const d = new Date(at);
  return isNaN(d) ? at : d.toLocaleTimeString();
}

async function getJSON(path) {
  const response = await fetch(path, { cache: 'no-store' });
  if (!response.ok) throw new Error(path + ': HTTP ' + response.status);
  return response.json();
}

async function refreshStatus() {
  try {
    view.status = await getJSON('/api/status');
    view.fetchedAt = performance.now();
    renderStatus();
  } catch (err) {
    $('summary').textContent = 'no answer: ' + err.message;
  }
}

async function refreshIncidents() {
  try {
    view.incidents = await getJSON('/api/incidents');
    renderIncident();
  } catch (err) {
    console.warn('incidents', err.message);
  }
}

// Several events in a burst cost one reload.
function scheduleRefresh(incidents) {
  if (incidents) view.pendingIncidents = true;
  if (view.pending) return;
  view.pending = setTimeout(async () => {
    view.pending = null;
    const withIncidents = view.pendingIncidents;
    view.pendingIncidents = false;
    await Promise.all([refreshStatus(), withIncidents ? refreshIncidents() : null]);
  }, 50);
}

function renderStatus() {
  const status = view.status;
  if (!status) return;
  const counts = {};
  for (const s of status.services) counts[s.state] = (counts[s.state] || 0) + 1;
  const parts = Object.keys(counts).sort().map((k) => counts[k] + ' ' + k);
  $('summary').textContent = status.services.length + ' services: ' + parts.join(', ') +
    ' · pid ' + status.pid + ' · up ' + duration(status.uptime_ms);
  const banner = $('banner');
  banner.hidden = !status.shutting_down;
  banner.textContent = status.shutting_down ? 'shutting down: ' + status.shutting_down : '';

  const body = $('services');
  const rows = new Map();
  for (const row of body.children) rows.set(row.dataset.service, row);
  const wanted = new Set();
  status.services.forEach((s, index) => {
    wanted.add(s.name);
    let row = rows.get(s.name);
    if (!row) row = newRow(s.name);
    fillRow(row, s);
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
  });
  for (const [name, row] of rows) if (!wanted.has(name)) row.remove();
}

function newRow(name) {
  const row = el('tr');
  row.dataset.service = name;
  row.append(el('td', 'name', name), el('td', 'state-cell'), el('td', 'num uptime'),
    el('td', 'num restarts'), el('td', 'heartbeat'), el('td', 'exit'), el('td', 'num pid'));
  return row;
}

// Whether the service's last stall is still to be shown: until it is ready again, and for at
// least STALL_SHOWN_MS.
function isStalled(name) {
  const stall = view.stalled.get(name);
  if (!stall) return false;
  if (stall.recovered && Date.now() - stall.at >= STALL_SHOWN_MS) {
    view.stalled.delete(name);
    return false;
  }
  return true;
}

function fillRow(row, s) {
  const stalled = isStalled(s.name) || s.state === 'diagnosing';
  row.dataset.state = s.state;
  row.dataset.stalled = String(stalled);
  const cells = row.children;
  cells[1].replaceChildren(el('span', 'state ' + s.state, s.state));
  if (stalled) cells[1].append(el('span', 'stalled-mark', 'stalled'));
  if (s.status_text) cells[1].title = s.status_text;
  cells[2].textContent = s.uptime_ms !== undefined ? duration(s.uptime_ms) :
    (s.restart_in_ms !== undefined ? 'restart in ' + duration(s.restart_in_ms) : '');
  cells[3].textContent = s.restarts;
  cells[4].replaceChildren(...heartbeat(s.heartbeat));
  cells[5].textContent = s.last_exit ? s.last_exit.status + ' (' + s.last_exit.reason + ')' : '';
  cells[6].textContent = s.pid || '';
}

function heartbeat(hb) {
  if (!hb) return [el('span', 'muted', '—')];
  const bar = el('span', 'bar');
  bar.dataset.age = hb.age_ms;
  bar.dataset.deadline = hb.deadline_ms;
  bar.append(el('span'));
  const label = el('span', 'bar-label');
  label.dataset.source = hb.source;
  paintBar(bar, label, hb.age_ms, hb.deadline_ms);
  return [bar, label];
}

function paintBar(bar, label, age, deadline) {
  const share = deadline > 0 ? Math.min(age / deadline, 1) : 1;
  bar.firstChild.style.width = (share * 100).toFixed(1) + '%';
  bar.classList.toggle('late', share >= 0.75 && age <= deadline);
  bar.classList.toggle('over', age > deadline);
  label.textContent = label.dataset.source + ' ' + (age / 1000).toFixed(1) + 's / ' +
    (deadline / 1000).toFixed(1) + 's';
}

// The bars advance between two reads of the status.
function tick() {
  if (!view.status) return;
  const since = performance.now() - view.fetchedAt;
  for (const bar of document.querySelectorAll('.bar')) {
    paintBar(bar, bar.nextSibling, Number(bar.dataset.age) + since, Number(bar.dataset.deadline));
  }
}

function renderIncident() {
  const box = $('last-incident');
  const last = view.incidents[0];
  if (!last) { box.hidden = true; return; }
  box.hidden = false;
  box.dataset.service = last.service || '';
  box.dataset.id = last.id || '';
  box.querySelector('.who').textContent = last.service ? 'of ' + last.service : '';
  box.querySelector('time').textContent = clock(last.at);
  const lines = last.verdict.length ? last.verdict : [last.error || 'no verdict'];
  box.querySelector('.verdict').replaceChildren(...lines.map((line) => el('li', null, line)));
  const link = box.querySelector('.report-link');
  link.hidden = !last.id;
  if (last.id) link.href = '/incidents/' + encodeURIComponent(last.id);
}

function describe(record) {
  switch (record.event) {
    case 'started': return 'pid ' + record.pid + (record.restarts ? ', restart ' + record.restarts : '');
    case 'ready': return 'after ' + Math.round(record.after_ms) + ' ms (' + record.by + ')';
    case 'stalled': return record.source + ' silent past ' + record.bound_ms + ' ms' + (record.detail ? ': ' + record.detail : '');
    case 'incident': return (record.verdict && record.verdict[0]) || record.error || '';
    case 'exited': return (record.status.kind === 'exited' ? 'code ' + record.status.code : 'signal ' + record.status.name) +
      ' after ' + duration(record.uptime_ms) + (record.stopped ? ' (stopped)' : '');
    case 'restarting': return 'in ' + record.in_ms + ' ms (' + record.reason + ')';
    case 'stopping': return record.cause + ', ' + record.signal;
    case 'gave-up': return record.restarts + ' restarts, ' + record.action;
    case 'requested': return record.request;
    case 'shutting-down': return record.reason;
    default: return '';
  }
}

function addEvent(numbered) {
  if (numbered.seq <= view.lastSeq) return;
  view.lastSeq = numbered.seq;
  if (numbered.service) {
    if (numbered.event === 'stalled') {
      view.stalled.set(numbered.service, { at: Date.now(), recovered: false });
    }
    const stall = view.stalled.get(numbered.service);
    if (numbered.event === 'ready' && stall) {
      stall.recovered = true;
      // Shown again without the mark once its time is up.
      setTimeout(refreshStatus, Math.max(0, stall.at + STALL_SHOWN_MS - Date.now()) + 50);
    }
  }
  const item = el('li', ALARMS.has(numbered.event) ? 'alarm' : null);
  item.dataset.event = numbered.event;
  item.append(el('time', null, clock(numbered.at)), el('span', 'svc', numbered.service || 'hangwatch'),
    el('span', 'kind', numbered.event), el('span', 'detail', describe(numbered)));
  const list = $('events');
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

function follow() {
  const source = new EventSource('/api/stream');
  const live = $('live');
  source.onopen = () => {
    live.dataset.live = 'true';
    live.textContent = '● live';
    // Whatever happened while the stream was down.
    catchUp();
  };
  source.onmessage = (message) => {
    const numbered = JSON.parse(message.data);
    addEvent(numbered);
    scheduleRefresh(numbered.event === 'incident');
  };
  source.addEventListener('lagged', () => catchUp());
  source.onerror = () => {
    live.dataset.live = 'false';
    live.textContent = '○ reconnecting';
  };
}

async function catchUp() {
  try {
    const since = view.lastSeq >= 0 ? '?since=' + view.lastSeq : '';
    const page = await getJSON('/api/events' + since);
    for (const numbered of page.events) addEvent(numbered);
  } catch (err) {
    console.warn('events', err.message);
  }
  await Promise.all([refreshStatus(), refreshIncidents()]);
}

document.addEventListener('DOMContentLoaded', () => {
  follow();
  setInterval(tick, 250);
  setInterval(() => { if (!document.hidden) refreshStatus(); }, REFRESH_EVERY_MS);
});
