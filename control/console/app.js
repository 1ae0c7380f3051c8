'use strict';
/*
 * Pylon operator console: one plain script, no build step, no dependencies.
 *
 * Safety rules followed throughout:
 *   - every server string reaches the page as a DOM text node or an attribute set with
 *     setAttribute (the h() helper below); innerHTML is never used;
 *   - no inline handlers or styles (the page runs under a strict CSP);
 *   - the session is an HttpOnly cookie; nothing is stored in localStorage.
 */

// ---------------------------------------------------------------------------
// DOM helpers
// ---------------------------------------------------------------------------

const SVG_NS = 'http://www.w3.org/2000/svg';
const DASH = '\u2014';

const $ = (selector, root = document) => root.querySelector(selector);
const enc = encodeURIComponent;

/** Builds an HTML element: h('a', {href: '#/x', onclick: fn}, 'text', child, [more]). */
function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** Builds an SVG element, same signature as h(). */
function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  appendAll(el, children); // children first, so that a <select>'s value can be set
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value') {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  return el;
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
}

function replace(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function queryString(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value != null && value !== '') q.set(key, String(value));
  }
  return q.toString();
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

function fmtTime(value) {
  if (value == null || value === '') return DASH;
  if (typeof value !== 'number') return String(value);
  // Times are Unix milliseconds; tolerate seconds.
  const ms = value > 1e8 && value < 1e11 ? value * 1000 : value;
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

function fmtClock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function fmtNum(value, digits = 0) {
  if (value == null || value === '') return DASH;
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Integers in 1/10000 of a unit (energy in 0.0001 kWh, money in 0.0001 yuan). */
function fmtScaled(value, digits) {
  if (value == null || value === '') return DASH;
  const n = Number(value);
  return Number.isFinite(n) ? fmtNum(n / 10000, digits) : String(value);
}

function fmtValue(value) {
  if (value == null || value === '') return DASH;
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function yesNo(flag) {
  return flag ? 'yes' : 'no';
}

function countText(value) {
  const n = Number(value);
  return String(Number.isFinite(n) ? n : 0);
}

function byNatural(a, b) {
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

/** A response that is either a bare array or {key: [...]}. */
function listOf(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  return [];
}

const GUN_STATUS = ['offline', 'fault', 'idle', 'charging'];

function gunStatus(code) {
  return GUN_STATUS[Number(code)] || String(code ?? 'unknown');
}

// ---------------------------------------------------------------------------
// Small UI pieces
// ---------------------------------------------------------------------------

function badge(text, kind, attrs) {
  return h('span', Object.assign({ class: `badge badge-${kind}` }, attrs), text);
}

function loading() {
  return h('p', { class: 'muted' }, 'Loading\u2026');
}

function panelBody() {
  return h('div', { class: 'panel-body' }, loading());
}

function panel(title, body, ...extra) {
  return h('section', { class: 'panel' },
    h('div', { class: 'panel-head' }, h('h2', {}, title), h('span', { class: 'spacer' }), extra),
    body);
}

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty || 'Nothing to show.');
  return h('table', { class: 'grid' },
    h('thead', {}, h('tr', {}, headers.map((title) => h('th', {}, title)))),
    h('tbody', {}, rows));
}

/** A table row; a cell given as a <td> is used as is, anything else is wrapped in one. */
function row(attrs, cells) {
  return h('tr', attrs, cells.map((cell) =>
    cell instanceof Element && cell.tagName === 'TD' ? cell : h('td', {}, cell)));
}

function num(value) {
  return h('td', { class: 'num' }, value);
}

function pileLink(pileNo) {
  if (pileNo == null || pileNo === '') return DASH;
  return h('a', { href: `#/piles/${enc(pileNo)}`, class: 'mono' }, String(pileNo));
}

function stationLink(id, label) {
  if (id == null || id === '') return DASH;
  return h('a', { href: `#/piles?${queryString({ station: id })}` }, label ?? String(id));
}

function tradeLink(tradeNo) {
  if (!tradeNo) return DASH;
  return h('a', { href: `#/orders?${queryString({ trade: tradeNo })}`, class: 'mono' }, String(tradeNo));
}

function definitionList(obj, format = (key, value) => fmtValue(value)) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('p', { class: 'muted' }, 'Nothing to show.');
  return h('dl', { class: 'kv' }, entries.map(([key, value]) => [
    h('dt', {}, key),
    h('dd', {}, typeof value === 'object' && value !== null
      ? h('code', { class: 'json' }, JSON.stringify(value))
      : format(key, value)),
  ]));
}

/** Formats well-known keys of orders and records: times, and 1/10000 amounts when `scaled`. */
function smartFormat(scaled) {
  return (key, value) => {
    if (typeof value === 'number' && /(^at$|_at$|_time$)/.test(key)) return fmtTime(value);
    if (scaled && Number.isInteger(value) && /(energy|amount|balance)/.test(key)) {
      return `${fmtScaled(value, 4)}`;
    }
    return fmtValue(value);
  };
}

function chips(values) {
  const list = Array.isArray(values) ? values : [];
  if (!list.length) return DASH;
  return h('span', { class: 'chips' }, list.map((value, i) => {
    const n = value && typeof value === 'object' ? (value.sessions ?? JSON.stringify(value)) : value;
    return h('span', { class: 'chip', title: `executor ${i}` }, h('span', { class: 'chip-key' }, `#${i}`), ` ${n}`);
  }));
}

// ---------------------------------------------------------------------------
// Error banner
// ---------------------------------------------------------------------------

function showError(message) {
  $('#error-text').textContent = message;
  $('#error').hidden = false;
}

function clearError() {
  $('#error').hidden = true;
  $('#error-text').textContent = '';
}

/** Reports a failed user action: 401 is handled by the login form, the rest in the banner. */
function reportError(error) {
  if (error.status === 401) return;
  showError(error.status === 403 ? `Not permitted: ${error.message}` : error.message);
}

// ---------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function errorMessage(body, status) {
  if (body && typeof body === 'object') {
    const inner = body.error && typeof body.error === 'object' ? body.error : body;
    if (inner.message) return String(inner.message);
    if (typeof body.error === 'string') return body.error;
    if (inner.code) return String(inner.code);
  }
  if (typeof body === 'string' && body.trim()) return `HTTP ${status}: ${body.trim().slice(0, 200)}`;
  return `HTTP ${status}`;
}

/**
 * Calls the API. Non-GET requests carry the CSRF header and a JSON body.
 * A 401 shows the login form (unless opts.noAuthRedirect); every failure throws ApiError.
 */
async function api(method, url, body, opts = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
  if (method !== 'GET') {
    init.headers['x-pylon-csrf'] = '1';
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, `Network error: ${e.message}`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (response.status === 401 && !opts.noAuthRedirect) showLogin();
  if (!response.ok) throw new ApiError(response.status, errorMessage(data, response.status), data);
  return data;
}

// Panels remember what they last drew, so live refreshes redraw only on change.
const drawn = new WeakMap();

function updatePanel(el, data, render) {
  const key = JSON.stringify(data ?? null);
  if (drawn.get(el) === key) return;
  drawn.set(el, key);
  replace(el, render(data));
}

/** Shows a failed load in its panel: "not permitted" for 403, else the message (and banner). */
function panelError(el, error, quiet) {
  if (error.status === 401) return;
  drawn.delete(el);
  if (error.status === 403) {
    replace(el, h('p', { class: 'muted not-permitted' }, 'not permitted'));
    return;
  }
  replace(el, h('p', { class: 'panel-error' }, error.message));
  if (!quiet) showError(error.message);
}

/** GETs url and draws it into el; resolves to the data, or undefined on failure. */
async function loadPanel(el, url, render, quiet) {
  try {
    const data = await api('GET', url);
    updatePanel(el, data, render);
    return data;
  } catch (e) {
    panelError(el, e, quiet);
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// App state, login, live updates
// ---------------------------------------------------------------------------

const app = {
  user: null,
  overview: null, // the latest overview (GET /v1/overview or the SSE payload)
  page: null, // {live(), overview(ov)} of the page shown
  events: null,
  retry: null,
  poll: null,
  lastEvent: 0,
};

function showLogin() {
  if (!$('#login-screen').hidden) return;
  app.user = null;
  app.page = null;
  stopLive();
  $('#boot').hidden = true;
  $('#app').hidden = true;
  replace($('#main'));
  $('#login-screen').hidden = false;
  $('#login-password').value = '';
  $('#login-user').focus();
}

function enterApp(me) {
  app.user = me || {};
  const name = app.user.name || app.user.user || '';
  replace($('#whoami'), name, app.user.role ? h('span', { class: 'role' }, String(app.user.role)) : null);
  $('#boot').hidden = true;
  $('#login-screen').hidden = true;
  $('#app').hidden = false;
  startLive();
  checkAccounts();
}

async function onLogin(event) {
  event.preventDefault();
  const button = $('#login-submit');
  button.disabled = true;
  clearError();
  try {
    const user = $('#login-user').value;
    const password = $('#login-password').value;
    await api('POST', '/v1/login', { user, password }, { noAuthRedirect: true });
    let me;
    try {
      me = await api('GET', '/v1/whoami', undefined, { noAuthRedirect: true });
    } catch (e) {
      if (e.status === 401) throw new ApiError(401, 'Logged in, but the session cookie was not accepted.');
      throw e;
    }
    $('#login-password').value = '';
    enterApp(me);
    go('#/overview');
  } catch (e) {
    showError(e.message || 'Login failed');
  } finally {
    button.disabled = false;
  }
}

async function onLogout() {
  try {
    await api('POST', '/v1/logout', {}, { noAuthRedirect: true });
  } catch (e) {
    // Logged out or not, show the login form.
  }
  clearError();
  showLogin();
}

async function checkAccounts() {
  const link = $('#nav-accounts');
  try {
    await api('GET', '/v1/accounts?limit=50', undefined, { noAuthRedirect: true });
    link.hidden = false;
  } catch (e) {
    link.hidden = true;
  }
}

function setLive(state) {
  const el = $('#live');
  el.textContent = state;
  el.className = `live live-${state}`;
}

function startLive() {
  startEvents();
  clearInterval(app.poll);
  // Fallback when no event arrived for a while (e.g. a proxy buffering the stream).
  app.poll = setInterval(() => {
    if (!app.user || Date.now() - app.lastEvent < 10000) return;
    api('GET', '/v1/overview').then(applyOverview).catch(() => {});
  }, 10000);
}

function stopLive() {
  clearInterval(app.poll);
  clearTimeout(app.retry);
  if (app.events) app.events.close();
  app.events = null;
  setLive('offline');
}

function startEvents() {
  clearTimeout(app.retry);
  if (app.events) app.events.close();
  setLive('connecting');
  const events = new EventSource('/v1/events');
  app.events = events;
  const onMessage = (message) => {
    if (app.events !== events) return;
    let data;
    try { data = JSON.parse(message.data); } catch { return; }
    app.lastEvent = Date.now();
    setLive('live');
    applyOverview(data);
  };
  events.addEventListener('open', () => { if (app.events === events) setLive('live'); });
  events.addEventListener('overview', onMessage);
  events.addEventListener('message', onMessage);
  events.addEventListener('error', () => {
    if (app.events !== events) return;
    setLive('reconnecting');
    // The browser retries by itself unless the stream was refused (then it is CLOSED).
    if (events.readyState === EventSource.CLOSED) app.retry = setTimeout(restartEvents, 5000);
  });
}

async function restartEvents() {
  if (!app.user) return;
  try {
    await api('GET', '/v1/whoami'); // a 401 here shows the login form
    startEvents();
  } catch (e) {
    if (e.status !== 401) app.retry = setTimeout(restartEvents, 5000);
  }
}

function applyOverview(overview) {
  if (!overview || typeof overview !== 'object') return;
  app.overview = overview;
  const page = app.page;
  if (page && page.overview) page.overview(overview);
  liveRefresh();
}

/** Re-fetches the live page's data; at most one refresh in flight per page. */
function liveRefresh() {
  const page = app.page;
  if (!page || !page.live || page.busy) return;
  page.busy = true;
  Promise.resolve()
    .then(page.live)
    .catch(() => {})
    .finally(() => { page.busy = false; });
}

// ---------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------

const ROUTES = [
  { pattern: /^\/overview$/, nav: 'overview', title: 'Overview', render: pageOverview },
  { pattern: /^\/stations$/, nav: 'stations', title: 'Stations', render: pageStations },
  { pattern: /^\/piles$/, nav: 'piles', title: 'Piles', render: pagePiles },
  { pattern: /^\/piles\/([^/]+)$/, nav: 'piles', title: 'Pile', render: pagePile },
  { pattern: /^\/orders$/, nav: 'orders', title: 'Orders', render: pageOrders },
  { pattern: /^\/alarms$/, nav: 'alarms', title: 'Alarms', render: pageAlarms },
  { pattern: /^\/platform$/, nav: 'platform', title: 'Platform', render: pagePlatform },
  { pattern: /^\/accounts$/, nav: 'accounts', title: 'Accounts', render: pageAccounts },
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const i = raw.indexOf('?');
  return {
    path: (i < 0 ? raw : raw.slice(0, i)) || '/overview',
    query: new URLSearchParams(i < 0 ? '' : raw.slice(i + 1)),
  };
}

function safeDecode(part) {
  try { return decodeURIComponent(part); } catch { return part; }
}

function route() {
  if (!app.user) return;
  let { path, query } = parseHash();
  let found = ROUTES.find((r) => r.pattern.test(path));
  if (!found) {
    history.replaceState(null, '', '#/overview');
    path = '/overview';
    query = new URLSearchParams();
    found = ROUTES[0];
  }
  const params = path.match(found.pattern).slice(1).map(safeDecode);
  clearError();
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.route === found.nav);
  }
  const title = found.nav === 'piles' && params[0] ? `Pile ${params[0]}` : found.title;
  $('#page-title').textContent = title;
  document.title = `${title} \u00b7 Pylon`;
  const view = h('div', { class: `view view-${found.nav}` });
  replace($('#main'), view);
  app.page = found.render(view, { params, query }) || {};
}

// ---------------------------------------------------------------------------
// Overview page
// ---------------------------------------------------------------------------

function countCard(key, label, extra) {
  return h('div', { class: 'card', 'data-card': key },
    h('div', { class: 'count', 'data-count': key }, '\u2013'),
    h('div', { class: 'label' }, label, extra));
}

function statCard(key, label, unit) {
  return h('div', { class: 'card card-stat' },
    h('div', { class: 'count' }, h('span', { 'data-stat': key }, '\u2013'), unit ? h('span', { class: 'unit' }, unit) : null),
    h('div', { class: 'label' }, label));
}

function setCount(root, key, value, hot) {
  const el = $(`[data-count="${key}"]`, root);
  el.textContent = countText(value);
  if (hot !== undefined) el.parentElement.classList.toggle('hot', Boolean(hot) && Number(value) > 0);
}

function setStat(root, key, text) {
  $(`[data-stat="${key}"]`, root).textContent = text;
}

function edgeSessionsTable(edges) {
  const rows = listOf(edges, 'edges').map((edge) => row({ 'data-edge': edge.id }, [
    h('span', { class: 'mono' }, fmtValue(edge.id)),
    badge(edge.live ? 'live' : 'down', edge.live ? 'ok' : 'bad'),
    edge.draining ? badge('draining', 'warn') : 'no',
    num(fmtNum(edge.sessions)),
    chips(edge.executors),
  ]));
  return table(['Edge', 'Live', 'Draining', 'Sessions', 'Sessions per executor'], rows, 'No edges.');
}

function appSummaryTable(apps) {
  const rows = listOf(apps, 'apps').map((a) => row({ 'data-app': a.id }, [
    h('span', { class: 'mono' }, fmtValue(a.id)),
    num(fmtNum(a.shards)),
    num(fmtNum(a.sessions)),
  ]));
  return table(['App', 'Shards', 'Sessions'], rows, 'No app servers.');
}

function renderOverview(parts, ov) {
  const piles = ov.piles || {};
  const alarms = ov.alarms || {};
  const today = ov.today || {};
  const perMinute = ov.per_minute || {};
  for (const key of ['total', 'online', 'offline', 'charging']) setCount(parts.cards, key, piles[key]);
  setCount(parts.cards, 'faulted', piles.faulted, true);
  setCount(parts.cards, 'alarms-open', alarms.open, true);
  setStat(parts.cards, 'alarms-critical', Number(alarms.critical) > 0 ? ` \u00b7 ${alarms.critical} critical` : '');
  setStat(parts.stats, 'energy', fmtNum(today.energy_kwh, 2));
  setStat(parts.stats, 'revenue', fmtNum(today.revenue_yuan, 2));
  setStat(parts.stats, 'records-today', fmtNum(today.records));
  setStat(parts.stats, 'records-min', fmtNum(perMinute.records));
  setStat(parts.stats, 'heartbeats-min', fmtNum(perMinute.heartbeats));
  updatePanel(parts.edges, ov.edges || [], edgeSessionsTable);
  updatePanel(parts.apps, ov.apps || [], appSummaryTable);
  const version = ov.routes && ov.routes.version;
  parts.meta.textContent = `Updated ${fmtTime(ov.at)} \u00b7 route version ${fmtValue(version)}`;
}

function pageOverview(view) {
  const parts = {
    cards: h('div', { class: 'cards' },
      countCard('total', 'Piles'),
      countCard('online', 'Online'),
      countCard('offline', 'Offline'),
      countCard('charging', 'Charging'),
      countCard('faulted', 'Faulted'),
      countCard('alarms-open', 'Open alarms', h('span', { 'data-stat': 'alarms-critical' }))),
    stats: h('div', { class: 'cards' },
      statCard('energy', 'Energy today', 'kWh'),
      statCard('revenue', 'Revenue today', 'yuan'),
      statCard('records-today', 'Records today'),
      statCard('records-min', 'Records / min'),
      statCard('heartbeats-min', 'Heartbeats / min')),
    edges: panelBody(),
    apps: panelBody(),
    meta: h('p', { class: 'muted small meta' }),
  };
  const alarms = panelBody();
  view.append(
    parts.cards,
    parts.stats,
    h('div', { class: 'columns' },
      panel('Sessions per edge', parts.edges),
      panel('App servers', parts.apps)),
    panel('Open alarms', alarms, h('a', { href: '#/alarms' }, 'All alarms \u2192')),
    parts.meta);

  const show = (ov) => renderOverview(parts, ov);
  if (app.overview) show(app.overview);
  api('GET', '/v1/overview')
    .then((ov) => { if (ov && typeof ov === 'object') { app.overview = ov; show(ov); } })
    .catch((e) => {
      if (e.status === 403) parts.meta.textContent = 'Overview: not permitted';
      else reportError(e);
    });

  const loadAlarms = (quiet) => loadPanel(alarms, '/v1/alarms?state=active&limit=10',
    (data) => alarmTable(listOf(data, 'alarms').slice(0, 10), { compact: true }), quiet);
  loadAlarms(false);
  return { overview: show, live: () => loadAlarms(true) };
}

// ---------------------------------------------------------------------------
// Stations page
// ---------------------------------------------------------------------------

function coordinate(value) {
  if (value == null || value === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function stationPosition(station) {
  const lat = coordinate(station.latitude ?? station.lat);
  const lon = coordinate(station.longitude ?? station.lon ?? station.lng);
  return lat == null || lon == null ? null : { lat, lon };
}

function pileNumbers(piles) {
  if (!Array.isArray(piles)) return [];
  return piles.map((p) => (p && typeof p === 'object' ? p.pile_no : p)).filter((p) => p != null);
}

/** A plain SVG map: the stations' coordinates scaled into a 600x400 box. */
function stationMap(stations) {
  const W = 600;
  const H = 400;
  const PAD = 50;
  const placed = stations.map((st) => ({ st, pos: stationPosition(st) })).filter((p) => p.pos);
  const missing = stations.length - placed.length;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'map', role: 'img', 'aria-label': 'Station map' },
    s('rect', { x: 0, y: 0, width: W, height: H, class: 'map-bg' }));
  if (!placed.length) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'No station has coordinates'));
    return h('div', { class: 'map-box' }, svg);
  }
  const lats = placed.map((p) => p.pos.lat);
  const lons = placed.map((p) => p.pos.lon);
  const minLat = Math.min(...lats);
  const maxLat = Math.max(...lats);
  const minLon = Math.min(...lons);
  const maxLon = Math.max(...lons);
  // Longitude degrees shrink with latitude; keep the aspect ratio.
  const squeeze = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180) || 1;
  const spanX = (maxLon - minLon) * squeeze;
  const spanY = maxLat - minLat;
  const scale = Math.min(spanX > 0 ? (W - 2 * PAD) / spanX : Infinity, spanY > 0 ? (H - 2 * PAD) / spanY : Infinity);
  const k = Number.isFinite(scale) ? scale : 0;
  const midLat = (minLat + maxLat) / 2;
  const midLon = (minLon + maxLon) / 2;
  for (const { st, pos } of placed) {
    const x = W / 2 + (pos.lon - midLon) * squeeze * k;
    const y = H / 2 - (pos.lat - midLat) * k;
    const open = () => go(`#/piles?${queryString({ station: st.id })}`);
    svg.append(s('g', {
      class: 'station', 'data-station': st.id, tabindex: 0, role: 'link',
      onclick: open,
      onkeydown: (e) => { if (e.key === 'Enter') open(); },
    },
    s('title', {}, `${fmtValue(st.name)} (${pileNumbers(st.piles).length} piles)`),
    s('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 7 }),
    // Labels in the right half go to the left of their dot, so they stay in the box.
    x > W / 2
      ? s('text', { x: (x - 10).toFixed(1), y: (y + 4).toFixed(1), 'text-anchor': 'end' }, fmtValue(st.name ?? st.id))
      : s('text', { x: (x + 10).toFixed(1), y: (y + 4).toFixed(1) }, fmtValue(st.name ?? st.id))));
  }
  return h('div', { class: 'map-box' }, svg,
    missing ? h('p', { class: 'muted small' }, `${missing} station(s) without coordinates are not drawn.`) : null);
}

function stationTable(stations) {
  const rows = stations.map((st) => {
    const pos = stationPosition(st);
    const piles = pileNumbers(st.piles);
    return row({ 'data-station': st.id }, [
      h('span', { class: 'mono' }, fmtValue(st.id)),
      stationLink(st.id, fmtValue(st.name)),
      fmtValue(st.address),
      pos ? `${pos.lat.toFixed(5)}, ${pos.lon.toFixed(5)}` : DASH,
      h('td', {}, h('span', { class: 'muted' }, `${piles.length} `),
        piles.slice(0, 4).map((p) => [pileLink(p), ' ']),
        piles.length > 4 ? stationLink(st.id, `+${piles.length - 4} more`) : null),
    ]);
  });
  return table(['ID', 'Name', 'Address', 'Coordinates', 'Piles'], rows, 'No stations.');
}

function pageStations(view) {
  const map = panelBody();
  const list = panelBody();
  view.append(panel('Map', map), panel('Stations', list));
  api('GET', '/v1/stations?limit=1000')
    .then((data) => {
      const stations = listOf(data, 'stations');
      replace(map, stationMap(stations));
      replace(list, stationTable(stations));
    })
    .catch((e) => { panelError(map, e, true); panelError(list, e, false); });
}

// ---------------------------------------------------------------------------
// Piles page
// ---------------------------------------------------------------------------

const PILE_STATES = ['', 'online', 'offline', 'idle', 'charging', 'faulted'];
const STATE_KIND = {
  online: 'ok', charging: 'ok', idle: 'info', offline: 'muted', faulted: 'bad', fault: 'bad',
};

function stateBadge(state, attrs) {
  return badge(fmtValue(state), STATE_KIND[state] || 'muted', attrs);
}

function field(labelText, input) {
  return h('label', { class: 'field' }, h('span', {}, labelText), input);
}

function select(id, options, value) {
  return h('select', { id, name: id, value },
    options.map(([optionValue, text]) => h('option', { value: optionValue }, text)));
}

function pileFilterForm(filters) {
  const form = h('form', { id: 'pile-filter', class: 'toolbar' },
    field('Search', h('input', { id: 'pile-search', type: 'search', placeholder: 'pile number or name', value: filters.q })),
    field('State', select('pile-state', PILE_STATES.map((st) => [st, st || 'any']), filters.state)),
    field('Station', h('input', { id: 'pile-station', placeholder: 'station id', value: filters.station, size: 8 })),
    field('Firmware', h('input', { id: 'pile-firmware', placeholder: 'firmware', value: filters.firmware, size: 12 })),
    h('button', { id: 'pile-apply', type: 'submit' }, 'Apply'),
    h('button', { id: 'pile-clear', type: 'button', class: 'secondary', onclick: () => go('#/piles') }, 'Clear'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const qs = queryString({
      q: $('#pile-search', form).value.trim(),
      state: $('#pile-state', form).value,
      station: $('#pile-station', form).value.trim(),
      firmware: $('#pile-firmware', form).value.trim(),
    });
    go(qs ? `#/piles?${qs}` : '#/piles');
  });
  return form;
}

function pileTable(piles) {
  const rows = piles.map((p) => row({ 'data-pile': p.pile_no, class: 'clickable' }, [
    pileLink(p.pile_no),
    fmtValue(p.name),
    stateBadge(p.state),
    p.online ? badge('online', 'ok') : badge('offline', 'muted'),
    p.enabled === false ? badge('disabled', 'warn') : 'yes',
    h('span', { class: 'mono' }, fmtValue(p.firmware)),
    stationLink(p.station),
    fmtTime(p.last_login_at),
  ]));
  for (const tr of rows) {
    tr.addEventListener('click', (event) => {
      if (!event.target.closest('a')) go(`#/piles/${enc(tr.dataset.pile)}`);
    });
  }
  return table(['Pile', 'Name', 'State', 'Connection', 'Enabled', 'Firmware', 'Station', 'Last login'], rows, 'No piles match.');
}

/** Previous/next buttons over a cursor API; `cursor` is {after, stack}. */
function pager(el, cursor, next, reload, idPrefix) {
  replace(el,
    h('button', {
      id: `${idPrefix}-prev`, type: 'button', class: 'secondary', disabled: !cursor.stack.length,
      onclick: () => { cursor.after = cursor.stack.pop() ?? null; reload(); },
    }, '\u2190 Previous'),
    h('span', { class: 'muted' }, `Page ${cursor.stack.length + 1}`),
    h('button', {
      id: `${idPrefix}-next`, type: 'button', class: 'secondary', disabled: next == null,
      onclick: () => { cursor.stack.push(cursor.after); cursor.after = next; reload(); },
    }, 'Next page \u2192'));
}

function pagePiles(view, { query }) {
  const filters = {
    q: query.get('q') || '',
    state: query.get('state') || '',
    station: query.get('station') || '',
    firmware: query.get('firmware') || '',
  };
  const body = panelBody();
  const pages = h('div', { class: 'pager' });
  view.append(pileFilterForm(filters), panel('Piles', body), pages);
  const cursor = { after: null, stack: [] };
  const load = async () => {
    const url = `/v1/fleet/piles?${queryString({ ...filters, after: cursor.after, limit: 50 })}`;
    const data = await loadPanel(body, url, (d) => pileTable(listOf(d, 'piles')), false);
    pager(pages, cursor, data && !Array.isArray(data) ? data.next ?? null : null, load, 'pile');
  };
  load();
}

// ---------------------------------------------------------------------------
// Pile page
// ---------------------------------------------------------------------------

function pileHeader(detail) {
  const pile = { ...(detail.pile || {}), ...(detail.summary || {}) };
  // The store's view (any instance's logins) when there is one; else the answering
  // instance's own connection table.
  const online = detail.summary ? detail.summary.online === true : detail.online != null;
  return h('div', { class: 'pile-head' },
    h('h2', {}, h('span', { class: 'mono' }, fmtValue(pile.pile_no)), pile.name ? ` ${pile.name}` : ''),
    badge(online ? 'online' : 'offline', online ? 'ok' : 'muted', { 'data-field': 'online' }),
    stateBadge(pile.state, { 'data-field': 'pile-state' }),
    pile.enabled === false ? badge('disabled', 'warn') : null);
}

function pileInfo(detail) {
  const pile = { ...(detail.pile || {}), ...(detail.summary || {}) };
  const session = detail.online;
  return h('dl', { class: 'kv' },
    h('dt', {}, 'State'), h('dd', {}, fmtValue(pile.state)),
    h('dt', {}, 'Enabled'), h('dd', {}, yesNo(pile.enabled !== false)),
    h('dt', {}, 'Firmware'), h('dd', { class: 'mono' }, fmtValue(pile.firmware)),
    h('dt', {}, 'Station'), h('dd', {}, stationLink(pile.station)),
    h('dt', {}, 'Last login'), h('dd', {}, fmtTime(pile.last_login_at)),
    h('dt', {}, 'Connection'), h('dd', {}, session
      ? `edge ${fmtValue(session.edge)} \u00b7 executor ${fmtValue(session.executor)} \u00b7 session ${fmtValue(session.session_id)}`
      : 'not connected'));
}

function faultText(value) {
  if (value == null) return DASH;
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return n === 0 ? 'none' : `0x${n.toString(16).padStart(4, '0')}`;
}

function gunTable(guns) {
  const sorted = [...guns].sort((a, b) => byNatural(a.gun_no, b.gun_no));
  const rows = sorted.map((gun) => {
    const d = gun.data || {};
    const status = gunStatus(gun.status);
    const volts = Number(d.output_voltage);
    const amps = Number(d.output_current);
    const power = Number.isFinite(volts) && Number.isFinite(amps) && d.output_voltage != null ? (volts * amps) / 1000 : null;
    return row({ 'data-gun': gun.gun_no }, [
      h('strong', {}, fmtValue(gun.gun_no)),
      badge(status, STATE_KIND[status] || (status === 'idle' ? 'info' : 'muted'), { 'data-field': 'status' }),
      h('td', { class: 'num', 'data-field': 'voltage' }, fmtNum(d.output_voltage, 1)),
      h('td', { class: 'num', 'data-field': 'current' }, fmtNum(d.output_current, 1)),
      num(fmtNum(power, 2)),
      h('td', { class: 'num', 'data-field': 'soc' }, fmtNum(d.soc)),
      h('td', { class: 'num', 'data-field': 'energy' }, fmtNum(d.energy, 3)),
      num(fmtNum(d.amount, 2)),
      num(fmtNum(d.gun_temperature)),
      faultText(d.hardware_faults),
      fmtTime(gun.updated_at),
    ]);
  });
  return table(['Gun', 'Status', 'Voltage V', 'Current A', 'Power kW', 'SOC %', 'Energy kWh', 'Amount \u00a5', 'Temp \u00b0C', 'Faults', 'Updated'],
    rows, 'No gun data yet.');
}

function openOrderTable(orders) {
  const rows = orders.map((o) => row({ 'data-order': o.trade_no }, [
    tradeLink(o.trade_no), fmtValue(o.gun_no), fmtValue(o.state), fmtValue(o.origin), fmtTime(o.created_at),
  ]));
  return table(['Trade no', 'Gun', 'State', 'Origin', 'Created'], rows, 'No open orders.');
}

function recordTable(records) {
  const rows = records.map((r) => row({ 'data-record': r.trade_no }, [
    tradeLink(r.trade_no),
    fmtValue(r.gun_no),
    fmtTime(r.start_time),
    fmtTime(r.end_time),
    num(fmtScaled(r.total_energy, 3)),
    num(fmtScaled(r.total_amount, 2)),
    fmtValue(r.stop_reason),
  ]));
  return table(['Trade no', 'Gun', 'Start', 'End', 'Energy kWh', 'Amount \u00a5', 'Stop reason'], rows, 'No records.');
}

const CHARTS = [
  { key: 'voltage', label: 'Voltage', unit: 'V', digits: 1 },
  { key: 'current', label: 'Current', unit: 'A', digits: 1 },
  { key: 'power_kw', label: 'Power', unit: 'kW', digits: 2 },
  { key: 'soc', label: 'SOC', unit: '%', digits: 0 },
];
const GAP_MS = 10 * 60 * 1000; // a longer gap between samples breaks the line

function chartLines(points, x, y) {
  const lines = [];
  let current = [];
  let last = null;
  for (const p of points) {
    if (last != null && p.at - last > GAP_MS && current.length) {
      lines.push(current);
      current = [];
    }
    current.push(`${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`);
    last = p.at;
  }
  if (current.length) lines.push(current);
  return lines;
}

function lineChart(spec, samples, guns, from, to) {
  const W = 480;
  const H = 160;
  const L = 48;
  const R = 10;
  const T = 10;
  const B = 22;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${spec.label} (${spec.unit})` },
    s('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }),
    s('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }),
    s('text', { x: L, y: H - 6, class: 'tick' }, fmtClock(from)),
    s('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'tick' }, fmtClock(to)));
  const values = [];
  const byGun = new Map(guns.map((g) => [g, []]));
  for (const sample of samples) {
    const v = sample[spec.key];
    if (v == null || !Number.isFinite(Number(v)) || !Number.isFinite(Number(sample.at))) continue;
    const point = { at: Number(sample.at), value: Number(v) };
    values.push(point.value);
    byGun.get(String(sample.gun_no)).push(point);
  }
  if (!values.length) {
    svg.append(s('text', { x: (L + W - R) / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'no samples'));
  } else {
    let min = values.reduce((a, b) => Math.min(a, b));
    let max = values.reduce((a, b) => Math.max(a, b));
    if (min === max) { min -= 1; max += 1; }
    const x = (at) => L + ((at - from) / (to - from)) * (W - L - R);
    const y = (v) => T + ((max - v) / (max - min)) * (H - T - B);
    svg.append(
      s('text', { x: L - 4, y: T + 4, 'text-anchor': 'end', class: 'tick' }, fmtNum(max, spec.digits)),
      s('text', { x: L - 4, y: H - B, 'text-anchor': 'end', class: 'tick' }, fmtNum(min, spec.digits)));
    guns.forEach((gun, i) => {
      const points = byGun.get(gun).sort((a, b) => a.at - b.at);
      for (const line of chartLines(points, x, y)) {
        svg.append(line.length === 1
          ? s('circle', { cx: line[0].split(',')[0], cy: line[0].split(',')[1], r: 1.5, class: `dot gun-c${i % 6}` })
          : s('polyline', { points: line.join(' '), class: `line gun-c${i % 6}` }));
      }
    });
  }
  return h('figure', { class: 'chart-box', 'data-chart': spec.key },
    h('figcaption', {}, `${spec.label} (${spec.unit})`), svg);
}

function sampleCharts(samples, from, to) {
  const list = listOf(samples, 'samples');
  const guns = [...new Set(list.map((p) => String(p.gun_no)))].sort(byNatural);
  return [
    h('div', { class: 'legend' }, guns.map((gun, i) =>
      h('span', { class: 'legend-item' }, h('span', { class: `swatch gun-c${i % 6}` }), `Gun ${gun}`))),
    h('div', { class: 'charts' }, CHARTS.map((spec) => lineChart(spec, list, guns, from, to))),
  ];
}

function pagePile(view, { params }) {
  const pileNo = params[0];
  const base = `/v1/piles/${enc(pileNo)}`;
  const head = h('div', {}, loading());
  const info = panelBody();
  const guns = panelBody();
  const charts = panelBody();
  const orders = panelBody();
  const records = panelBody();
  const alarms = panelBody();
  view.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/piles' }, '\u2190 All piles')),
    head,
    h('div', { class: 'columns' }, panel('Pile', info), panel('Open orders', orders)),
    panel('Guns', guns),
    panel('Last 6 hours', charts),
    panel('Open alarms', alarms),
    panel('Recent records', records));

  const loadDetail = async (quiet) => {
    try {
      const detail = await api('GET', base);
      updatePanel(head, detail, pileHeader);
      updatePanel(info, detail, pileInfo);
      updatePanel(guns, detail.guns || [], gunTable);
      updatePanel(orders, detail.open_orders || [], openOrderTable);
    } catch (e) {
      replace(head);
      drawn.delete(head);
      panelError(info, e, quiet);
      for (const el of [guns, orders]) panelError(el, e, true);
    }
  };
  const loadSamples = async (quiet) => {
    const to = Date.now();
    const from = to - 6 * 3600 * 1000;
    try {
      const samples = await api('GET', `${base}/samples?${queryString({ from, to })}`);
      drawn.delete(charts);
      replace(charts, sampleCharts(samples, from, to));
    } catch (e) {
      panelError(charts, e, quiet);
    }
  };
  const loadRecords = (quiet) => loadPanel(records, `${base}/records?limit=20`, (d) => recordTable(listOf(d, 'records')), quiet);
  const loadAlarms = (quiet) => loadPanel(alarms, `/v1/alarms?${queryString({ pile: pileNo, state: 'active' })}`,
    (d) => alarmTable(listOf(d, 'alarms'), { onChanged: () => loadAlarms(false) }), quiet);

  let slowAt = 0;
  const loadSlow = (quiet) => {
    slowAt = Date.now();
    return Promise.all([loadSamples(quiet), loadRecords(quiet)]);
  };
  loadDetail(false);
  loadAlarms(false);
  loadSlow(false);
  return {
    live: () => Promise.all([
      loadDetail(true),
      loadAlarms(true),
      Date.now() - slowAt > 15000 ? loadSlow(true) : null,
    ]),
  };
}

// ---------------------------------------------------------------------------
// Orders page
// ---------------------------------------------------------------------------

function orderTable(orders, onSelect, empty) {
  const rows = orders.map((o) => row({ 'data-order': o.trade_no }, [
    h('button', { type: 'button', class: 'link mono', 'data-action': 'show-order', onclick: () => onSelect(o.trade_no) }, fmtValue(o.trade_no)),
    pileLink(o.pile_no),
    fmtValue(o.gun_no),
    fmtValue(o.state),
    fmtValue(o.origin),
    fmtTime(o.created_at),
    fmtTime(o.updated_at),
    o.failure == null ? DASH : h('span', { class: 'bad-text' }, fmtValue(o.failure)),
  ]));
  return table(['Trade no', 'Pile', 'Gun', 'State', 'Origin', 'Created', 'Updated', 'Failure'], rows, empty);
}

function frameName(type) {
  const n = Number(type);
  return typeof type === 'number' && Number.isInteger(n) ? `0x${n.toString(16).padStart(2, '0').toUpperCase()}` : fmtValue(type);
}

function orderDetail(data) {
  const order = (data && data.order) || data || {};
  const events = (data && Array.isArray(data.events)) ? data.events : [];
  const record = data && data.record;
  const eventRows = events.map((ev) => row({}, [
    h('span', { class: 'mono' }, frameName(ev.frame_type)),
    fmtTime(ev.at),
    h('td', {}, h('pre', { class: 'json' }, JSON.stringify(ev.fields ?? null, null, 1))),
  ]));
  return [
    h('h3', {}, 'Order'),
    definitionList(order, smartFormat(false)),
    h('h3', {}, 'Events'),
    table(['Frame', 'At', 'Fields'], eventRows, 'No events.'),
    h('h3', {}, 'Record'),
    record ? definitionList(record, smartFormat(true)) : h('p', { class: 'muted' }, 'No record yet.'),
  ];
}

function pageOrders(view, { query }) {
  const live = panelBody();
  const past = panelBody();
  const detail = panelBody();
  let selected = query.get('trade') || null;
  const detailPanel = panel('Order', detail,
    h('button', { type: 'button', class: 'secondary', onclick: () => { selected = null; detailPanel.hidden = true; } }, 'Close'));
  detailPanel.classList.add('detail');
  detailPanel.hidden = !selected;
  view.append(detailPanel, panel('Live orders', live), panel('Recent orders', past));

  const loadDetail = (quiet) => loadPanel(detail, `/v1/orders/${enc(selected)}`, orderDetail, quiet);
  const select = (tradeNo) => {
    selected = tradeNo;
    drawn.delete(detail);
    replace(detail, loading());
    detailPanel.querySelector('h2').textContent = `Order ${tradeNo}`;
    detailPanel.hidden = false;
    detailPanel.scrollIntoView({ block: 'start', behavior: 'smooth' });
    loadDetail(false);
  };
  const loadLive = (quiet) => loadPanel(live, '/v1/orders?open=1&limit=100',
    (d) => orderTable(listOf(d, 'orders'), select, 'No open orders.'), quiet);
  const loadPast = (quiet) => loadPanel(past, '/v1/orders?recent=1&limit=50',
    (d) => orderTable(listOf(d, 'orders'), select, 'No orders.'), quiet);

  loadLive(false);
  loadPast(false);
  if (selected) select(selected);
  return {
    live: () => Promise.all([loadLive(true), loadPast(true), selected ? loadDetail(true) : null]),
  };
}

// ---------------------------------------------------------------------------
// Accounts page (only linked when GET /v1/accounts answers 200)
// ---------------------------------------------------------------------------

function pageAccounts(view) {
  const body = panelBody();
  view.append(panel('Accounts', body));
  loadPanel(body, '/v1/accounts?limit=50', (data) => {
    const rows = listOf(data, 'accounts').map((a) => row({ 'data-account': a.id }, [
      h('span', { class: 'mono' }, fmtValue(a.id)),
      fmtValue(a.name),
      fmtValue(a.state),
      num(fmtScaled(a.balance, 2)),
    ]));
    return table(['ID', 'Name', 'State', 'Balance \u00a5'], rows, 'No accounts.');
  }, false);
}

// ---------------------------------------------------------------------------
// Alarms
// ---------------------------------------------------------------------------

const SEVERITY_KIND = { critical: 'bad', warning: 'warn', info: 'info' };
const ALARM_STATE_KIND = { open: 'bad', acknowledged: 'warn', resolved: 'ok' };

// A button's POST (acknowledge an alarm, drain an edge, ...): disabled while it runs,
// then the page refreshes.
async function buttonPost(path, button, onChanged) {
  button.disabled = true;
  try {
    await api('POST', path, {});
  } catch (e) {
    reportError(e);
  } finally {
    button.disabled = false;
  }
  if (onChanged) await onChanged();
}

function alarmAction(id, action, button, onChanged) {
  return buttonPost(`/v1/alarms/${enc(id)}/${action}`, button, onChanged);
}

function alarmActions(alarm, onChanged) {
  const buttons = [];
  if (alarm.state === 'open') {
    buttons.push(h('button', { type: 'button', class: 'small', 'data-action': 'ack', onclick: (e) => alarmAction(alarm.id, 'ack', e.currentTarget, onChanged) }, 'Ack'));
  }
  if (alarm.state !== 'resolved') {
    buttons.push(h('button', { type: 'button', class: 'small secondary', 'data-action': 'resolve', onclick: (e) => alarmAction(alarm.id, 'resolve', e.currentTarget, onChanged) }, 'Resolve'));
  }
  return h('td', { class: 'actions' }, buttons);
}

function alarmStateCell(alarm) {
  let who = null;
  if (alarm.state === 'acknowledged' && alarm.acked_by) who = `by ${alarm.acked_by}, ${fmtTime(alarm.acked_at)}`;
  if (alarm.state === 'resolved' && (alarm.resolved_by || alarm.resolved_at)) {
    who = `${alarm.resolved_by ? `by ${alarm.resolved_by}, ` : ''}${fmtTime(alarm.resolved_at)}`;
  }
  return h('td', {},
    badge(fmtValue(alarm.state), ALARM_STATE_KIND[alarm.state] || 'muted', { 'data-field': 'state' }),
    who ? h('div', { class: 'small muted' }, who) : null);
}

function alarmText(alarm) {
  const text = alarm.text || alarm.subject;
  return h('td', { class: 'wrap' },
    alarm.subject && alarm.text && alarm.subject !== alarm.text ? h('div', { class: 'subject' }, alarm.subject) : null,
    fmtValue(text));
}

function alarmPile(alarm) {
  return h('td', {}, pileLink(alarm.pile_no), alarm.gun_no != null ? h('span', { class: 'muted' }, ` gun ${alarm.gun_no}`) : null);
}

/** Alarm rows; compact (overview) drops the actions and the first-seen time. */
function alarmTable(alarms, { compact = false, onChanged = null } = {}) {
  const rows = alarms.map((a) => row({ 'data-alarm': a.id, class: `sev-${a.severity}` }, [
    badge(fmtValue(a.severity), SEVERITY_KIND[a.severity] || 'muted', { 'data-field': 'severity' }),
    h('span', { class: 'mono small' }, fmtValue(a.kind)),
    alarmPile(a),
    alarmText(a),
    num(fmtNum(a.count)),
    compact ? null : fmtTime(a.first_at),
    fmtTime(a.last_at),
    alarmStateCell(a),
    compact ? null : alarmActions(a, onChanged),
  ].filter((cell) => cell !== null)));
  const headers = compact
    ? ['Severity', 'Kind', 'Pile', 'Text', 'Count', 'Last', 'State']
    : ['Severity', 'Kind', 'Pile', 'Text', 'Count', 'First', 'Last', 'State', 'Actions'];
  return table(headers, rows, 'No alarms.');
}

const ALARM_STATES = ['active', 'open', 'acknowledged', 'resolved', 'all'];

function alarmFilterForm(filters) {
  const form = h('form', { id: 'alarm-filter', class: 'toolbar' },
    field('State', select('alarm-state', ALARM_STATES.map((st) => [st, st]), filters.state)),
    field('Pile', h('input', { id: 'alarm-pile', placeholder: 'pile number', value: filters.pile, size: 16 })),
    field('Kind', h('input', { id: 'alarm-kind', placeholder: 'e.g. pile_offline', value: filters.kind, size: 16 })),
    h('button', { id: 'alarm-apply', type: 'submit' }, 'Apply'));
  const apply = () => {
    const qs = queryString({
      state: $('#alarm-state', form).value,
      pile: $('#alarm-pile', form).value.trim(),
      kind: $('#alarm-kind', form).value.trim(),
    });
    go(`#/alarms?${qs}`);
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); apply(); });
  $('#alarm-state', form).addEventListener('change', apply);
  return form;
}

function pageAlarms(view, { query }) {
  const filters = {
    state: query.get('state') || 'active',
    pile: query.get('pile') || '',
    kind: query.get('kind') || '',
  };
  const body = panelBody();
  const pages = h('div', { class: 'pager' });
  view.append(alarmFilterForm(filters), panel('Alarms', body), pages);
  const cursor = { after: null, stack: [] };
  let shownNext; // redraw the pager only when it changes (live refreshes come every 2 s)
  const load = async (quiet) => {
    const url = `/v1/alarms?${queryString({ ...filters, after: cursor.after, limit: 50 })}`;
    const data = await loadPanel(body, url,
      (d) => alarmTable(listOf(d, 'alarms'), { onChanged: () => load(false) }), quiet);
    if (data === undefined && quiet) return;
    const next = data && !Array.isArray(data) ? data.next ?? null : null;
    if (quiet && next === shownNext) return;
    shownNext = next;
    pager(pages, cursor, next, () => load(false), 'alarm');
  };
  load(false);
  return { live: () => load(true) };
}

// ---------------------------------------------------------------------------
// Platform page
// ---------------------------------------------------------------------------

function edgeAction(id, action, button, onChanged) {
  return buttonPost(`/v1/admin/edges/${enc(id)}/${action}`, button, onChanged);
}

function overviewEdge(id) {
  const edges = (app.overview && Array.isArray(app.overview.edges)) ? app.overview.edges : [];
  return edges.find((e) => String(e.id) === String(id));
}

function edgeTable(edges, onChanged) {
  const rows = edges.map((edge) => {
    const draining = Boolean(edge.draining);
    const action = draining ? 'undrain' : 'drain';
    const live = overviewEdge(edge.id);
    return row({ 'data-edge': edge.id }, [
      h('span', { class: 'mono' }, fmtValue(edge.id)),
      edge.live === false ? badge('down', 'bad') : badge('live', 'ok'),
      h('td', {}, h('span', { 'data-field': 'draining', class: draining ? 'warn-text' : '' }, yesNo(draining))),
      yesNo(edge.leaving),
      num(`${fmtNum(edge.sessions)} / ${fmtNum(edge.capacity)}`),
      h('td', { 'data-field': 'executors' }, chips(live && live.executors)),
      h('td', { class: 'mono small' }, fmtValue(edge.tcp_address), h('br'), fmtValue(edge.tls_address)),
      h('span', { class: 'mono small' }, fmtValue(edge.version)),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: draining ? 'small' : 'small secondary', 'data-action': action,
        onclick: (e) => edgeAction(edge.id, action, e.currentTarget, onChanged),
      }, draining ? 'Undrain' : 'Drain')),
    ]);
  });
  return table(['Edge', 'Live', 'Draining', 'Leaving', 'Sessions / capacity', 'Sessions per executor', 'TCP / TLS', 'Version', ''], rows, 'No edges.');
}

function updateExecutors(root) {
  for (const tr of root.querySelectorAll('tr[data-edge]')) {
    const cell = $('[data-field="executors"]', tr);
    const live = overviewEdge(tr.dataset.edge);
    if (cell) replace(cell, chips(live && live.executors));
  }
}

function appTable(apps) {
  const rows = apps.map((a) => row({ 'data-app': a.id }, [
    h('span', { class: 'mono' }, fmtValue(a.id)),
    num(`${fmtNum(a.sessions)} / ${fmtNum(a.capacity)}`),
    num(fmtNum(Array.isArray(a.shards) ? a.shards.length : a.shards)),
    yesNo(a.leaving),
    h('td', { class: 'mono small' }, fmtValue(a.grpc_address), h('br'), fmtValue(a.http_address)),
    h('span', { class: 'mono small' }, fmtValue(a.version)),
  ]));
  return table(['App', 'Sessions / capacity', 'Shards', 'Leaving', 'gRPC / HTTP', 'Version'], rows, 'No app servers.');
}

function statusList(status) {
  if (!status || typeof status !== 'object') return h('pre', { class: 'json' }, fmtValue(status));
  return definitionList(status, smartFormat(false));
}

/** Shards per app, from [{shard, app}], {shard: app}, {app: [shards]} or {app: count}; null if unknown. */
// GET /v1/admin/shards: {shard_count, per_app: {app: shards}, unowned, owners: [...]}.
function shardCounts(data) {
  if (!data || typeof data !== 'object' || !data.per_app || typeof data.per_app !== 'object') return null;
  const counts = new Map(Object.entries(data.per_app).map(([app, n]) => [app, Number(n) || 0]));
  if (data.unowned) counts.set('unowned', Number(data.unowned) || 0);
  return counts;
}

function shardSummary(data) {
  const counts = shardCounts(data);
  const raw = h('details', {}, h('summary', {}, 'Raw'), h('pre', { class: 'json' }, JSON.stringify(data, null, 1)));
  if (!counts) return h('pre', { class: 'json' }, JSON.stringify(data, null, 1));
  const sorted = [...counts.entries()].sort((a, b) => byNatural(a[0], b[0]));
  const total = sorted.reduce((sum, [, n]) => sum + n, 0);
  const rows = sorted.map(([appId, n]) => row({ 'data-shard-app': appId }, [h('span', { class: 'mono' }, appId), num(fmtNum(n))]));
  if (rows.length) rows.push(row({ class: 'total' }, [h('strong', {}, 'Total'), num(fmtNum(total))]));
  return [table(['App', 'Shards'], rows, 'No shards.'), raw];
}

function pagePlatform(view) {
  const status = panelBody();
  const edges = panelBody();
  const apps = panelBody();
  const shards = panelBody();
  view.append(
    panel('Edges', edges),
    panel('App servers', apps),
    h('div', { class: 'columns' }, panel('Status', status), panel('Shards', shards)));

  const loadEdges = (quiet) => loadPanel(edges, '/v1/admin/edges',
    (d) => edgeTable(listOf(d, 'edges'), () => loadEdges(false)), quiet);
  const loadApps = (quiet) => loadPanel(apps, '/v1/admin/apps', (d) => appTable(listOf(d, 'apps')), quiet);
  const loadStatus = (quiet) => loadPanel(status, '/v1/admin/status', statusList, quiet);
  const loadShards = (quiet) => loadPanel(shards, '/v1/admin/shards', shardSummary, quiet);
  const loadAll = (quiet) => Promise.all([loadEdges(quiet), loadApps(quiet), loadStatus(quiet), loadShards(quiet)]);

  loadAll(false);
  return { live: () => loadAll(true), overview: () => updateExecutors(edges) };
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

async function boot() {
  $('#login').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', onLogout);
  $('#error-close').addEventListener('click', clearError);
  window.addEventListener('hashchange', route);
  let me;
  try {
    me = await api('GET', '/v1/whoami', undefined, { noAuthRedirect: true });
  } catch (e) {
    if (e.status !== 401) showError(e.message);
    showLogin();
    return;
  }
  enterApp(me);
  const { path } = parseHash();
  if (!location.hash || path === '/' || path === '/login') history.replaceState(null, '', '#/overview');
  route();
}

boot();
