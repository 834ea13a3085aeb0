/**
 * The page's one WebSocket to the server: connect, reconnect on its own with exponential backoff and
 * jitter, and change the filter in-band when the socket is open (it saves a reconnect).
 */

import { socketUrl } from './query.js';

export const POLICY_VIOLATION = 1008;
const BASE_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;
/** A connection that lived this long counts as healthy: the next drop starts the backoff at 1s again. */
const STABLE_MS = 10_000;
// Frames come as binary UTF-8 JSON: the server sends them as encoded once, for every viewer.
const BINARY_SUBPROTOCOL = 'pats.binary';
const utf8 = new TextDecoder();

/** Delay before reconnect number `attempt` (0-based): about 1s, 2s, 4s … 30s, give or take 20%. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.min(attempt, 16));
  return Math.min(MAX_DELAY_MS, Math.round(base * (0.8 + 0.4 * random())));
}

/**
 * Phases reported to onPhase(phase, detail):
 *   "connecting"  socket opening, or open and waiting for the server's hello
 *   "live"        hello received
 *   "waiting"     closed; reconnecting at detail.retryAt (ms since the epoch)
 *   "stopped"     closed with 1008 (a rejected filter): waits for start() or changeFilter()
 */
export class Connection {
  constructor({ onMessage, onPhase, location = window.location }) {
    this.onMessage = onMessage;
    this.onPhase = onPhase;
    this.location = location;
    this.ws = null;
    this.filter = ''; // what the next connection asks for: the last filter the server accepted
    this.requested = null; // an in-band filter change waiting for its hello or error
    this.attempt = 0;
    this.timer = 0;
    this.phase = 'idle';
    this.greetedAt = 0;
    this.lastErrorCode = null;
  }

  /** Connect now for `filter` ("" = sample stream), dropping any current socket. */
  start(filter) {
    this.filter = filter;
    this.requested = null;
    this.attempt = 0;
    this.open();
  }

  /** In-band when the socket is live, otherwise a fresh connection. */
  changeFilter(filter) {
    if (this.phase === 'live' && this.ws?.readyState === WebSocket.OPEN) {
      this.requested = filter;
      this.ws.send(JSON.stringify({ type: 'filter', track: filter }));
      return;
    }
    this.start(filter);
  }

  /** Close for good (a column removed): no reconnect. */
  stop() {
    clearTimeout(this.timer);
    this.drop();
    this.phase = 'closed';
  }

  /** Skip the rest of a backoff wait. */
  retryNow() {
    if (this.phase === 'waiting') this.open();
  }

  open() {
    clearTimeout(this.timer);
    this.drop();
    const ws = new WebSocket(socketUrl(this.filter, this.location), [BINARY_SUBPROTOCOL]);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.greetedAt = 0;
    this.lastErrorCode = null;
    ws.onmessage = (event) => {
      if (ws === this.ws) this.receive(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.closed(event);
    };
    this.setPhase('connecting');
  }

  /** Forget the current socket and close it quietly. */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onmessage = null;
    ws.onclose = null;
    if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000);
    else if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(typeof data === 'string' ? data : utf8.decode(data));
    } catch {
      return;
    }
    if (message === null || typeof message !== 'object') return;
    let inBandReply = false;
    if (message.type === 'hello') {
      inBandReply = this.requested !== null;
      this.requested = null;
      this.filter = message.stream === 'filter' && Array.isArray(message.track) ? message.track.join(',') : '';
      this.greetedAt = Date.now();
      this.setPhase('live');
    } else if (message.type === 'error') {
      this.lastErrorCode = message.code;
      inBandReply = this.requested !== null;
      this.requested = null; // rejected: the socket stays on the old filter
    }
    this.onMessage(message, { inBandReply });
  }

  closed(event) {
    this.ws = null;
    if (this.greetedAt && Date.now() - this.greetedAt >= STABLE_MS) this.attempt = 0;
    if (this.requested !== null) {
      // Closed before the server answered an in-band change: reconnect with what the viewer asked for.
      this.filter = this.requested;
      this.requested = null;
    }
    if (event.code === POLICY_VIOLATION && this.lastErrorCode !== 'too_slow') {
      this.setPhase('stopped', { code: event.code, reason: event.reason, errorCode: this.lastErrorCode });
      return;
    }
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.open(), delay);
    this.setPhase('waiting', { retryAt: Date.now() + delay, code: event.code });
  }

  setPhase(phase, detail = {}) {
    this.phase = phase;
    this.onPhase(phase, detail);
  }
}
