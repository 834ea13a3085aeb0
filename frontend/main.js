/**
 * pats-trio in the browser: wires the WebSocket, the filter form and the page URL, pause and resume,
 * notices and the header status together. The pieces live in their own small modules.
 */

import { Connection } from './connection.js';
import { Feed } from './feed.js';
import { termMatcher } from './highlight.js';
import { Notices } from './notices.js';
import { filterForInput, filterFromUrl, filterProblem, filterString, urlForFilter } from './query.js';
import { Indicator, RateMeter } from './status.js';
import { tweetTimeMs } from './time.js';

const FILTER_ERROR_CODES = new Set(['empty_phrase', 'phrase_too_long', 'too_many_phrases']);
const FALLBACK_MESSAGES = {
  empty_phrase: 'One of the phrases in the filter is empty.',
  phrase_too_long: 'One of the phrases in the filter is too long.',
  too_many_phrases: 'The filter has too many phrases.',
  too_slow: 'Your connection could not keep up, so the server closed it. Reconnecting…',
};
const TIME_REFRESH_SECONDS = 5;
// The most recent posts a new page gets at once are history, not the live rate: those that come
// in this long after the hello and were made more than HISTORY_AGE_MS before it.
const HISTORY_WINDOW_MS = 2000;
const HISTORY_AGE_MS = 3000;
const DEMO_NOTE_KEY = 'pats-trio.demo-note-dismissed';
/** What each source calls a post, and what its sample stream is. */
const WORDS = {
  twitter: { one: 'tweet', many: 'tweets', sample: 'a small random share of all public tweets' },
  emulator: { one: 'tweet', many: 'tweets', sample: 'made-up tweets from the built-in demo emulator' },
  bluesky: { one: 'post', many: 'posts', sample: 'every post on Bluesky' },
};
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
const indicator = new Indicator($('connection'),
  { retryButton: $('retry'), announcer: $('connection-announce'), reasonLine: $('reason') });
const feed = new Feed(ui.list, { onHeldChange: showHeld });
const connection = new Connection({ onMessage: receive, onPhase: phaseChanged });

/** The stream the server last said hello for: {stream, track, key}. */
let current = null;
/** A filter the viewer applied, to go into the address bar once the server accepts it. */
let awaitingPush = false;
/** The source's words for its posts; Twitter's until the hello says otherwise. */
let words = WORDS.twitter;
let helloAt = 0;

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
      indicator.upstream(message); // the reason, in plain words, goes to the feed's reason line
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
  ui.modeNote.hidden = !demo || localStorage.getItem(DEMO_NOTE_KEY) === '1';
  document.body.dataset.mode = demo ? 'demo' : 'live';
  indicator.hello(message);
  helloAt = Date.now();
  useWords(WORDS[message.source] ?? (demo ? WORDS.emulator : WORDS.twitter));

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
  if (awaitingPush) {
    // Accepted: now it may be shared. What the server accepted, as it canonicalised it.
    awaitingPush = false;
    pushUrl(stream === 'filter' ? track.join(',') : '');
  }
}

function pushUrl(filter) {
  const url = urlForFilter(window.location.href, filter);
  if (url !== window.location.href) window.history.pushState(null, '', url);
}

function addTweets(tweets) {
  if (tweets.length === 0) return;
  const now = Date.now();
  const history = now - helloAt < HISTORY_WINDOW_MS
    ? tweets.filter((tweet) => tweetTimeMs(tweet) < helloAt - HISTORY_AGE_MS).length
    : 0;
  rate.count(tweets.length - history);
  feed.add(tweets);
}

/** "posts" on Bluesky, "tweets" on Twitter: every label that names them. */
function useWords(next) {
  if (next === words) return;
  for (const node of document.querySelectorAll('[data-noun]')) {
    node.textContent = node.textContent.replace(new RegExp(`\\b${words.many}\\b`, 'g'), next.many);
  }
  words = next;
  rate.setUnit(words.many);
  showHeld(feed.held.length, feed.heldOverflowed);
}

function serverError(message, inBandReply) {
  const code = typeof message.code === 'string' ? message.code : '';
  const given = typeof message.message === 'string' ? message.message.trim() : '';
  const sentence = given && given.charAt(0).toLocaleUpperCase('en') + given.slice(1);
  const text = (sentence && (/[.!?…]$/.test(sentence) ? sentence : `${sentence}.`)) || FALLBACK_MESSAGES[code]
    || `The server reported an error${code ? ` (${code})` : ''}.`;
  if (inBandReply || FILTER_ERROR_CODES.has(code)) {
    awaitingPush = false; // refused: it never lands in the address bar
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
    awaitingPush = false;
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
  ui.empty.textContent = `Waiting for ${words.many}…`;
  const parts = [];
  if (current.stream === 'sample') {
    parts.push(`Showing the sample stream: ${words.sample}.`);
  } else {
    parts.push(`Showing ${words.many} matching `);
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
  ui.held.textContent = `${shown} new ${n === 1 ? words.one : words.many}`;
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

/**
 * Switch to `filter` ("" = sample), in-band when possible. With `push`, the address bar follows
 * once the server has accepted it (its hello): a refused filter never lands in a shared link.
 */
function applyFilter(filter, { push }) {
  clearFilterError();
  ui.input.value = filterForInput(filter);
  const shown = current?.stream === 'filter' ? current.track.join(',') : '';
  if (connection.phase === 'live' && connection.requested === null && current && shown === filter) {
    awaitingPush = false;
    if (push) pushUrl(filter);
    return;
  }
  awaitingPush = push;
  connection.changeFilter(filter);
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const problem = filterProblem(ui.input.value);
  if (problem) {
    showFilterError(problem); // the server would refuse it: say why now, and send nothing
    return;
  }
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

/** The Pause button: one reason to hold new posts; Resume lifts only it. */
function setPaused(paused) {
  feed.hold('paused', paused);
  ui.pause.textContent = paused ? 'Resume' : 'Pause';
  ui.pause.dataset.paused = String(paused);
  document.body.classList.toggle('is-paused', paused);
}

ui.pause.addEventListener('click', () => setPaused(!feed.holds.has('paused')));

ui.held.addEventListener('click', () => {
  setPaused(false);
  feed.resume();
  // Back to the top, where the new posts are.
  if (ui.list.getBoundingClientRect().top < headerBottom()) window.scrollTo({ top: 0 });
});

// --- What the reader reads stays put ------------------------------------------------------------
// Scrolled down, or a card focused: new posts wait behind the "N new posts" pill instead of
// pushing the page around; back at the top with nothing focused, they come in.

const SCROLL_SLACK_PX = 24;
const headerBottom = () => document.querySelector('.topbar').getBoundingClientRect().bottom;
let scrollFrame = 0;

function checkScrolled() {
  scrollFrame = 0;
  feed.hold('scrolled', ui.list.getBoundingClientRect().top < headerBottom() - SCROLL_SLACK_PX);
}

window.addEventListener('scroll', () => {
  if (!scrollFrame) scrollFrame = requestAnimationFrame(checkScrolled);
}, { passive: true });

ui.list.addEventListener('focusin', (event) => {
  if (event.target !== ui.list) feed.hold('focus', true);
});
ui.list.addEventListener('focusout', (event) => {
  if (!ui.list.contains(event.relatedTarget) || event.relatedTarget === ui.list) feed.hold('focus', false);
});

$('retry').addEventListener('click', () => connection.retryNow());
$('mode-note-close').addEventListener('click', () => {
  ui.modeNote.hidden = true;
  localStorage.setItem(DEMO_NOTE_KEY, '1');
});
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
