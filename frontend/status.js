/**
 * The header's live status: the connection indicator (with countdowns), the plain-words reason in
 * the feed when nothing arrives, and the posts-per-second rate.
 */

import { explainReason, retryIn } from './reasons.js';

const SOURCE_NAMES = { twitter: 'Twitter', emulator: 'the emulator', bluesky: 'Bluesky', x: 'X' };

function secondsUntil(at, now) {
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/**
 * Shows one of these states in `data-state` and in words:
 *   connecting    opening the WebSocket, or the server is connecting upstream
 *   live          tweets are flowing (or will, as soon as there are any)
 *   reconnecting  our WebSocket closed; "Reconnecting in Ns"
 *   backoff       the server's upstream connection is backing off; "retrying in Ns"
 *   degraded      our socket is fine but the server lost its feed (Redis) and is reconnecting;
 *                 tweets pause meanwhile, "Reconnecting to the feed… (Ns)"
 *   idle          the server has no upstream connection open right now
 *   error         a rejected filter, or an upstream error
 * The label is one short line; when nothing can arrive, `reasonLine` (in the feed) says why in a
 * sentence, with the next retry, and the server's own words as the detail.
 */
export class Indicator {
  constructor(element, { retryButton, announcer, reasonLine = null }) {
    this.element = element;
    this.label = element.querySelector('.label') ?? element;
    this.retryButton = retryButton;
    this.announcer = announcer;
    this.reasonLine = reasonLine;
    this.phase = 'connecting';
    this.detail = {};
    this.upstreamStatus = null; // {state, retryAt, reason}
    this.pendingKeywords = null; // {queued, overShare, retryAt}
    this.source = 'twitter';
    this.stream = null;
    this.lastState = null;
    this.render();
  }

  /** From the Connection. */
  socketPhase(phase, detail) {
    this.phase = phase;
    this.detail = detail;
    if (phase !== 'live') this.upstreamStatus = null;
    this.render();
  }

  /** From a hello frame. */
  hello(message) {
    const fallback = message.mode === 'demo' ? 'emulator' : 'twitter';
    this.source = Object.hasOwn(SOURCE_NAMES, String(message.source)) ? message.source : fallback;
    this.stream = message.stream;
    this.upstreamStatus = null;
    this.pendingKeywords = null;
    this.render();
  }

  /**
   * From a pending frame: keywords of ours the server has not yet asked its source for (`queued`,
   * within `retry_in` seconds), or that wait for room in the keyword budget shared by every viewer
   * (`over_share`). Both empty: everything is asked for.
   */
  pending(message, now = Date.now()) {
    const list = (value) => (Array.isArray(value) ? value.map(String) : []);
    const queued = list(message.queued);
    const overShare = list(message.over_share);
    const retryIn = message.retry_in === null ? NaN : Number(message.retry_in);
    this.pendingKeywords = queued.length || overShare.length
      ? { queued, overShare, retryAt: Number.isFinite(retryIn) ? now + retryIn * 1000 : null }
      : null;
    this.render(now);
  }

  /** From a status frame: the state of the server's upstream connection for our stream. */
  upstream(message, now = Date.now()) {
    if (this.stream && message.stream && message.stream !== this.stream) return;
    const retryIn = Number(message.retry_in);
    this.upstreamStatus = {
      state: String(message.state ?? ''),
      retryAt: Number.isFinite(retryIn) ? now + retryIn * 1000 : null,
      reason: typeof message.reason === 'string' ? message.reason : '',
    };
    this.render(now);
  }

  /** Called every second, for the countdowns. */
  tick(now = Date.now()) {
    if (this.phase === 'waiting' || this.upstreamStatus?.retryAt || this.pendingKeywords?.retryAt) this.render(now);
  }

  describe(now) {
    const source = SOURCE_NAMES[this.source];
    switch (this.phase) {
      case 'waiting': {
        const seconds = secondsUntil(this.detail.retryAt, now);
        return { state: 'reconnecting', text: seconds > 0 ? `Reconnecting in ${seconds}s` : 'Reconnecting…',
          title: 'The connection to the server was lost',
          sentence: `This page lost its connection to the server. It tries again ${retryIn(seconds)}.` };
      }
      case 'stopped':
        return { state: 'error', text: 'Not connected', title: 'The server refused this filter. Change it to try again.' };
      case 'live':
        break;
      default:
        return { state: 'connecting', text: 'Connecting…', title: 'Connecting to the server' };
    }
    const upstream = this.upstreamStatus;
    const retry = upstream?.retryAt ? secondsUntil(upstream.retryAt, now) : 0;
    const why = explainReason(upstream?.reason, source);
    const next = upstream?.retryAt ? ` The server tries again ${retryIn(retry)}.` : ' The server keeps trying.';
    const problem = (state, fallback) => ({
      state,
      text: `${upstream.reason ? why.short : fallback}${retry ? ` · retry in ${retry}s` : ''}`,
      title: upstream.reason || fallback,
      sentence: `${upstream.reason ? why.sentence : `${fallback}.`}${next}`,
      detail: upstream.reason,
    });
    switch (upstream?.state) {
      case 'connecting':
        if (upstream.reason) return { ...problem('connecting', `Connecting to ${source}`), text: `${why.short}…` };
        return { state: 'connecting', text: `Connecting to ${source}…`, title: '' };
      case 'backoff':
        return problem('backoff', `Waiting for ${source}`);
      case 'error':
        return problem('error', `No connection to ${source}`);
      case 'degraded':
        return problem('degraded', 'Reconnecting to the feed');
      case 'idle':
        return { state: 'idle', text: 'Idle', title: upstream.reason || 'Waiting for the stream to start' };
      default:
        return this.pendingKeywords ? this.describePending(now)
          : { state: 'live', text: 'Live', title: 'Connected: posts appear as they happen' };
    }
  }

  describePending(now) {
    const { queued, overShare, retryAt } = this.pendingKeywords;
    const n = queued.length + overShare.length;
    const words = n === 1 ? 'keyword' : 'keywords';
    if (queued.length) {
      const seconds = retryAt ? secondsUntil(retryAt, now) : 0;
      return { state: 'backoff', text: `Live; ${n} ${words} starting${seconds ? ` in ${seconds}s` : ' soon'}`,
        title: `Not followed yet: ${[...queued, ...overShare].join(', ')}. The server restarts its filter for everyone at a limited pace.` };
    }
    return { state: 'backoff', text: `Live; ${n} ${words} waiting for room`,
      title: `Not followed now: ${overShare.join(', ')}. Every viewer shares one keyword budget, and others need your share of it.` };
  }

  render(now = Date.now()) {
    const { state, text, title, sentence, detail } = this.describe(now);
    this.element.dataset.state = state;
    if (this.label.textContent !== text) this.label.textContent = text;
    if (title) this.element.setAttribute('title', title);
    else this.element.removeAttribute('title');
    this.retryButton.hidden = this.phase !== 'waiting';
    this.showReason(sentence, detail);
    if (state !== this.lastState) {
      this.lastState = state;
      // Announce changes of state, not every tick of a countdown.
      this.announcer.textContent = sentence ?? (title && state !== 'live' ? `${text}. ${title}` : text);
    }
  }

  /** The reason line in the feed: the sentence, and the server's own words in small print. */
  showReason(sentence, detail) {
    const line = this.reasonLine;
    if (!line) return;
    line.hidden = !sentence;
    const [text, small] = [line.querySelector('.reason-text'), line.querySelector('.reason-detail')];
    if (text.textContent !== (sentence ?? '')) text.textContent = sentence ?? '';
    small.textContent = detail ? `(${detail})` : '';
    line.parentElement?.classList.toggle('has-reason', Boolean(sentence));
  }
}

/** New posts per second, averaged over the last few whole seconds, in fixed memory. */
export class RateMeter {
  constructor(element, { windowSeconds = 5 } = {}) {
    this.element = element;
    this.windowSeconds = windowSeconds;
    this.unit = 'tweets';
    this.reset();
  }

  /** "tweets" or "posts", as the source calls them. */
  setUnit(unit) {
    this.unit = unit;
    this.element.textContent = this.element.textContent.replace(/\S+\/s$/, `${unit}/s`);
  }

  /** Not connected: show a dash until start(). */
  reset() {
    this.active = false;
    this.buckets = [];
    this.current = 0;
    this.element.textContent = `– ${this.unit}/s`;
  }

  start() {
    this.active = true;
  }

  count(n) {
    this.current += n;
  }

  /** Once a second. */
  tick() {
    if (!this.active) return;
    this.buckets.push(this.current);
    this.current = 0;
    if (this.buckets.length > this.windowSeconds) this.buckets.shift();
    const rate = this.buckets.reduce((sum, n) => sum + n, 0) / this.buckets.length;
    this.element.textContent = `${rate < 10 ? rate.toFixed(1) : Math.round(rate)} ${this.unit}/s`;
  }
}
