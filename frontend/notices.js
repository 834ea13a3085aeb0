/** Short messages in plain words (rate limits, missed tweets, errors) that fade after a while. */

const DEFAULT_TTL_MS = 10_000;
const FADE_MS = 400;

export class Notices {
  /** @param {HTMLElement} list  an element with aria-live="polite" */
  constructor(list, { max = 3 } = {}) {
    this.list = list;
    this.max = max;
    this.shown = new Map(); // key -> {item, text, timer, count}; never more than `max` entries
  }

  /**
   * Show a notice, or update the one with the same key in place (so a burst of rate-limit reports
   * is one line that keeps its latest number, not a pile of lines).
   * tone: "info" | "warn" | "error".
   */
  show(key, text, { tone = 'info', ttl = DEFAULT_TTL_MS } = {}) {
    let entry = this.shown.get(key);
    if (entry) {
      clearTimeout(entry.timer);
      entry.item.classList.remove('leaving');
    } else {
      entry = this.create(key);
    }
    entry.item.dataset.tone = tone;
    if (entry.text.textContent !== text) entry.text.textContent = text;
    entry.timer = setTimeout(() => this.dismiss(key), ttl);
    return entry;
  }

  /** Add `count` to the number a notice reports, e.g. missed tweets since it appeared. */
  add(key, count, format, options) {
    const total = (this.shown.get(key)?.count ?? 0) + count;
    this.show(key, format(total), options).count = total;
  }

  create(key) {
    while (this.shown.size >= this.max) this.remove(this.shown.keys().next().value);
    const item = document.createElement('li');
    item.className = 'notice';
    const text = document.createElement('span');
    text.className = 'notice-text';
    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'notice-close';
    close.setAttribute('aria-label', 'Dismiss notice');
    close.textContent = '×';
    close.addEventListener('click', () => this.remove(key));
    item.append(text, close);
    this.list.append(item);
    const entry = { item, text, timer: 0, count: 0 };
    this.shown.set(key, entry);
    return entry;
  }

  /** Fade out, then remove. */
  dismiss(key) {
    const entry = this.shown.get(key);
    if (!entry) return;
    entry.item.classList.add('leaving');
    entry.timer = setTimeout(() => this.remove(key), FADE_MS);
  }

  remove(key) {
    const entry = this.shown.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.item.remove();
    this.shown.delete(key);
  }
}
