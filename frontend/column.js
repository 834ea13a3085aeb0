/**
 * One column: a filter, its own WebSocket, its cards, its connection state, its "N new" pill and
 * its reason line. The page has one column or several side by side; each is a plain subscription
 * on the server (one socket each: the protocol has no subscription ids), and the server's upstream
 * carries the union of every column's and every viewer's phrases, as for separate tabs.
 */

import { Connection } from './connection.js';
import { Feed } from './feed.js';
import { termMatcher } from './highlight.js';
import { filterForInput, filterProblem, filterString } from './query.js';
import { Indicator, RateMeter } from './status.js';
import { tweetTimeMs } from './time.js';

const FILTER_ERROR_CODES = new Set(['empty_phrase', 'phrase_too_long', 'too_many_phrases', 'viewer_phrase_limit',
  'address_phrase_limit']);
const FALLBACK_MESSAGES = {
  empty_phrase: 'One of the phrases in the filter is empty.',
  phrase_too_long: 'One of the phrases in the filter is too long.',
  too_many_phrases: 'The filter has too many phrases.',
  too_slow: 'Your connection could not keep up, so the server closed it. Reconnecting…',
};
// The most recent posts a new page gets at once are history, not the live rate: those that come
// in this long after the hello and were made more than HISTORY_AGE_MS before it.
const HISTORY_WINDOW_MS = 2000;
const HISTORY_AGE_MS = 3000;
const SCROLL_SLACK_PX = 24;
// Each part of a column, by `data-part`; the first column's parts also carry these ids.
const PARTS = [
  'connection', 'retry', 'rate', 'pause', 'held', 'announce', 'form', 'label', 'filter', 'reset',
  'help', 'error', 'showing', 'reason', 'list', 'empty', 'left', 'right', 'remove',
];
const FIRST_IDS = {
  connection: 'connection', retry: 'retry', rate: 'rate', pause: 'pause', held: 'held',
  announce: 'connection-announce', form: 'filter-form', filter: 'filter', reset: 'reset',
  help: 'filter-help', error: 'filter-error', showing: 'showing', reason: 'reason', list: 'tweets',
  empty: 'empty',
};

const numberFormat = new Intl.NumberFormat('en');
const count = (n, one, many) => `${numberFormat.format(n)} ${n === 1 ? one : many}`;

function isTweet(value) {
  return value !== null && typeof value === 'object' && typeof value.id_str === 'string' && value.id_str !== '';
}

export class Column {
  /**
   * @param {HTMLElement} root  a clone of the column template
   * @param {object} page  what columns share: `words`, `notices`, `hello(message)`, `accepted()`,
   *   `heldChanged()`, `remove(column)`, `move(column, step)`
   */
  constructor(root, page, filter) {
    this.root = root;
    this.page = page;
    this.ui = {};
    for (const part of PARTS) this.ui[part] = root.querySelector(`[data-part="${part}"]`);
    this.current = null; // the stream the server last said hello for: {stream, track, key}
    this.accepted = filter; // what this column's part of the address bar says
    this.awaitingPush = false;
    this.helloAt = 0;
    this.rate = new RateMeter(this.ui.rate);
    this.indicator = new Indicator(this.ui.connection,
      { retryButton: this.ui.retry, announcer: this.ui.announce, reasonLine: this.ui.reason });
    this.feed = new Feed(this.ui.list, { onHeldChange: () => this.showHeld() });
    this.connection = new Connection({
      onMessage: (message, context) => this.receive(message, context),
      onPhase: (phase, detail) => this.phaseChanged(phase, detail),
    });
    this.scrollFrame = 0;
    this.wire();
    this.ui.filter.value = filterForInput(filter);
    this.useWords();
    this.connection.start(filter);
  }

  /** Ids for the first column (what the single-column page always had), suffixed for others. */
  label(index) {
    const suffix = index === 0 ? '' : `-${index + 1}`;
    for (const [part, id] of Object.entries(FIRST_IDS)) this.ui[part].id = `${id}${suffix}`;
    this.ui.label.htmlFor = this.ui.filter.id;
    this.ui.filter.setAttribute('aria-describedby', `${this.ui.help.id} ${this.ui.error.id}`);
    this.root.setAttribute('aria-label', `Column ${index + 1}`);
  }

  /** The filter this column shows or asks for now: "" for the sample stream. */
  get filter() {
    return this.connection.requested ?? this.connection.filter;
  }

  close() {
    this.connection.stop();
    this.root.remove();
  }

  // --- Messages from the server ----------------------------------------------------------------

  receive(message, { inBandReply }) {
    switch (message.type) {
      case 'hello':
        this.hello(message);
        break;
      case 'tweet':
        if (isTweet(message.tweet)) this.addTweets([message.tweet]);
        break;
      case 'tweets':
        if (Array.isArray(message.tweets)) this.addTweets(message.tweets.filter(isTweet));
        break;
      case 'delete':
        if (message.id_str !== undefined) this.feed.remove(String(message.id_str));
        break;
      case 'profile':
        this.feed.applyProfile(message.profile);
        break;
      case 'limit': {
        const n = Number(message.undelivered) || 0;
        if (n <= 0) break;
        this.page.notices.show('limit',
          `${count(n, 'matching tweet was', 'matching tweets were')} held back by Twitter (rate limit)`,
          { tone: 'warn' });
        break;
      }
      case 'skipped': {
        const n = Number(message.count) || 0;
        const { one, many } = this.page.words;
        if (n > 0) {
          this.page.notices.add('skipped', n,
            (total) => `You missed ${count(total, one, many)} because your connection could not keep up`,
            { tone: 'warn' });
        }
        break;
      }
      case 'status':
        this.indicator.upstream(message); // the reason, in plain words, goes to the reason line
        break;
      case 'pending':
        this.indicator.pending(message);
        break;
      case 'error':
        this.serverError(message, inBandReply);
        break;
      default:
        break; // unknown types are for newer pages
    }
  }

  hello(message) {
    this.page.hello(message);
    this.indicator.hello(message);
    this.helloAt = Date.now();
    const stream = message.stream === 'filter' ? 'filter' : 'sample';
    const track = stream === 'filter' && Array.isArray(message.track) ? message.track.map(String) : [];
    const key = `${stream}\n${track.join(',')}`;
    if (this.current?.key !== key) {
      // Another stream or other keywords: the cards on screen no longer answer the question.
      this.feed.clear();
      this.feed.setMatcher(termMatcher(track));
    }
    this.current = { stream, track, key };
    this.accepted = stream === 'filter' ? track.join(',') : '';
    this.showCurrent();
    this.clearFilterError();
    if (this.awaitingPush) {
      // Accepted: now it may be shared, as the server canonicalised it.
      this.awaitingPush = false;
      this.page.accepted();
    }
  }

  addTweets(tweets) {
    if (tweets.length === 0) return;
    const history = Date.now() - this.helloAt < HISTORY_WINDOW_MS
      ? tweets.filter((tweet) => tweetTimeMs(tweet) < this.helloAt - HISTORY_AGE_MS).length
      : 0;
    this.rate.count(tweets.length - history);
    this.feed.add(tweets);
  }

  serverError(message, inBandReply) {
    const code = typeof message.code === 'string' ? message.code : '';
    const given = typeof message.message === 'string' ? message.message.trim() : '';
    const sentence = given && given.charAt(0).toLocaleUpperCase('en') + given.slice(1);
    const text = (sentence && (/[.!?…]$/.test(sentence) ? sentence : `${sentence}.`)) || FALLBACK_MESSAGES[code]
      || `The server reported an error${code ? ` (${code})` : ''}.`;
    if (inBandReply || FILTER_ERROR_CODES.has(code)) {
      this.awaitingPush = false; // refused: it never lands in the address bar
      this.showFilterError(inBandReply && this.current ? `${text} Still showing the previous stream.` : text);
    } else {
      this.page.notices.show(`error:${code}`, text, { tone: 'error', ttl: 20_000 });
    }
  }

  phaseChanged(phase, detail) {
    this.indicator.socketPhase(phase, detail);
    if (phase === 'live') this.rate.start();
    else this.rate.reset();
    if (phase !== 'stopped') return;
    this.awaitingPush = false;
    // 1008: the server refused what we asked for. Wait for the viewer instead of retrying in a loop.
    const { many } = this.page.words;
    this.feed.clear();
    this.current = null;
    this.ui.empty.textContent = 'No stream right now.';
    if (this.connection.filter) {
      if (this.ui.error.hidden) this.showFilterError('The server refused this filter.');
      this.ui.showing.textContent =
        `Not showing any ${many}: change the filter and press Apply, or press Reset for the sample stream.`;
    } else {
      this.ui.showing.textContent =
        `Not showing any ${many}: the server refused the connection. Reload the page to try again.`;
    }
  }

  // --- What is on screen -----------------------------------------------------------------------

  /** "posts" on Bluesky, "tweets" on Twitter: every label of this column that names them. */
  useWords() {
    const { many } = this.page.words;
    this.ui.label.textContent = `Filter ${many} by keywords`;
    this.rate.setUnit(many);
    if (this.current) this.showCurrent();
    else this.ui.empty.textContent = `Waiting for ${many}…`;
    this.showHeld();
  }

  showCurrent() {
    const { many, sample } = this.page.words;
    this.ui.empty.textContent = `Waiting for ${many}…`;
    const parts = [];
    if (this.current.stream === 'sample') {
      parts.push(`Showing the sample stream: ${sample}.`);
    } else {
      parts.push(`Showing ${many} matching `);
      this.current.track.forEach((phrase, i) => {
        if (i > 0) parts.push(' or ');
        const chip = document.createElement('span');
        chip.className = 'phrase';
        chip.textContent = phrase;
        parts.push(chip);
      });
    }
    this.ui.showing.replaceChildren(...parts);
  }

  /** The "37 new posts" pill; the page puts the total in the tab title. */
  showHeld() {
    const n = this.feed.held.length;
    const { one, many } = this.page.words;
    const shown = `${numberFormat.format(n)}${this.feed.heldOverflowed ? '+' : ''}`;
    this.ui.held.hidden = n === 0;
    this.ui.held.textContent = `${shown} new ${n === 1 ? one : many}`;
    this.ui.held.title = this.feed.heldOverflowed
      ? `Show them (only the newest ${numberFormat.format(n)} were kept)` : 'Show them';
    this.page.heldChanged();
  }

  showFilterError(text) {
    this.ui.error.textContent = text;
    this.ui.error.hidden = false;
    this.ui.filter.setAttribute('aria-invalid', 'true');
  }

  clearFilterError() {
    this.ui.error.hidden = true;
    this.ui.error.textContent = '';
    this.ui.filter.removeAttribute('aria-invalid');
  }

  // --- Viewer actions --------------------------------------------------------------------------

  /**
   * Switch to `filter` ("" = sample), in-band when possible. With `push`, the address bar follows
   * once the server has accepted it (its hello): a refused filter never lands in a shared link.
   */
  applyFilter(filter, { push }) {
    this.clearFilterError();
    this.ui.filter.value = filterForInput(filter);
    const shown = this.current?.stream === 'filter' ? this.current.track.join(',') : '';
    const connection = this.connection;
    if (connection.phase === 'live' && connection.requested === null && this.current && shown === filter) {
      this.awaitingPush = false;
      if (push) this.page.accepted();
      return;
    }
    this.awaitingPush = push;
    connection.changeFilter(filter);
  }

  setPaused(paused) {
    this.feed.hold('paused', paused);
    this.ui.pause.textContent = paused ? 'Resume' : 'Pause';
    this.ui.pause.dataset.paused = String(paused);
    this.root.classList.toggle('is-paused', paused);
  }

  /** Whether the reader has scrolled this column's list up under its head. */
  checkScrolled() {
    this.scrollFrame = 0;
    const head = this.root.querySelector('.column-head').getBoundingClientRect().bottom;
    this.feed.hold('scrolled', this.ui.list.getBoundingClientRect().top < head - SCROLL_SLACK_PX);
  }

  onScroll() {
    if (!this.scrollFrame) this.scrollFrame = requestAnimationFrame(() => this.checkScrolled());
  }

  wire() {
    const { ui } = this;
    ui.form.addEventListener('submit', (event) => {
      event.preventDefault();
      const problem = filterProblem(ui.filter.value);
      if (problem) {
        this.showFilterError(problem); // the server would refuse it: say why now, and send nothing
        return;
      }
      this.applyFilter(filterString(ui.filter.value), { push: true });
    });
    ui.reset.addEventListener('click', () => {
      this.applyFilter('', { push: true });
      ui.filter.focus();
    });
    ui.filter.addEventListener('input', () => {
      if (!ui.error.hidden) this.clearFilterError();
    });
    ui.pause.addEventListener('click', () => this.setPaused(!this.feed.holds.has('paused')));
    ui.held.addEventListener('click', () => {
      this.setPaused(false);
      this.feed.resume();
      // Back to the top, where the new posts are: the column's own, or the page's.
      this.root.scrollTo({ top: 0 });
      if (this.root.getBoundingClientRect().top < 0 || window.scrollY > 0) window.scrollTo({ top: 0 });
    });
    ui.retry.addEventListener('click', () => this.connection.retryNow());
    ui.left.addEventListener('click', () => this.page.move(this, -1));
    ui.right.addEventListener('click', () => this.page.move(this, 1));
    ui.remove.addEventListener('click', () => this.page.remove(this));
    // What the reader reads stays put: scrolled down, or a card focused, new posts wait behind
    // the pill instead of pushing the column around; back at the top they come in.
    this.root.addEventListener('scroll', () => this.onScroll(), { passive: true });
    ui.list.addEventListener('focusin', (event) => {
      if (event.target !== ui.list) this.feed.hold('focus', true);
    });
    ui.list.addEventListener('focusout', (event) => {
      if (!ui.list.contains(event.relatedTarget) || event.relatedTarget === ui.list) this.feed.hold('focus', false);
    });
  }
}
