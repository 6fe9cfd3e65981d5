// @ts-check
/**
 * The live dashboard served at `/`: prices, candles, the order book, trades and the signed-in
 * user's private events, over one Tickstream connection (see tickstream.js).
 *
 * Page parameters: `?token=<JWT>` (kept for this tab in sessionStorage, then removed from the
 * address bar), `?symbol=BTCUSDT` (initial selection), `?interval=1m`, `?ws=<url>` (another
 * gateway).
 *
 * From the gateway first (docs/http-api.md): `/api/info` gives the configured SYMBOLS, listed
 * first and in their order (others are added as their events arrive); the selection is the
 * `?symbol=` given, else the user's last choice (localStorage), else the first of SYMBOLS.
 * `/api/schemas` says which types are private (subscribed to once signed in). `/api/candles`
 * gives each symbol's retained closed candles, so the chart has its history at once; it is
 * merged with the live candles and kept across reconnects (fetched again only when the stream's
 * history was lost, a reset).
 *
 * Rendering: events only update state and mark what changed; one requestAnimationFrame pass
 * redraws the changed parts, so thousands of events per second cost one paint per frame.
 */
import { connect } from './tickstream.js';

/** @typedef {import('./tickstream.js').TickstreamEvent} TickstreamEvent */
/** @typedef {import('./tickstream.js').TickstreamClient} TickstreamClient */
/** @typedef {import('./tickstream.js').Status} Status */

/** The contract's default private types: used only when the gateway cannot be asked. */
const DEFAULT_PRIVATE_TYPES = ['trade_executed', 'portfolio_update', 'risk_event'];
const HISTORY_CANDLES = 500; // closed candles asked per symbol and interval
const LEVELS = 25; // order book rows per side at most (as many as fit are shown)
const TAPE_ROWS = 30;
const SERIES_MAX = 600; // candles kept per symbol and interval
const ACTIVITY_MAX = 200;
const SPARK_POINTS = 60; // one point per second
// Trades are conflated by the gateway: at most one price_update per symbol per 100 ms, the
// newest, so a busy market costs this page 10 events per symbol per second, not thousands.
// (market_data is not conflated: per symbol it carries the candles of every interval and the
// tickers, and conflating by symbol would keep only the newest of those, losing candles.)
const PRICE_CONFLATE_MS = 100;
const TOKEN_KEY = 'tickstream.token';
const SYMBOL_KEY = 'tickstream.symbol'; // the user's last choice (localStorage)
const COLORS = {
  up: '#2ebd85', down: '#f6465d', grid: '#1a202b', axis: '#7c8699', text: '#d7dce5',
  cross: '#4a5263', label: '#161b25', volUp: 'rgba(46,189,133,0.35)', volDown: 'rgba(246,70,93,0.35)',
};

// --- page parameters ------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const wsUrl = params.get('ws') || '/ws';
/** The gateway's HTTP origin: the one the WebSocket goes to. */
const httpBase = (() => {
  const u = new URL(wsUrl, location.href);
  return `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}`;
})();
let token = params.get('token') || sessionStorage.getItem(TOKEN_KEY) || '';
if (params.has('token')) {
  sessionStorage.setItem(TOKEN_KEY, token);
  params.delete('token'); // keep the token out of the address bar, history and screenshots
  history.replaceState(null, '', location.pathname + (params.toString() ? `?${params}` : '') + location.hash);
}

// --- state ----------------------------------------------------------------------------------

/**
 * @typedef {object} Market
 * @property {string} symbol
 * @property {number|null} price
 * @property {number} dir 1 up, -1 down, 0 unchanged
 * @property {number} decimals
 * @property {number|null} changePct 24 h change from the ticker, in percent
 * @property {number|null} change 24 h change from the ticker, in price
 * @property {number|null} volume 24 h base volume from the ticker
 * @property {number} trades trades seen by this page
 * @property {number[]} spark last price of each second
 * @property {number} sparkSecond
 * @property {HTMLElement|null} row
 * @property {number} flashAt
 */

/** @type {Map<string, Market>} */
const markets = new Map();
/** @type {string|null} */
// A malformed ?symbol= is ignored (the client refuses invalid symbols with a TypeError).
const asked = params.get('symbol')?.toUpperCase();
let selected = asked && /^[A-Z0-9][A-Z0-9._:/-]{0,63}$/.test(asked) ? asked : null;
/** @type {string[]} SYMBOLS as the gateway has them (listed first, in this order) */
let configured = [];
/** @type {string[]} the private types, from the gateway's schema index */
let privateTypes = [];
/** Until the gateway said which symbols it serves, the first arrival is not selected. */
let infoPending = true;
/** @type {Set<string>} symbols whose candle history was asked for */
const historyAsked = new Set();
/** @type {Map<string, Map<string, Map<number, Candle>>>} symbol -> interval -> open time -> candle */
const candles = new Map();
/** @type {string|null} */
let chosenInterval = params.get('interval');
/** @type {Map<string, {bids: number[][], asks: number[][]}>} */
const books = new Map();
/** @typedef {{price: number, volume: number, side: string, t: number}} Trade */
/** @type {Map<string, Trade[]>} the latest trades of each symbol, newest first */
const tapes = new Map();
let eventCount = 0;
let lastCount = 0;

/** @typedef {{t: number, o: number, h: number, l: number, c: number, v: number, closed: boolean}} Candle */

const dirty = { markets: new Set(), chart: false, book: false, tape: false, header: false, intervals: false };
let frameRequested = false;

function schedule() {
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

// --- formatting -----------------------------------------------------------------------------

/** @type {Map<number, Intl.NumberFormat>} */
const formats = new Map();
/** @param {number} digits */
function fixed(digits) {
  let f = formats.get(digits);
  if (!f) {
    f = new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
    formats.set(digits, f);
  }
  return f;
}
/** @param {number} price */
function decimalsFor(price) {
  const a = Math.abs(price);
  return a >= 1000 ? 2 : a >= 10 ? 3 : a >= 1 ? 4 : a >= 0.01 ? 6 : 8;
}
/** @param {number|null|undefined} value @param {number} decimals */
function fmtPrice(value, decimals) {
  return value == null || !Number.isFinite(value) ? '—' : fixed(decimals).format(value);
}
/** @param {number} q */
function fmtQty(q) {
  if (!Number.isFinite(q)) return '—';
  if (q >= 1e9) return `${fixed(2).format(q / 1e9)}B`;
  if (q >= 1e6) return `${fixed(2).format(q / 1e6)}M`;
  if (q >= 1e4) return `${fixed(2).format(q / 1e3)}K`;
  return fixed(4).format(q);
}
/** @param {number} q a volume, always short */
function fmtCompact(q) {
  if (!Number.isFinite(q)) return '—';
  if (q >= 1e9) return `${fixed(2).format(q / 1e9)}B`;
  if (q >= 1e6) return `${fixed(2).format(q / 1e6)}M`;
  if (q >= 1e3) return `${fixed(2).format(q / 1e3)}K`;
  return fixed(q >= 100 ? 1 : 2).format(q);
}
/**
 * A change in percent: two decimals, three when smaller than 0.01% (the ticker has three), so
 * a quiet market's +0.004% does not read as no change.
 * @param {number|null} pct
 */
function fmtPct(pct) {
  if (pct == null || !Number.isFinite(pct)) return '—';
  const a = Math.abs(pct);
  if (a < 0.0005) return '0.00%';
  return `${pct > 0 ? '+' : '-'}${fixed(a < 0.01 ? 3 : 2).format(a)}%`;
}
/** @param {number|null} pct @returns {string} the colour class of a change */
function trendClass(pct) {
  if (pct == null || !Number.isFinite(pct) || Math.abs(pct) < 0.0005) return 'muted';
  return pct > 0 ? 'up' : 'down';
}
/** @param {number} ms */
function fmtTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
/** @param {number} n */
function pad(n) {
  return n < 10 ? `0${n}` : String(n);
}
/** @param {unknown} value */
function num(value) {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(n) ? n : NaN;
}
/** @param {unknown} value */
function timeMs(value) {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') {
    const n = Number(value);
    return Number.isFinite(n) ? n : Date.parse(value);
  }
  return NaN;
}

/** @param {string} id */
function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el;
}

// --- markets --------------------------------------------------------------------------------

/** @param {string} symbol @returns {Market} */
function market(symbol) {
  let m = markets.get(symbol);
  if (m) return m;
  m = { symbol, price: null, dir: 0, decimals: 2, changePct: null, change: null, volume: null, trades: 0, spark: [],
    sparkSecond: 0, row: null, flashAt: 0 };
  markets.set(symbol, m);
  addMarketRow(m);
  if (selected === null && !infoPending) select(symbol);
  loadHistory(symbol);
  return m;
}

/** @param {Market} m */
function addMarketRow(m) {
  const row = document.createElement('div');
  row.className = 'market';
  row.dataset.symbol = m.symbol;
  row.innerHTML = '<div class="sym"><span></span><small>—</small></div><span class="price num">—</span>'
    + '<span class="chg num muted">—</span><canvas width="112" height="44"></canvas>';
  /** @type {HTMLElement} */ (row.querySelector('.sym span')).textContent = m.symbol;
  row.addEventListener('click', () => choose(m.symbol));
  if (m.symbol === selected) row.classList.add('selected');
  m.row = row;
  // SYMBOLS first, in their order, then the others alphabetically: a new symbol never
  // reorders the others
  const list = $('markets');
  const after = Array.from(list.children).find((el) => before(m.symbol, /** @type {HTMLElement} */ (el).dataset.symbol ?? ''));
  list.insertBefore(row, after ?? null);
  $('markets-empty').hidden = true;
  $('sym-count').textContent = `${markets.size} symbol${markets.size === 1 ? '' : 's'}`;
}

/** @param {string} a @param {string} b @returns {boolean} whether row a is listed before row b */
function before(a, b) {
  const rank = (/** @type {string} */ s) => {
    const i = configured.indexOf(s);
    return i < 0 ? Infinity : i;
  };
  return rank(a) !== rank(b) ? rank(a) < rank(b) : a < b;
}

/** @param {TickstreamEvent} e */
function onPrice(e) {
  eventCount++;
  const d = e.data;
  const symbol = (e.symbol || d.symbol || '').toUpperCase();
  const price = num(d.price);
  if (!symbol || !Number.isFinite(price)) return;
  const m = market(symbol);
  if (m.price === null) m.decimals = decimalsFor(price);
  m.dir = m.price === null || price === m.price ? m.dir : price > m.price ? 1 : -1;
  m.price = price;
  m.trades++;
  const second = Math.floor((e.ts ?? Date.now()) / 1000);
  if (second !== m.sparkSecond || m.spark.length === 0) {
    m.spark.push(price);
    if (m.spark.length > SPARK_POINTS) m.spark.shift();
    m.sparkSecond = second;
  } else {
    m.spark[m.spark.length - 1] = price;
  }
  dirty.markets.add(symbol);
  let tape = tapes.get(symbol);
  if (!tape) tapes.set(symbol, (tape = []));
  tape.unshift({ price, volume: num(d.volume), side: String(d.side || ''), t: timeMs(d.timestamp) || e.ts || Date.now() });
  if (tape.length > TAPE_ROWS * 2) tape.length = TAPE_ROWS;
  if (symbol === selected) {
    dirty.chart = true; // the last-price line
    dirty.tape = true;
    dirty.header = true;
  }
  schedule();
}

/** @param {TickstreamEvent} e */
function onMarketData(e) {
  eventCount++;
  const d = e.data;
  const symbol = (e.symbol || d.symbol || '').toUpperCase();
  if (!symbol) return;
  if (d.kind === 'candle') {
    if (!addCandle(symbol, d)) return;
  } else if (d.kind === 'ticker') {
    const m = market(symbol);
    m.changePct = Number.isFinite(num(d.change_percent)) ? num(d.change_percent) : null;
    m.change = Number.isFinite(num(d.change)) ? num(d.change) : null;
    m.volume = Number.isFinite(num(d.volume)) ? num(d.volume) : null;
    if (m.price === null && Number.isFinite(num(d.last))) {
      m.price = num(d.last);
      m.decimals = decimalsFor(m.price);
    }
    dirty.markets.add(symbol);
    if (symbol === selected) dirty.header = true;
  } else {
    return;
  }
  schedule();
}

/**
 * Merge one candle (live or from history) into its series; a final (closed) candle is never
 * replaced by an older update of it that arrives later.
 * @param {string} symbol @param {Record<string, any>} d @returns {boolean} whether it was taken
 */
function addCandle(symbol, d) {
  const t = timeMs(d.open_time);
  const c = { t, o: num(d.open), h: num(d.high), l: num(d.low), c: num(d.close), v: num(d.volume), closed: !!d.closed };
  if (!Number.isFinite(t) || !Number.isFinite(c.c)) return false;
  const m = market(symbol);
  if (m.price === null) m.decimals = decimalsFor(c.c);
  let byInterval = candles.get(symbol);
  if (!byInterval) candles.set(symbol, (byInterval = new Map()));
  const interval = String(d.interval || '?');
  let series = byInterval.get(interval);
  if (!series) {
    byInterval.set(interval, (series = new Map()));
    if (symbol === selected) dirty.intervals = true;
  }
  if (series.get(t)?.closed && !c.closed) return false;
  series.set(t, c);
  if (series.size > SERIES_MAX) {
    const oldest = Math.min(...series.keys());
    series.delete(oldest);
  }
  if (symbol === selected) dirty.chart = true;
  dirty.markets.add(symbol);
  return true;
}

/**
 * Ask the gateway for a symbol's retained closed candles (once per symbol; again after a reset).
 * @param {string} symbol
 */
async function loadHistory(symbol) {
  if (historyAsked.has(symbol)) return;
  historyAsked.add(symbol);
  try {
    const answer = await fetch(`${httpBase}/api/candles?symbol=${encodeURIComponent(symbol)}&limit=${HISTORY_CANDLES}`);
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const body = await answer.json();
    for (const series of Object.values(body.intervals ?? {})) {
      for (const d of /** @type {Record<string, any>[]} */ (series)) addCandle(symbol, d);
    }
    schedule();
  } catch (err) {
    historyAsked.delete(symbol); // asked again on the next reset or reload
    console.warn(`tickstream: no candle history for ${symbol}:`, err);
  }
}

/** @param {TickstreamEvent} e */
function onBook(e) {
  eventCount++;
  const d = e.data;
  const symbol = (e.symbol || d.symbol || '').toUpperCase();
  if (!symbol || !Array.isArray(d.bids) || !Array.isArray(d.asks)) return;
  books.set(symbol, { bids: d.bids, asks: d.asks });
  const m = market(symbol);
  if (m.price === null && d.bids.length > 0) m.decimals = decimalsFor(num(d.bids[0][0]));
  if (symbol === selected) {
    dirty.book = true;
    schedule();
  }
}

/** A click: select and remember it as the user's choice. @param {string} symbol */
function choose(symbol) {
  try {
    localStorage.setItem(SYMBOL_KEY, symbol);
  } catch {
    // storage may be disabled: the choice then lasts for this page only
  }
  const p = new URLSearchParams(location.search);
  p.set('symbol', symbol);
  history.replaceState(null, '', `${location.pathname}?${p}${location.hash}`);
  select(symbol);
}

/** @returns {string|null} the user's last choice */
function remembered() {
  try {
    return localStorage.getItem(SYMBOL_KEY);
  } catch {
    return null;
  }
}

/** @param {string} symbol */
function select(symbol) {
  if (selected === symbol && bookSymbol === symbol) return;
  selected = symbol;
  for (const m of markets.values()) m.row?.classList.toggle('selected', m.symbol === symbol);
  dirty.chart = dirty.book = dirty.tape = dirty.header = dirty.intervals = true;
  subscribeBook();
  schedule();
}

/** @type {string|null} symbol the order book subscription is filtered on */
let bookSymbol = null;
function subscribeBook() {
  if (!client) return;
  if (selected === null) {
    client.subscribe('orderbook_update', onBook);
  } else if (bookSymbol !== selected) {
    client.subscribe('orderbook_update', onBook, { symbols: [selected], last: 1 });
  }
  bookSymbol = selected;
}

// --- activity: signals and private events ---------------------------------------------------

/** @param {TickstreamEvent} e */
function onActivity(e) {
  eventCount++;
  const list = $('activity');
  const item = document.createElement('div');
  item.className = 'item';
  item.dataset.type = e.event_type;
  const t = document.createElement('span');
  t.className = 't';
  t.textContent = fmtTime(e.ts ?? Date.now());
  const badge = document.createElement('span');
  badge.className = `badge ${e.event_type}`;
  badge.textContent = e.event_type.replace(/_/g, ' ');
  const what = document.createElement('span');
  what.className = 'what';
  what.innerHTML = describe(e);
  what.title = JSON.stringify(e.data);
  item.append(t, badge, what);
  // newest first, by the time Redis took each event: the types arrive over separate streams
  const ts = e.ts ?? Date.now();
  item.dataset.ts = String(ts);
  let before = list.firstElementChild;
  while (before && Number(/** @type {HTMLElement} */ (before).dataset.ts) > ts) before = before.nextElementSibling;
  list.insertBefore(item, before);
  while (list.childElementCount > ACTIVITY_MAX) list.lastElementChild?.remove();
  $('activity-empty').hidden = true;
}

/** @param {unknown} s */
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** @param {TickstreamEvent} e @returns {string} HTML, every value escaped */
function describe(e) {
  const d = e.data || {};
  const sym = e.symbol || d.symbol || '';
  const dec = decimalsFor(num(d.entry_price) || 1);
  if (e.event_type === 'trade_executed') {
    const side = String(d.type || '').toUpperCase();
    return `<b class="${side === 'SHORT' ? 'down' : 'up'}">${esc(side)}</b> ${esc(d.quantity)} <b>${esc(sym)}</b>`
      + ` @ ${esc(fmtPrice(num(d.entry_price), dec))}${d.leverage ? ` <span class="k">· ${esc(d.leverage)}x</span>` : ''}`
      + (d.trade_id ? ` <span class="k">· ${esc(d.trade_id)}</span>` : '');
  }
  if (e.event_type === 'signal_generated') {
    const s = String(d.signal || '').toUpperCase();
    const cls = s === 'LONG' ? 'up' : s === 'SHORT' ? 'down' : 'muted';
    const conf = Number.isFinite(num(d.confidence)) ? ` · ${Math.round(num(d.confidence) * 100)}%` : '';
    return `<b class="${cls}">${esc(s)}</b> <b>${esc(sym)}</b> @ ${esc(fmtPrice(num(d.entry_price), dec))}`
      + ` <span class="k">· ${esc(d.strategy ?? '')}${conf}</span>`;
  }
  // portfolio_update, risk_event and any other type: its scalar fields, as key value pairs
  const parts = [];
  if (e.event_type === 'risk_event') {
    const level = d.level ?? d.severity;
    if (level != null) parts.push(`<b class="${/crit|high|breach/i.test(String(level)) ? 'down' : ''}">${esc(String(level).toUpperCase())}</b>`);
    if (d.message != null) parts.push(esc(d.message));
  }
  for (const [k, v] of Object.entries(d)) {
    if (parts.length >= 6) break;
    if (e.event_type === 'risk_event' && ['level', 'severity', 'message'].includes(k)) continue;
    if (v === null || typeof v === 'object') continue;
    const shown = typeof v === 'number' ? fmtNumber(v) : String(v);
    parts.push(`<span class="k">${esc(k)}</span> ${esc(shown)}`);
  }
  return parts.join('  ');
}

/** @param {number} v */
function fmtNumber(v) {
  return Number.isInteger(v) ? fixed(0).format(v) : fixed(Math.abs(v) >= 100 ? 2 : 4).format(v);
}

// --- rendering ------------------------------------------------------------------------------

let chartDrawnAt = 0;
let chartTimer = 0;

function render() {
  frameRequested = false;
  const now = performance.now();
  for (const symbol of dirty.markets) renderMarket(/** @type {Market} */ (markets.get(symbol)), now);
  dirty.markets.clear();
  if (dirty.intervals) renderIntervals();
  if (dirty.header) renderChartHeader();
  if (dirty.book) renderBook();
  if (dirty.tape) renderTape();
  dirty.intervals = dirty.header = dirty.book = dirty.tape = false;
  if (dirty.chart) {
    // price ticks redraw the chart (its last-price line) at most ~10 times a second
    const wait = 100 - (now - chartDrawnAt);
    if (wait <= 0 || hoverX !== null) {
      chartDrawnAt = now;
      dirty.chart = false;
      drawChart();
    } else if (!chartTimer) {
      chartTimer = window.setTimeout(() => {
        chartTimer = 0;
        schedule();
      }, wait);
    }
  }
}

/** @param {Market} m @param {number} now */
function renderMarket(m, now) {
  const row = m.row;
  if (!row) return;
  const price = /** @type {HTMLElement} */ (row.children[1]);
  const text = fmtPrice(m.price, m.decimals);
  if (price.textContent !== text) {
    price.textContent = text;
    price.className = `price num ${m.dir > 0 ? 'up' : m.dir < 0 ? 'down' : ''}`;
    if (now - m.flashAt > 1000 && typeof price.animate === 'function') {
      m.flashAt = now;
      price.animate([{ backgroundColor: m.dir >= 0 ? 'rgba(46,189,133,0.18)' : 'rgba(246,70,93,0.18)' },
        { backgroundColor: 'rgba(0,0,0,0)' }], { duration: 450, easing: 'ease-out' });
    }
  }
  const chg = /** @type {HTMLElement} */ (row.children[2]);
  chg.textContent = fmtPct(m.changePct);
  chg.className = `chg num ${trendClass(m.changePct)}`;
  /** @type {HTMLElement} */ (row.querySelector('small')).textContent = m.volume != null
    ? `Vol ${fmtCompact(m.volume)}` : `${fixed(0).format(m.trades)} trade${m.trades === 1 ? '' : 's'}`;
  drawSpark(/** @type {HTMLCanvasElement} */ (row.children[3]), trend(m));
}

/**
 * The sparkline's values: the closes of the symbol's shortest candles when there are some (so
 * the trend is there from the first paint), else the last price of each second seen.
 * @param {Market} m
 */
function trend(m) {
  const byInterval = candles.get(m.symbol);
  const interval = intervalsOf(m.symbol)[0];
  const series = byInterval && interval ? byInterval.get(interval) : undefined;
  if (!series || series.size < 10) return m.spark;
  const closes = [...series.values()].sort((a, b) => a.t - b.t).slice(-SPARK_POINTS).map((c) => c.c);
  if (m.price !== null) closes[closes.length - 1] = m.price;
  return closes;
}

/** @param {HTMLCanvasElement} canvas @param {number[]} values */
function drawSpark(canvas, values) {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (values.length < 2) return;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const span = hi - lo || 1;
  const step = w / (SPARK_POINTS - 1);
  const x0 = w - (values.length - 1) * step;
  ctx.lineWidth = 2.5;
  ctx.lineJoin = 'round';
  ctx.strokeStyle = values[values.length - 1] >= values[0] ? COLORS.up : COLORS.down;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = x0 + i * step;
    const y = 4 + (1 - (v - lo) / span) * (h - 8);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function renderChartHeader() {
  const m = selected ? markets.get(selected) : undefined;
  $('chart-symbol').textContent = selected ?? '—';
  const last = $('chart-last');
  last.textContent = m ? fmtPrice(m.price, m.decimals) : '';
  last.className = `big num ${m && m.dir > 0 ? 'up' : m && m.dir < 0 ? 'down' : ''}`;
  const chg = $('chart-change');
  const abs = m && m.change != null ? `${m.change > 0 ? '+' : m.change < 0 ? '-' : ''}${fmtPrice(Math.abs(m.change), m.decimals)} ` : '';
  chg.textContent = m && m.changePct != null ? `${abs}(${fmtPct(m.changePct)})` : '';
  chg.title = '24 h change';
  chg.className = `chg num ${trendClass(m ? m.changePct : null)}`;
  $('book-symbol').textContent = selected ?? '';
  $('tape-symbol').textContent = selected ?? '';
}

/** @param {string|null} symbol @returns {string[]} */
function intervalsOf(symbol) {
  const byInterval = symbol ? candles.get(symbol) : undefined;
  return byInterval ? [...byInterval.keys()].sort((a, b) => intervalMs(a) - intervalMs(b)) : [];
}

/** @param {string} text e.g. 1m, 15m, 4h, 1d, 1w */
function intervalMs(text) {
  const match = /^(\d+)([smhdwM])$/.exec(text);
  if (!match) return Infinity;
  const unit = { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8, M: 2.592e9 }[match[2]] ?? 1;
  return Number(match[1]) * unit;
}

function currentInterval() {
  const list = intervalsOf(selected);
  if (chosenInterval && list.includes(chosenInterval)) return chosenInterval;
  return list[0] ?? null;
}

function renderIntervals() {
  const nav = $('intervals');
  const list = intervalsOf(selected);
  const current = currentInterval();
  nav.replaceChildren(...list.map((iv) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = iv;
    b.setAttribute('aria-pressed', String(iv === current));
    b.addEventListener('click', () => {
      chosenInterval = iv;
      dirty.intervals = dirty.chart = true;
      schedule();
    });
    return b;
  }));
}

function renderBook() {
  const book = selected ? books.get(selected) : undefined;
  const m = selected ? markets.get(selected) : undefined;
  const dec = m?.decimals ?? 2;
  const bids = book ? book.bids.slice(0, LEVELS) : [];
  const asks = book ? book.asks.slice(0, LEVELS) : [];
  const cum = (/** @type {number[][]} */ side) => {
    let total = 0;
    return side.map((lv) => (total += num(lv[1])));
  };
  const bidCum = cum(bids);
  const askCum = cum(asks);
  const max = Math.max(bidCum[bidCum.length - 1] ?? 0, askCum[askCum.length - 1] ?? 0) || 1;
  const fill = (/** @type {HTMLElement} */ el, /** @type {number[][]} */ side, /** @type {number[]} */ totals,
    /** @type {boolean} */ reversed) => {
    for (let i = 0; i < LEVELS; i++) {
      const row = /** @type {HTMLElement} */ (el.children[reversed ? LEVELS - 1 - i : i]);
      const lv = side[i];
      if (!lv) {
        // a level the book does not have: the row is not shown (no blank rows)
        row.classList.add('blank');
        delete row.dataset.price;
        for (let k = 0; k < 3; k++) row.children[k].textContent = '';
        /** @type {HTMLElement} */ (row.children[3]).style.width = '0';
        continue;
      }
      row.classList.remove('blank');
      row.dataset.price = String(lv[0]);
      row.children[0].textContent = fmtPrice(num(lv[0]), dec);
      row.children[1].textContent = fmtQty(num(lv[1]));
      row.children[2].textContent = fmtQty(totals[i]);
      /** @type {HTMLElement} */ (row.children[3]).style.width = `${(totals[i] / max) * 100}%`;
    }
  };
  fill($('asks'), asks, askCum, true);
  fill($('bids'), bids, bidCum, false);
  const bestBid = bids.length ? num(bids[0][0]) : NaN;
  const bestAsk = asks.length ? num(asks[0][0]) : NaN;
  if (Number.isFinite(bestBid) && Number.isFinite(bestAsk)) {
    const mid = (bestBid + bestAsk) / 2;
    $('mid').textContent = fmtPrice(mid, dec);
    $('spread-val').textContent = `spread ${fmtPrice(bestAsk - bestBid, dec)} · ${fixed(3).format(((bestAsk - bestBid) / mid) * 100)}%`;
  } else {
    $('mid').textContent = '—';
    $('spread-val').textContent = '';
  }
}

/**
 * Show as many book levels as fit, without a half row: the far levels go first (the top of the
 * asks, the bottom of the bids), so the best prices always sit next to the spread.
 */
function fitBook() {
  for (const id of ['asks', 'bids']) {
    const el = $(id);
    const shown = /** @type {HTMLElement|undefined} */ ([...el.children].find((r) => /** @type {HTMLElement} */ (r).offsetHeight > 0));
    const rowHeight = shown?.offsetHeight || 22;
    let fit = Math.max(1, Math.floor(el.clientHeight / rowHeight));
    // hidden rows do not count: measure the container, not its content
    fit = Math.min(LEVELS, fit);
    for (let i = 0; i < LEVELS; i++) {
      const far = id === 'asks' ? i < LEVELS - fit : i >= fit;
      /** @type {HTMLElement} */ (el.children[i]).hidden = far;
    }
  }
  const tapeEl = $('tape');
  const fit = Math.floor(tapeEl.clientHeight / 22);
  for (let i = 0; i < TAPE_ROWS; i++) /** @type {HTMLElement} */ (tapeEl.children[i]).hidden = i >= fit;
}

function buildRows() {
  for (const id of ['asks', 'bids']) {
    const el = $(id);
    for (let i = 0; i < LEVELS; i++) {
      const row = document.createElement('div');
      row.className = 'level blank';
      row.innerHTML = '<span></span><span></span><span></span><div class="bar"></div>';
      el.append(row);
    }
  }
  const tapeEl = $('tape');
  for (let i = 0; i < TAPE_ROWS; i++) {
    const row = document.createElement('div');
    row.className = 'tick';
    row.innerHTML = '<span class="t"></span><span></span><span></span>';
    tapeEl.append(row);
  }
}

function renderTape() {
  const m = selected ? markets.get(selected) : undefined;
  const dec = m?.decimals ?? 2;
  const rows = $('tape').children;
  const tape = (selected ? tapes.get(selected) : undefined) ?? [];
  for (let i = 0; i < TAPE_ROWS; i++) {
    const tr = tape[i];
    const row = /** @type {HTMLElement} */ (rows[i]);
    row.children[0].textContent = tr ? fmtTime(tr.t) : '';
    row.children[1].textContent = tr ? fmtPrice(tr.price, dec) : '';
    row.children[1].className = tr ? (tr.side === 'sell' ? 'down' : 'up') : '';
    row.children[2].textContent = tr ? fmtQty(tr.volume) : '';
  }
}

// --- the candle chart -----------------------------------------------------------------------

const canvas = /** @type {HTMLCanvasElement} */ ($('chart'));
/** @type {number|null} */
let hoverX = null;

function drawChart() {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth;
  const H = canvas.clientHeight;
  if (W === 0 || H === 0) return;
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  ctx.font = '11px Inter, system-ui, sans-serif';
  ctx.textBaseline = 'middle';

  const interval = currentInterval();
  const series = selected && interval ? candles.get(selected)?.get(interval) : undefined;
  const all = series ? [...series.values()].sort((a, b) => a.t - b.t) : [];
  const m = selected ? markets.get(selected) : undefined;
  const dec = m?.decimals ?? 2;
  if (all.length === 0) {
    canvas.dataset.candles = '0';
    ctx.fillStyle = COLORS.axis;
    ctx.textAlign = 'center';
    ctx.fillText(selected ? `Waiting for ${selected} candles…` : 'Waiting for candles…', W / 2, H / 2);
    $('ohlc').textContent = '';
    return;
  }

  const padL = 10;
  const padR = 78;
  const padT = 14;
  const padB = 26;
  const plotW = W - padL - padR;
  const plotH = H - padT - padB;
  const volH = Math.round(plotH * 0.16);
  const priceH = plotH - volH - 8;
  const slot = Math.max(5, Math.min(16, plotW / 90));
  const count = Math.max(1, Math.floor(plotW / slot));
  const shown = all.slice(-count);
  canvas.dataset.candles = String(shown.length);
  let lo = Infinity;
  let hi = -Infinity;
  let vmax = 0;
  for (const c of shown) {
    lo = Math.min(lo, c.l);
    hi = Math.max(hi, c.h);
    vmax = Math.max(vmax, c.v || 0);
  }
  if (hi === lo) {
    hi += Math.abs(hi) * 0.001 || 1;
    lo -= Math.abs(lo) * 0.001 || 1;
  }
  const padP = (hi - lo) * 0.08;
  hi += padP;
  lo -= padP;
  const y = (/** @type {number} */ p) => padT + ((hi - p) / (hi - lo)) * priceH;
  const xOf = (/** @type {number} */ i) => padL + plotW - (shown.length - i - 0.5) * slot;

  // grid and price axis
  const step = niceStep((hi - lo) / Math.max(3, Math.floor(priceH / 60)));
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = COLORS.axis;
  ctx.textAlign = 'left';
  const axisDec = Math.max(0, Math.min(dec, -Math.floor(Math.log10(step)) + 1));
  const lastCandle = shown[shown.length - 1];
  const lastPrice = m?.price ?? lastCandle.c;
  const lastY = y(lastPrice);
  for (let p = Math.ceil(lo / step) * step; p <= hi; p += step) {
    const yy = Math.round(y(p)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(padL, yy);
    ctx.lineTo(padL + plotW, yy);
    ctx.stroke();
    if (Math.abs(yy - lastY) > 14) ctx.fillText(fixed(axisDec).format(p), padL + plotW + 8, yy);
  }

  // time axis: a label every ~110 px, on candle boundaries
  const every = Math.max(1, Math.ceil(110 / slot));
  const ivMs = intervalMs(interval ?? '');
  ctx.textAlign = 'center';
  const aligned = shown.some((c) => Math.round(c.t / (ivMs || 1)) % every === 0);
  shown.forEach((c, i) => {
    // on round boundaries (stable as candles come); a short series labels its last candle
    if (aligned ? Math.round(c.t / (ivMs || 1)) % every !== 0 : i !== shown.length - 1) return;
    const x = Math.round(xOf(i)) + 0.5;
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath();
    ctx.moveTo(x, padT);
    ctx.lineTo(x, padT + plotH);
    ctx.stroke();
    const d = new Date(c.t);
    const label = ivMs >= 8.64e7 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())}` : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    ctx.fillStyle = COLORS.axis;
    ctx.fillText(label, x, H - padB / 2);
  });

  // volume and candles
  const body = Math.max(1, Math.floor(slot * 0.7));
  shown.forEach((c, i) => {
    const up = c.c >= c.o;
    const x = Math.round(xOf(i));
    if (vmax > 0 && c.v > 0) {
      const vh = Math.max(1, (c.v / vmax) * volH);
      ctx.fillStyle = up ? COLORS.volUp : COLORS.volDown;
      ctx.fillRect(x - Math.floor(body / 2), padT + plotH - vh, body, vh);
    }
    ctx.strokeStyle = ctx.fillStyle = up ? COLORS.up : COLORS.down;
    ctx.beginPath();
    ctx.moveTo(x + 0.5, Math.round(y(c.h)));
    ctx.lineTo(x + 0.5, Math.round(y(c.l)));
    ctx.stroke();
    const top = Math.round(y(Math.max(c.o, c.c)));
    const bottom = Math.round(y(Math.min(c.o, c.c)));
    ctx.fillRect(x - Math.floor(body / 2), top, body, Math.max(1, bottom - top));
  });

  // last price line and label
  if (lastPrice >= lo && lastPrice <= hi) {
    const ly = Math.round(lastY) + 0.5;
    const color = lastCandle.c >= lastCandle.o ? COLORS.up : COLORS.down;
    ctx.strokeStyle = color;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(padL, ly);
    ctx.lineTo(padL + plotW, ly);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = color;
    ctx.fillRect(padL + plotW + 2, ly - 9, padR - 4, 18);
    ctx.fillStyle = '#0b0e14';
    ctx.textAlign = 'left';
    ctx.font = '600 11px Inter, system-ui, sans-serif';
    ctx.fillText(fmtPrice(lastPrice, dec), padL + plotW + 7, ly);
    ctx.font = '11px Inter, system-ui, sans-serif';
  }

  // crosshair and OHLC readout
  let focus = lastCandle;
  if (hoverX !== null && hoverX >= padL && hoverX <= padL + plotW) {
    const i = Math.max(0, Math.min(shown.length - 1, Math.round((hoverX - padL - plotW) / slot + shown.length - 0.5)));
    focus = shown[i];
    const x = Math.round(xOf(i)) + 0.5;
    ctx.strokeStyle = COLORS.cross;
    ctx.setLineDash([2, 3]);
    ctx.beginPath();
    ctx.moveTo(x, padT);
    ctx.lineTo(x, padT + plotH);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  const cls = focus.c >= focus.o ? 'up' : 'down';
  $('ohlc').innerHTML = ['O', 'H', 'L', 'C'].map((k, i) => `${k} <b class="${cls}">${esc(fmtPrice([focus.o, focus.h, focus.l, focus.c][i], dec))}</b>`).join('')
    + `V <b>${esc(fmtQty(focus.v))}</b>`;
}

/** @param {number} raw */
function niceStep(raw) {
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

canvas.addEventListener('mousemove', (ev) => {
  hoverX = ev.offsetX;
  dirty.chart = true;
  schedule();
});
canvas.addEventListener('mouseleave', () => {
  hoverX = null;
  dirty.chart = true;
  schedule();
});
new ResizeObserver(() => {
  dirty.chart = true;
  schedule();
}).observe(canvas);

// --- status ---------------------------------------------------------------------------------

/** @param {Status} s */
function renderStatus(s) {
  const conn = $('conn');
  conn.dataset.state = s.state;
  let text = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', disconnected: 'Disconnected' }[s.state];
  if (s.state === 'reconnecting' && s.retryIn != null) text = `Reconnecting (attempt ${s.attempt})…`;
  if (s.state === 'disconnected' && s.error) text = `Disconnected: ${s.error.message}`;
  $('conn-text').textContent = text;
  conn.title = s.closeCode != null ? `last close: ${s.closeCode} ${s.closeReason ?? ''}` : '';
  $('latency').textContent = s.latency != null ? `${s.latency < 10 ? fixed(1).format(s.latency) : fixed(0).format(s.latency)} ms` : '—';
  const node = $('node');
  node.textContent = s.node ?? '—';
  node.title = s.node ?? '';
  if (s.state === 'disconnected' && s.error?.code === 4401) {
    // a refused token: say so, and go on anonymously rather than stay dark
    authNote = `token refused: ${s.error.message}`;
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    setTimeout(start, 0);
  }
  const user = $('user');
  if (s.user) {
    user.textContent = s.user;
    user.className = 'user signed';
    user.title = `signed in as ${s.user}`;
    $('activity-sub').textContent = `signals · trades, portfolio and risk of ${s.user}`;
  } else if (authNote) {
    user.textContent = 'token refused';
    user.className = 'user error';
    user.title = authNote;
  } else if (s.state === 'connected') {
    user.textContent = 'anonymous';
    user.className = 'user';
    user.title = '';
  }
  updateAuthButton();
}

let authNote = '';

/** The button signs in with what the field holds, or signs out when it is empty. */
function updateAuthButton() {
  const typed = /** @type {HTMLInputElement} */ ($('token')).value.trim() !== '';
  $('signin').textContent = typed ? (token ? 'Switch' : 'Sign in') : token ? 'Sign out' : 'Sign in';
}

setInterval(() => {
  $('rate').textContent = fixed(0).format(eventCount - lastCount);
  lastCount = eventCount;
}, 1000);

// --- the connection -------------------------------------------------------------------------

/** @type {TickstreamClient|null} */
let client = null;

/** @param {string} path @returns {Promise<any>} the gateway's JSON answer */
async function ask(path) {
  const answer = await fetch(`${httpBase}${path}`);
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
}

/**
 * What the page asks the gateway once: the configured symbols (rows and the default selection)
 * and the private types. Without an answer the page goes on with the first symbol that
 * arrives and the contract's default private types.
 */
const gatewayReady = (async () => {
  const [info, index] = await Promise.allSettled([ask('/api/info'), ask('/api/schemas')]);
  if (info.status === 'fulfilled' && Array.isArray(info.value.symbols)) {
    configured = info.value.symbols.filter((/** @type {unknown} */ s) => typeof s === 'string');
  } else {
    console.warn('tickstream: /api/info unavailable:', info.status === 'rejected' ? info.reason : info.value);
  }
  if (index.status === 'fulfilled' && Array.isArray(index.value.types)) {
    privateTypes = index.value.types.filter((/** @type {any} */ t) => t.private === true).map((/** @type {any} */ t) => String(t.event_type));
  } else {
    console.warn('tickstream: /api/schemas unavailable, using the default private types');
    privateTypes = [...DEFAULT_PRIVATE_TYPES];
  }
  if (selected === null) {
    const last = remembered();
    const pick = last && (configured.includes(last) || markets.has(last)) ? last
      : configured[0] ?? [...markets.keys()].sort()[0];
    if (pick) select(pick);
  }
  infoPending = false;
  for (const symbol of configured) market(symbol); // listed at once, in SYMBOLS' order
  // rows made before the answer: into their places
  const list = $('markets');
  for (const m of [...markets.values()].sort((a, b) => (before(a.symbol, b.symbol) ? -1 : 1))) {
    if (m.row) list.append(m.row);
  }
  exposeState();
})();

function exposeState() {
  // for tests and the console
  Object.assign(window, { tickstream: { client, markets, candles, books, configured, privateTypes, gatewayReady } });
}

function start() {
  client?.close();
  client = connect(wsUrl, { token: token || null });
  bookSymbol = null;
  client.onStatus(renderStatus);
  client.onReset((r) => {
    // history was lost (retention or a new epoch): live data goes on; say so in the feed
    onActivity({ event_type: 'reset', offset: r.offset, ts: Date.now(),
      data: { stream: r.eventType, note: 'history no longer retained: continuing live' } });
    if (r.eventType === 'market_data') {
      // the candles missed meanwhile are among the retained ones: ask again
      historyAsked.clear();
      for (const symbol of markets.keys()) loadHistory(symbol);
    }
  });
  client.onError((err) => {
    console.warn('tickstream:', err);
    if (err.eventType && privateTypes.includes(err.eventType)) {
      $('activity-sub').textContent = `${err.eventType}: ${err.message}`;
    }
  });
  client.subscribe('price_update', onPrice, { last: 200, conflateMs: PRICE_CONFLATE_MS });
  client.subscribe('market_data', onMarketData, { last: 1000 });
  subscribeBook();
  client.subscribe('signal_generated', onActivity, { last: 20 });
  const mine = client;
  if (token) {
    gatewayReady.then(() => {
      if (client !== mine) return; // signed in again meanwhile
      for (const type of privateTypes) mine.subscribe(type, onActivity, { last: 50 });
    });
  }
  exposeState();
}

$('auth').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('token'));
  token = input.value.trim();
  input.value = '';
  authNote = '';
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  $('activity').replaceChildren();
  $('activity-empty').hidden = false;
  $('activity-sub').textContent = token ? 'signing in…' : 'signals · sign in for trades, portfolio and risk';
  start();
});
$('token').addEventListener('input', updateAuthButton);
updateAuthButton();

buildRows();
const fitter = new ResizeObserver(fitBook);
fitter.observe($('asks'));
fitter.observe($('tape'));
start();
dirty.header = dirty.chart = dirty.book = dirty.tape = true;
schedule();
