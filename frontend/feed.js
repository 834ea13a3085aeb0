/**
 * The list of tweet cards: newest on top, at most `maxCards` in the DOM, deletes, author profiles,
 * and holding new posts back. Everything it holds is bounded: the cards in the DOM, the tweets
 * waiting for the next frame (at most maxCards), the tweets held (at most holdCap) and the profiles.
 *
 * What the reader is reading never moves or goes: new posts are held while anything asks for it
 * (the Pause button, the reader scrolled down, a focused card), and the cap never removes a card
 * that is in or above the viewport (the list may run over the cap until it scrolls away).
 */

import { Profiles } from './profiles.js';
import { applyProfile, renderTweet, replaceBrokenAvatar } from './render.js';
import { relativeTime } from './time.js';

export const DEFAULT_MAX_CARDS = 200;
export const DEFAULT_HOLD_CAP = 500;

/** The card limit from `data-max-cards` on the list, or the default. */
export function maxCardsOf(list) {
  const value = Number.parseInt(list.dataset.maxCards ?? '', 10);
  return Number.isInteger(value) && value > 0 ? value : DEFAULT_MAX_CARDS;
}

/** Drop a photo that failed to load, and its box when it was the last one. */
function removePhoto(img) {
  const box = img.closest('.media');
  img.closest('.media-link')?.remove();
  if (box && !box.firstElementChild) box.remove();
}

export class Feed {
  /**
   * @param {HTMLOListElement} list
   * @param {{maxCards?: number, holdCap?: number, onHeldChange?: (count: number, overflowed: boolean) => void,
   *          profiles?: Profiles}} options
   */
  constructor(list, {
    maxCards = maxCardsOf(list), holdCap = DEFAULT_HOLD_CAP, onHeldChange = () => {}, profiles = new Profiles(),
  } = {}) {
    this.list = list;
    this.profiles = profiles;
    this.maxCards = maxCards;
    this.holdCap = holdCap;
    this.onHeldChange = onHeldChange;
    this.matcher = null;
    this.cards = new Map(); // id_str -> <li>, only for cards in the DOM
    this.pending = []; // waiting for the next animation frame
    this.held = []; // waiting for the viewer to resume
    this.heldOverflowed = false;
    this.holds = new Set(); // why new posts wait: 'paused', 'scrolled', 'focus'
    this.frame = 0;

    // One listener for every avatar on the page: error events do not bubble, so listen on capture.
    list.addEventListener('error', (event) => {
      const target = event.target;
      if (target instanceof HTMLImageElement) {
        if (target.classList.contains('avatar')) replaceBrokenAvatar(target);
        else if (target.classList.contains('photo')) removePhoto(target);
      }
    }, true);
  }

  /** The keyword matcher used for cards rendered from now on. */
  setMatcher(matcher) {
    this.matcher = matcher;
  }

  /** Tweets in arrival order (oldest first). */
  add(tweets) {
    if (this.paused) {
      this.held.push(...tweets);
      if (this.held.length > this.holdCap) {
        this.held.splice(0, this.held.length - this.holdCap);
        this.heldOverflowed = true;
      }
      this.notifyHeld();
      return;
    }
    this.pending.push(...tweets);
    // Only the newest maxCards could ever be shown, so older ones are not worth keeping.
    if (this.pending.length > this.maxCards) this.pending.splice(0, this.pending.length - this.maxCards);
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Render what is pending, newest on top, then drop the oldest cards beyond the limit. */
  flush() {
    this.frame = 0;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const now = Date.now();
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i -= 1) {
      const tweet = batch[i];
      if (this.cards.has(tweet.id_str)) continue;
      let item;
      try {
        // Profiles that came before this tweet was drawn (held, pending, or a later post).
        item = renderTweet(this.profiles.fill(tweet), this.matcher, now);
      } catch (error) {
        console.warn('pats-trio: could not render tweet', tweet.id_str, error);
        continue;
      }
      this.cards.set(tweet.id_str, item);
      fragment.append(item);
    }
    this.list.prepend(fragment);
    this.trim();
  }

  trim() {
    while (this.list.childElementCount > this.maxCards) {
      const item = this.list.lastElementChild;
      // In or above the viewport: the reader may be reading it. It goes once it scrolls away.
      if (item.getBoundingClientRect().top < window.innerHeight) break;
      this.forget(item);
      item.remove();
    }
  }

  forget(item) {
    const id = item.firstElementChild?.dataset.id;
    if (id !== undefined && this.cards.get(id) === item) this.cards.delete(id);
  }

  /** Remove a deleted tweet wherever it is: a card, a retweet of it, or a tweet not yet shown. */
  remove(id) {
    const item = this.cards.get(id);
    if (item) {
      this.cards.delete(id);
      item.remove();
    }
    for (const [cardId, card] of this.cards) {
      if (card.firstElementChild?.dataset.originalId === id) {
        this.cards.delete(cardId);
        card.remove();
      }
    }
    const keep = (tweet) => tweet.id_str !== id && tweet.retweeted_status?.id_str !== id;
    this.pending = this.pending.filter(keep);
    const heldBefore = this.held.length;
    this.held = this.held.filter(keep);
    if (this.held.length !== heldBefore) this.notifyHeld();
  }

  /**
   * An author's profile (a `profile` frame): fill it in on the cards already shown and remember it
   * for cards drawn later. Profiles outlive clear(): a new filter can show the same authors.
   */
  applyProfile(value) {
    const profile = this.profiles.remember(value);
    if (profile) applyProfile(this.list, profile);
  }

  /** Empty the list (a new stream or filter), including held and pending tweets. */
  clear() {
    this.list.replaceChildren();
    this.cards.clear();
    this.pending = [];
    this.held = [];
    this.heldOverflowed = false;
    this.notifyHeld();
  }

  /** Whether new posts wait, for any reason. */
  get paused() {
    return this.holds.size > 0;
  }

  /** Hold new posts back for `reason` (`on`), or stop; the last reason gone shows them. */
  hold(reason, on) {
    if (on === this.holds.has(reason)) return;
    if (on) this.holds.add(reason);
    else this.holds.delete(reason);
    if (on && this.pending.length) {
      // Not drawn yet: they wait with the rest, so nothing lands above what is being read.
      const pending = this.pending;
      this.pending = [];
      this.add(pending);
    } else if (this.paused) this.notifyHeld();
    else this.release();
  }

  pause() {
    this.hold('paused', true);
  }

  /** Show everything held, whatever held it, and let new posts through again. */
  resume() {
    this.holds.clear();
    this.release();
  }

  release() {
    const held = this.held;
    this.held = [];
    this.heldOverflowed = false;
    this.notifyHeld();
    if (held.length) this.add(held);
  }

  notifyHeld() {
    this.onHeldChange(this.held.length, this.heldOverflowed);
  }

  get size() {
    return this.list.childElementCount;
  }

  /** Update every card's relative time: one pass for the whole list. */
  refreshTimes(now = Date.now()) {
    for (const time of this.list.querySelectorAll('time[data-ts]')) {
      const text = relativeTime(Number(time.dataset.ts), now);
      if (time.textContent !== text) time.textContent = text;
    }
  }
}
