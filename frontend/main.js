/**
 * pats-trio in the browser: wires the WebSocket, the filter form and the page URL, pause and resume,
 * notices and the header status together. The pieces live in their own small modules.
 */

import { Connection } from './connection.js';
import { Feed } from './feed.js';
import { termMatcher } from './highlight.js';
import { Notices } from './notices.js';
import { filterForInput, filterFromUrl, filterString, urlForFilter } from './query.js';
import { Indicator, RateMeter } from './status.js';

const FILTER_ERROR_CODES = new Set(['empty_phrase', 'phrase_too_long', 'too_many_phrases', 'viewer_phrase_limit',
  'address_phrase_limit']);
const FALLBACK_MESSAGES = {
  empty_phrase: 'One of the phrases in the filter is empty.',
  phrase_too_long: 'One of the phrases in the filter is too long.',
  too_many_phrases: 'The filter has too many phrases.',
  too_slow: 'Your connection could not keep up, so the server closed it. Reconnecting…',
};
const TIME_REFRESH_SECONDS = 5;
const TITLE = document.title;

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('filter-form'),
  input: $('filter'),
  reset: $('reset'),
  filterError: $('filter-error'),
  pause: $('pause'),
  held: $('held'),
  list: $('tweets'),
  showing: $('showing'),
  empty: $('empty'),
  mode: $('mode'),
  modeNote: $('mode-note'),
};

const numberFormat = new Intl.NumberFormat('en');
const count = (n, one, many) => `${numberFormat.format(n)} ${n === 1 ? one : many}`;

const notices = new Notices($('notices'));
const rate = new RateMeter($('rate'));
const indicator = new Indicator($('connection'), { retryButton: $('retry'), announcer: $('connection-announce') });
const feed = new Feed(ui.list, { onHeldChange: showHeld });
const connection = new Connection({ onMessage: receive, onPhase: phaseChanged });

/** The stream the server last said hello for: {stream, track, key}. */
let current = null;

// --- Messages from the server ------------------------------------------------------------------

function isTweet(value) {
  return value !== null && typeof value === 'object' && typeof value.id_str === 'string' && value.id_str !== '';
}

function receive(message, { inBandReply }) {
  switch (message.type) {
    case 'hello':
      hello(message);
      break;
    case 'tweet':
      if (isTweet(message.tweet)) addTweets([message.tweet]);
      break;
    case 'tweets':
      if (Array.isArray(message.tweets)) addTweets(message.tweets.filter(isTweet));
      break;
    case 'delete':
      if (message.id_str !== undefined) feed.remove(String(message.id_str));
      break;
    case 'profile':
      feed.applyProfile(message.profile);
      break;
    case 'limit': {
      const n = Number(message.undelivered) || 0;
      if (n <= 0) break;
      notices.show('limit', `${count(n, 'matching tweet was', 'matching tweets were')} held back by Twitter (rate limit)`,
        { tone: 'warn' });
      break;
    }
    case 'skipped': {
      const n = Number(message.count) || 0;
      if (n > 0) {
        notices.add('skipped', n,
          (total) => `You missed ${count(total, 'tweet', 'tweets')} because your connection could not keep up`,
          { tone: 'warn' });
      }
      break;
    }
    case 'status':
      indicator.upstream(message);
      if (message.state === 'error' && message.reason) {
        notices.show('upstream', `The server lost its tweet source: ${message.reason}`, { tone: 'error', ttl: 20_000 });
      }
      break;
    case 'pending':
      indicator.pending(message);
      break;
    case 'error':
      serverError(message, inBandReply);
      break;
    default:
      break; // unknown types are for newer pages
  }
}

function hello(message) {
  const demo = message.mode === 'demo';
  ui.mode.hidden = !demo;
  ui.modeNote.hidden = !demo;
  document.body.dataset.mode = demo ? 'demo' : 'live';
  indicator.hello(message);

  const stream = message.stream === 'filter' ? 'filter' : 'sample';
  const track = stream === 'filter' && Array.isArray(message.track) ? message.track.map(String) : [];
  const key = `${stream}\n${track.join(',')}`;
  if (current?.key !== key) {
    // Another stream or other keywords: the cards on screen no longer answer the question.
    feed.clear();
    feed.setMatcher(termMatcher(track));
  }
  current = { stream, track, key };
  showCurrent();
  clearFilterError();
}

function addTweets(tweets) {
  if (tweets.length === 0) return;
  rate.count(tweets.length);
  feed.add(tweets);
}

function serverError(message, inBandReply) {
  const code = typeof message.code === 'string' ? message.code : '';
  const given = typeof message.message === 'string' ? message.message.trim() : '';
  const text = (given && (/[.!?…]$/.test(given) ? given : `${given}.`)) || FALLBACK_MESSAGES[code]
    || `The server reported an error${code ? ` (${code})` : ''}.`;
  if (inBandReply || FILTER_ERROR_CODES.has(code)) {
    showFilterError(inBandReply && current ? `${text} Still showing the previous stream.` : text);
  } else {
    notices.show(`error:${code}`, text, { tone: 'error', ttl: 20_000 });
  }
}

function phaseChanged(phase, detail) {
  indicator.socketPhase(phase, detail);
  if (phase === 'live') rate.start();
  else rate.reset();
  if (phase === 'stopped') {
    // 1008: the server refused what we asked for. Wait for the viewer instead of retrying in a loop.
    feed.clear();
    current = null;
    ui.empty.textContent = 'No stream right now.';
    if (connection.filter) {
      if (ui.filterError.hidden) showFilterError('The server refused this filter.');
      ui.showing.textContent =
        'Not showing any tweets: change the filter and press Apply, or press Reset for the sample stream.';
    } else {
      ui.showing.textContent = 'Not showing any tweets: the server refused the connection. Reload the page to try again.';
    }
  }
}

// --- What is on screen ---------------------------------------------------------------------------

function showCurrent() {
  ui.empty.textContent = 'Waiting for tweets…';
  const parts = [];
  if (current.stream === 'sample') {
    parts.push('Showing the sample stream: a small random share of all public tweets.');
  } else {
    parts.push('Showing tweets matching ');
    current.track.forEach((phrase, i) => {
      if (i > 0) parts.push(' or ');
      const chip = document.createElement('span');
      chip.className = 'phrase';
      chip.textContent = phrase;
      parts.push(chip);
    });
  }
  ui.showing.replaceChildren(...parts);
}

/** The "37 new tweets" button while paused, and the same count in the tab title. */
function showHeld(n, overflowed) {
  const shown = `${numberFormat.format(n)}${overflowed ? '+' : ''}`;
  ui.held.hidden = n === 0;
  ui.held.textContent = `${shown} new ${n === 1 ? 'tweet' : 'tweets'}`;
  ui.held.title = overflowed ? `Show them (only the newest ${numberFormat.format(n)} were kept)` : 'Show them';
  document.title = n > 0 ? `(${shown}) ${TITLE}` : TITLE;
}

function showFilterError(text) {
  ui.filterError.textContent = text;
  ui.filterError.hidden = false;
  ui.input.setAttribute('aria-invalid', 'true');
}

function clearFilterError() {
  ui.filterError.hidden = true;
  ui.filterError.textContent = '';
  ui.input.removeAttribute('aria-invalid');
}

// --- Viewer actions ------------------------------------------------------------------------------

/** Switch to `filter` ("" = sample), in-band when possible; `push` adds a history entry. */
function applyFilter(filter, { push }) {
  clearFilterError();
  ui.input.value = filterForInput(filter);
  if (push) {
    const url = urlForFilter(window.location.href, filter);
    if (url !== window.location.href) window.history.pushState(null, '', url);
  }
  const shown = current?.stream === 'filter' ? current.track.join(',') : '';
  if (connection.phase === 'live' && connection.requested === null && current && shown === filter) return;
  connection.changeFilter(filter);
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  applyFilter(filterString(ui.input.value), { push: true });
});

ui.reset.addEventListener('click', () => {
  applyFilter('', { push: true });
  ui.input.focus();
});

ui.input.addEventListener('input', () => {
  if (!ui.filterError.hidden) clearFilterError();
});

window.addEventListener('popstate', () => {
  applyFilter(filterFromUrl(window.location.href), { push: false });
});

function setPaused(paused) {
  if (paused) feed.pause();
  else feed.resume();
  ui.pause.textContent = paused ? 'Resume' : 'Pause';
  ui.pause.dataset.paused = String(paused);
  document.body.classList.toggle('is-paused', paused);
}

ui.pause.addEventListener('click', () => setPaused(!feed.paused));

ui.held.addEventListener('click', () => {
  setPaused(false);
  // Bring the top of the list into view when it is scrolled away under the sticky header.
  const headerBottom = document.querySelector('.topbar').getBoundingClientRect().bottom;
  if (ui.list.getBoundingClientRect().top < headerBottom) ui.list.scrollIntoView({ block: 'start' });
});

$('retry').addEventListener('click', () => connection.retryNow());
window.addEventListener('online', () => connection.retryNow());

// --- One clock for the whole page ----------------------------------------------------------------

let ticks = 0;
setInterval(() => {
  const now = Date.now();
  rate.tick();
  indicator.tick(now);
  ticks += 1;
  if (ticks % TIME_REFRESH_SECONDS === 0 && !document.hidden) feed.refreshTimes(now);
}, 1000);

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) feed.refreshTimes();
});

// --- Start ---------------------------------------------------------------------------------------

const initial = filterFromUrl(window.location.href);
ui.input.value = filterForInput(initial);
connection.start(initial);
