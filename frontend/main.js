/**
 * pats-trio in the browser: the page and its columns. Each column (column.js) is a filter with its
 * own socket, cards and status; the page adds, removes and reorders them, keeps the address bar
 * (`?filter=a&filter=b`, one per column) in step, shows them as swipeable tabs on a phone, and
 * runs the one clock. The pieces live in their own small modules.
 */

import { Column } from './column.js';
import { Notices } from './notices.js';
import { MAX_COLUMNS, filtersFromUrl, urlForFilters } from './query.js';

const TIME_REFRESH_SECONDS = 5;
const DEMO_NOTE_KEY = 'pats-trio.demo-note-dismissed';
/** What each source calls a post, and what its sample stream is. */
const WORDS = {
  twitter: { one: 'tweet', many: 'tweets', sample: 'a small random share of all public tweets' },
  emulator: { one: 'tweet', many: 'tweets', sample: 'made-up tweets from the built-in demo emulator' },
  bluesky: { one: 'post', many: 'posts', sample: 'every post on Bluesky' },
  x: { one: 'post', many: 'posts', sample: 'no posts: X offers its sampled stream to Enterprise accounts only' },
};
const TITLE = document.title;
const PHONE = window.matchMedia('(max-width: 600px)');

const $ = (id) => document.getElementById(id);
const ui = {
  columns: $('columns'),
  tabs: $('column-tabs'),
  add: $('add-column'),
  template: $('column-template'),
  mode: $('mode'),
  modeNote: $('mode-note'),
  topbar: document.querySelector('.topbar'),
};
const numberFormat = new Intl.NumberFormat('en');

/** @type {Column[]} in the order shown */
const columns = [];

/** What every column shares. */
const page = {
  words: WORDS.twitter,
  notices: new Notices($('notices')),

  /** A column's hello: the demo note and the source's words are the page's. */
  hello(message) {
    const demo = message.mode === 'demo';
    ui.mode.hidden = !demo;
    ui.modeNote.hidden = !demo || localStorage.getItem(DEMO_NOTE_KEY) === '1';
    document.body.dataset.mode = demo ? 'demo' : 'live';
    const words = WORDS[message.source] ?? (demo ? WORDS.emulator : WORDS.twitter);
    if (words !== page.words) {
      page.words = words;
      for (const column of columns) column.useWords();
    }
  },

  /** A column's filter was accepted by the server: it may go into the address bar. */
  accepted() {
    pushUrl();
    showTabs();
  },

  heldChanged() {
    const total = columns.reduce((sum, column) => sum + column.feed.held.length, 0);
    document.title = total > 0 ? `(${numberFormat.format(total)}) ${TITLE}` : TITLE;
    showTabs();
  },

  remove(column) {
    if (columns.length === 1) return;
    const at = columns.indexOf(column);
    columns.splice(at, 1);
    column.close();
    relabel();
    pushUrl();
    (columns[Math.min(at, columns.length - 1)].ui.filter).focus({ preventScroll: true });
  },

  move(column, step) {
    const from = columns.indexOf(column);
    const to = from + step;
    if (to < 0 || to >= columns.length) return;
    const other = columns[to];
    columns[to] = column;
    columns[from] = other;
    if (step < 0) other.root.before(column.root);
    else other.root.after(column.root);
    relabel();
    pushUrl();
    (step < 0 ? column.ui.left : column.ui.right).focus();
  },
};

function addColumn(filter, { push = false } = {}) {
  const root = ui.template.content.firstElementChild.cloneNode(true);
  ui.columns.append(root);
  const column = new Column(root, page, filter);
  column.awaitingPush = push;
  columns.push(column);
  relabel();
  return column;
}

/** Ids and labels by position; the page's shape follows how many columns there are. */
function relabel() {
  columns.forEach((column, index) => column.label(index));
  document.body.classList.toggle('has-columns', columns.length > 1);
  ui.add.disabled = columns.length >= MAX_COLUMNS;
  showTabs();
}

function pushUrl() {
  const url = urlForFilters(window.location.href, columns.map((column) => column.accepted));
  if (url !== window.location.href) window.history.pushState(null, '', url);
}

// --- On a phone: one column at a time, swiped or picked from the tabs -----------------------------

function showTabs() {
  ui.tabs.hidden = columns.length < 2;
  if (ui.tabs.hidden) return;
  while (ui.tabs.childElementCount > columns.length) ui.tabs.lastElementChild.remove();
  while (ui.tabs.childElementCount < columns.length) {
    const tab = document.createElement('button');
    tab.type = 'button';
    tab.className = 'column-tab';
    tab.addEventListener('click', () => {
      const column = columns[[...ui.tabs.children].indexOf(tab)];
      if (column) showColumn(column);
    });
    ui.tabs.append(tab);
  }
  columns.forEach((column, index) => {
    const tab = ui.tabs.children[index];
    const held = column.feed.held.length;
    const name = column.accepted ? column.accepted.replaceAll(',', ', ') : 'Sample';
    const text = held ? `${name} (${numberFormat.format(held)} new)` : name;
    if (tab.textContent !== text) tab.textContent = text;
    tab.setAttribute('aria-controls', column.ui.list.id);
  });
  markActiveTab();
}

/** Scroll the columns sideways (only) to bring `column` into view. */
function showColumn(column) {
  const left = column.root.getBoundingClientRect().left - ui.columns.getBoundingClientRect().left;
  ui.columns.scrollBy({ left });
}

/** The tab of the column that fills the view. */
function markActiveTab() {
  const middle = ui.columns.getBoundingClientRect().left + ui.columns.clientWidth / 2;
  columns.forEach((column, index) => {
    const box = column.root.getBoundingClientRect();
    ui.tabs.children[index]?.setAttribute('aria-current', String(box.left <= middle && box.right > middle));
  });
}

ui.columns.addEventListener('scroll', () => requestAnimationFrame(markActiveTab), { passive: true });
PHONE.addEventListener('change', showTabs);

// --- Page actions ----------------------------------------------------------------------------------

ui.add.addEventListener('click', () => {
  if (columns.length >= MAX_COLUMNS) return;
  const column = addColumn('', { push: true });
  showColumn(column);
  column.ui.filter.focus({ preventScroll: true });
});

window.addEventListener('popstate', () => {
  const filters = filtersFromUrl(window.location.href);
  while (columns.length > filters.length) columns.pop().close();
  filters.forEach((filter, index) => {
    if (index < columns.length) columns[index].applyFilter(filter, { push: false });
    else addColumn(filter);
  });
  relabel();
});

$('mode-note-close').addEventListener('click', () => {
  ui.modeNote.hidden = true;
  localStorage.setItem(DEMO_NOTE_KEY, '1');
});

window.addEventListener('online', () => {
  for (const column of columns) column.connection.retryNow();
});

window.addEventListener('scroll', () => {
  for (const column of columns) column.onScroll();
}, { passive: true });

// The column heads stick just under the page's header.
new ResizeObserver(() => {
  document.documentElement.style.setProperty('--topbar-height', `${ui.topbar.offsetHeight}px`);
}).observe(ui.topbar);

// --- One clock for the whole page ----------------------------------------------------------------

let ticks = 0;
setInterval(() => {
  const now = Date.now();
  ticks += 1;
  for (const column of columns) {
    column.rate.tick();
    column.indicator.tick(now);
    if (ticks % TIME_REFRESH_SECONDS === 0 && !document.hidden) column.feed.refreshTimes(now);
  }
}, 1000);

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) for (const column of columns) column.feed.refreshTimes();
});

// --- Start ---------------------------------------------------------------------------------------

for (const filter of filtersFromUrl(window.location.href)) addColumn(filter);
