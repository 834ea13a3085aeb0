/**
 * Build one tweet card as DOM nodes. Tweet data only ever reaches the page through textContent,
 * text nodes and checked attributes: never through HTML parsing.
 */

import { appendHighlighted } from './highlight.js';
import { mergeUser } from './profiles.js';
import { fullTime, relativeTime, tweetTimeMs } from './time.js';

const TWITTER = 'https://twitter.com';
const BLUESKY = 'https://bsky.app';
const X = 'https://x.com';
const AVATAR_COLOURS = 8;
const MAX_PHOTOS = 4;

/** An absolute http(s) URL, normalised, or null. */
export function safeHref(value) {
  if (typeof value !== 'string' || value === '') return null;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** An image source we are willing to load: https: URLs and data:image/ URIs only. */
export function safeImageSrc(value) {
  if (typeof value !== 'string') return null;
  if (/^data:image\//i.test(value)) return value;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A link that opens in a new tab, or a plain span when the URL is not http(s). */
function link(href, className, text) {
  const safe = safeHref(href);
  const node = el(safe ? 'a' : 'span', className, text);
  if (safe) {
    node.setAttribute('href', safe);
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
  return node;
}

function str(value) {
  return typeof value === 'string' ? value : '';
}

// A DID keeps its colons: bsky.app/profile/did:plc:... is the form Bluesky itself links to.
const blueskyProfileUrl = (actor) => `${BLUESKY}/profile/${encodeURIComponent(actor).replaceAll('%3A', ':')}`;

/** Twitter's link shapes, which X kept: `site` is the host, `name` what the links say. */
function twitterLinks(site, name) {
  return {
    profileUrl: (screenName) => `${site}/${encodeURIComponent(screenName)}`,
    statusUrl: (user, id) =>
      `${site}/${encodeURIComponent(str(user.screen_name) || 'i')}/status/${encodeURIComponent(id)}`,
    hashtagUrl: (tag) => `${site}/hashtag/${encodeURIComponent(tag)}`,
    openTitle: `Open on ${name}`,
    reposted: name === 'X' ? 'reposted' : 'retweeted',
  };
}
const TWITTER_LINKS = twitterLinks(TWITTER, 'Twitter');

/** Where a card's links go and what its badge says, by the tweet's `source`. */
const NETWORKS = {
  twitter: { ...TWITTER_LINKS, label: 'Twitter', title: 'From Twitter' },
  x: { ...twitterLinks(X, 'X'), label: 'X', title: 'From X' },
  // No badge on each card: the page says once that it is a demo.
  emulator: { ...TWITTER_LINKS, label: '', title: '' },
  bluesky: {
    profileUrl: blueskyProfileUrl,
    // A post's address needs its record key, which only the server knows: it sends `url`.
    statusUrl: (user) => blueskyProfileUrl(actorOf(user)),
    hashtagUrl: (tag) => `${BLUESKY}/hashtag/${encodeURIComponent(tag)}`,
    openTitle: 'Open on Bluesky',
    reposted: 'reposted',
    label: 'Bluesky',
    title: 'From Bluesky',
  },
};
// Tweets from a server that predates `source` link as they always did, without a badge.
const UNKNOWN_NETWORK = { ...TWITTER_LINKS, label: '', title: '' };

/** The links and label for a tweet's `source` ("twitter", "emulator", "bluesky", "x"). */
export function networkOf(source) {
  return typeof source === 'string' && Object.hasOwn(NETWORKS, source) ? NETWORKS[source] : UNKNOWN_NETWORK;
}

/** The tweet's own permalink when the server sent one (Bluesky posts), else the network's. */
function permalinkOf(tweet, user, network) {
  return safeHref(tweet.url) ?? network.statusUrl(user, str(tweet.id_str));
}

/** The handle to link a profile by: Bluesky accepts the DID while the handle is unknown. */
function actorOf(user) {
  return str(user.screen_name) || str(user.id_str);
}

/**
 * Mark a node as showing `user`, so a later profile frame for the same id finds it. The name and
 * handle it was drawn with ride along, for the same reason.
 */
function markUser(node, user) {
  const id = str(user.id_str);
  if (!id) return node;
  node.dataset.userId = id;
  node.dataset.name = str(user.name);
  node.dataset.screenName = str(user.screen_name);
  return node;
}

function initials(name, screenName) {
  const words = (name || screenName || '?').trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((word) => Array.from(word)[0] ?? '');
  return letters.join('').toLocaleUpperCase() || '?';
}

function colourIndex(text) {
  let hash = 0;
  for (const ch of text) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % AVATAR_COLOURS;
}

/** The circle with initials that stands in for a missing or broken avatar. */
export function initialsAvatar(name, screenName, small = false) {
  const node = el('span', `avatar avatar-initials c${colourIndex(screenName || name || '?')}`);
  if (small) node.classList.add('avatar-small');
  node.setAttribute('role', 'img');
  node.setAttribute('aria-label', `Profile picture of ${name || screenName || 'unknown user'}`);
  node.textContent = initials(name, screenName);
  node.dataset.name = name ?? '';
  node.dataset.screenName = screenName ?? '';
  return node;
}

function avatar(user, small) {
  const name = str(user.name);
  const screenName = str(user.screen_name);
  const src = safeImageSrc(user.profile_image_url_https);
  if (!src) return markUser(initialsAvatar(name, screenName, small), user);
  const img = markUser(el('img', small ? 'avatar avatar-small' : 'avatar'), user);
  img.setAttribute('src', src);
  img.setAttribute('alt', `Profile picture of ${name || screenName}`);
  img.setAttribute('width', small ? '20' : '48');
  img.setAttribute('height', small ? '20' : '48');
  img.setAttribute('loading', 'lazy');
  img.setAttribute('decoding', 'async');
  img.setAttribute('referrerpolicy', 'no-referrer');
  // Read back by the list's error handler to build the initials circle.
  img.dataset.name = name;
  img.dataset.screenName = screenName;
  return img;
}

/** Swap a broken avatar image for its initials circle (called from one delegated error listener). */
export function replaceBrokenAvatar(img) {
  const circle = initialsAvatar(img.dataset.name, img.dataset.screenName, img.classList.contains('avatar-small'));
  if (img.dataset.userId) circle.dataset.userId = img.dataset.userId;
  img.replaceWith(circle);
}

/** Name, verified mark, @handle and the time that links to the tweet. */
function byline(tweet, user, now, network) {
  const header = el('header', 'byline');
  const name = str(user.name) || str(user.screen_name);
  const screenName = str(user.screen_name);

  const author = markUser(link(network.profileUrl(actorOf(user)), 'author'), user);
  const nameNode = el('span', 'name', name);
  nameNode.setAttribute('dir', 'auto'); // keeps a right-to-left name from pulling the @handle around
  author.append(nameNode);
  if (user.verified === true) {
    const mark = el('span', 'verified', '✓');
    mark.setAttribute('role', 'img');
    mark.setAttribute('aria-label', 'Verified account');
    mark.setAttribute('title', 'Verified account');
    author.append(mark);
  }
  author.append(el('span', 'handle', `@${screenName}`));
  header.append(author);

  const ms = tweetTimeMs(tweet);
  const permalink = link(permalinkOf(tweet, user, network), 'permalink');
  permalink.setAttribute('title', network.openTitle);
  const time = el('time', null, Number.isFinite(ms) ? relativeTime(ms, now) : 'open');
  if (Number.isFinite(ms)) {
    time.setAttribute('datetime', new Date(ms).toISOString());
    time.setAttribute('title', fullTime(ms));
    time.dataset.ts = String(ms);
  }
  permalink.append(time);
  const dot = el('span', 'dot', '·');
  dot.setAttribute('aria-hidden', 'true');
  header.append(dot, permalink);
  return header;
}

function validIndices(entity, length) {
  const indices = entity?.indices;
  if (!Array.isArray(indices) || indices.length !== 2) return null;
  const [start, end] = indices;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > length || start >= end) {
    return null;
  }
  return [start, end];
}

/** Every entity with usable indices, sorted, overlaps dropped. */
function collectEntities(entities, length) {
  const found = [];
  const add = (kind, list) => {
    if (!Array.isArray(list)) return;
    for (const entity of list) {
      const span = validIndices(entity, length);
      if (span) found.push({ kind, entity, start: span[0], end: span[1] });
    }
  };
  add('hashtag', entities?.hashtags);
  add('mention', entities?.user_mentions);
  add('url', entities?.urls);
  add('media', entities?.media);
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  const kept = [];
  let edge = 0;
  for (const item of found) {
    if (item.start >= edge) {
      kept.push(item);
      edge = item.end;
    }
  }
  return kept;
}

function displayRange(tweet, length) {
  const range = tweet.display_text_range;
  if (Array.isArray(range) && range.length === 2) {
    const [start, end] = range;
    if (Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end) {
      return [start, Math.min(end, length)];
    }
  }
  return [0, length];
}

/** The node for one entity, or null to leave it out (a link to a quoted tweet shown below). */
function entityNode(item, shownText, matcher, hiddenUrl, network, matched) {
  const { kind, entity } = item;
  let node;
  if (kind === 'hashtag') {
    node = link(network.hashtagUrl(str(entity.text) || shownText.replace(/^[#＃]/, '')), 'hashtag');
  } else if (kind === 'mention') {
    node = link(network.profileUrl(str(entity.screen_name) || shownText.replace(/^[@＠]/, '')), 'mention');
  } else {
    const href = safeHref(entity.expanded_url) ?? safeHref(entity.url);
    if (hiddenUrl && href && hiddenUrl(href)) return null;
    node = link(href, 'url');
    shownText = str(entity.display_url) || shownText;
    if (href) node.setAttribute('title', href);
  }
  // An isolate, so "#python" stays "#python" inside right-to-left text (and "#مرحبا" inside left-to-right).
  node.setAttribute('dir', 'auto');
  if (matched?.has(entity)) node.classList.add('matched'); // the filter matched through it
  appendHighlighted(node, shownText, matcher);
  return node;
}

/** The tweet text with links, hashtags, mentions and highlighted keywords. */
function tweetText(tweet, matcher, hiddenUrl, network, matched = null) {
  const text = str(tweet.text);
  const chars = Array.from(text); // indices are in code points, not UTF-16 units
  const [from, to] = displayRange(tweet, chars.length);
  const paragraph = el('p', 'text');
  paragraph.setAttribute('dir', 'auto');
  const lang = str(tweet.lang);
  if (/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(lang)) paragraph.setAttribute('lang', lang);

  const entities = collectEntities(tweet.entities, chars.length);
  let cursor = from;
  for (const item of entities) {
    if (item.start < from || item.end > to) continue;
    appendHighlighted(paragraph, chars.slice(cursor, item.start).join(''), matcher);
    const node = entityNode(item, chars.slice(item.start, item.end).join(''), matcher, hiddenUrl, network, matched);
    if (node) paragraph.append(node);
    cursor = item.end;
  }
  appendHighlighted(paragraph, chars.slice(cursor, to).join('').replace(/\s+$/, ''), matcher);

  // Leading @mentions outside the display range are the reply chain: say so, as Twitter does.
  const replyTo = entities.filter((item) => item.kind === 'mention' && item.end <= from);
  return { paragraph, replyTo };
}

function replyLine(replyTo, network, matched = null) {
  const line = el('p', 'reply-to', 'Replying to ');
  replyTo.forEach((item, i) => {
    if (i > 0) line.append(' ');
    const name = str(item.entity.screen_name);
    const node = link(network.profileUrl(name), 'mention', `@${name}`);
    if (matched?.has(item.entity)) node.classList.add('matched');
    line.append(node);
  });
  return line;
}

function photos(tweet) {
  if (tweet.possibly_sensitive === true) return null;
  const media = tweet.extended_entities?.media ?? tweet.entities?.media;
  if (!Array.isArray(media)) return null;
  const box = el('div', 'media');
  for (const item of media.slice(0, MAX_PHOTOS)) {
    const src = safeImageSrc(item?.media_url_https);
    if (!src) continue;
    const anchor = link(safeHref(item.expanded_url) ?? src, 'media-link');
    const img = el('img', 'photo');
    img.setAttribute('src', src);
    img.setAttribute('alt', str(item.ext_alt_text) || 'Image attached to the tweet');
    img.setAttribute('loading', 'lazy');
    img.setAttribute('decoding', 'async');
    img.setAttribute('referrerpolicy', 'no-referrer');
    anchor.append(img);
    box.append(anchor);
  }
  if (!box.firstChild) return null;
  if (box.childElementCount > 1) box.classList.add('media-grid');
  // A Bluesky gallery holds up to 20 images; the card shows four and says how many more there are.
  const more = tweet.more_media;
  if (Number.isInteger(more) && more > 0) {
    const last = box.lastElementChild;
    const count = el('span', 'more-count', `+${more}`);
    count.setAttribute('title', `${more} more ${more === 1 ? 'image' : 'images'} in the post`);
    last.classList.add('media-more');
    last.append(count);
  }
  return box;
}

function isTweet(value) {
  return value !== null && typeof value === 'object' && typeof value.id_str === 'string';
}

/** The quoted tweet, in a bordered box. */
function quoteBox(quoted, matcher, now, network, matched) {
  const user = quoted.user ?? {};
  const box = el('blockquote', 'quote');
  const cite = safeHref(permalinkOf(quoted, user, network));
  if (cite) box.setAttribute('cite', cite);
  const header = byline(quoted, user, now, network);
  header.prepend(avatar(user, true));
  box.append(header);
  const { paragraph, replyTo } = tweetText(quoted, matcher, null, network, matched);
  if (replyTo.length) box.append(replyLine(replyTo, network, matched));
  box.append(paragraph);
  const media = photos(quoted);
  if (media) box.append(media);
  return box;
}

/** The small label that says which network a card came from. */
function networkBadge(source, network) {
  const badge = el('span', 'network', network.label);
  badge.dataset.network = source;
  badge.setAttribute('title', network.title);
  return badge;
}

/** The part of a tweet's text the card shows (a reply's leading @mentions are not in it). */
function visibleText(tweet) {
  const chars = Array.from(str(tweet.text));
  const [from, to] = displayRange(tweet, chars.length);
  return chars.slice(from, to).join('');
}

/** What the server matches besides the text: each link's address, mention's handle, hashtag. */
function matchEntities(tweet) {
  const entities = tweet?.entities;
  if (!entities) return [];
  const found = [];
  const each = (list, kind, text) => {
    if (!Array.isArray(list)) return;
    for (const entity of list) if (entity && typeof entity === 'object') found.push({ kind, entity, text: text(entity) });
  };
  each(entities.hashtags, 'hashtag', (e) => str(e.text));
  each(entities.user_mentions, 'mention', (e) => str(e.screen_name));
  each(entities.urls, 'link', (e) => `${str(e.expanded_url)} ${str(e.display_url)}`);
  each(entities.media, 'link', (e) => `${str(e.expanded_url)} ${str(e.display_url)}`);
  return found;
}

const VIA = { link: 'a link', mention: 'a mention', hashtag: 'a hashtag' };

/** "Matched “python” via a link": for a phrase the text alone does not hold. */
function matchedVia(via) {
  const line = el('p', 'matched-via');
  via.forEach((item, i) => {
    line.append(i === 0 ? 'Matched ' : '; ', `“${item.phrase}” via ${VIA[item.kind]}`);
  });
  return line;
}

/**
 * One card: `<li><article class="tweet" data-id=... data-source=... data-user-id=...>`. A retweet
 * shows "🔁 <name> retweeted" above the original; a quote shows the quoted tweet nested inside.
 * The network (`tweet.source`) decides where links go and labels the card.
 */
export function renderTweet(tweet, matcher, now = Date.now()) {
  const article = el('article', 'tweet');
  article.dataset.id = tweet.id_str;
  const source = str(tweet.source);
  const network = networkOf(source);
  if (source) article.dataset.source = source;

  let shown = tweet;
  if (isTweet(tweet.retweeted_status)) {
    shown = tweet.retweeted_status;
    article.classList.add('is-retweet');
    article.dataset.originalId = shown.id_str;
    const retweeter = tweet.user ?? {};
    const line = el('p', 'retweeted-by');
    const icon = el('span', 'icon', '🔁');
    icon.setAttribute('aria-hidden', 'true');
    line.append(icon, ' ');
    line.append(markUser(link(network.profileUrl(actorOf(retweeter)), 'retweeter',
      str(retweeter.name) || `@${str(retweeter.screen_name)}`), retweeter));
    line.append(` ${network.reposted}`);
    article.append(line);
  }

  const user = shown.user ?? {};
  if (str(user.id_str)) article.dataset.userId = user.id_str;
  const body = el('div', 'body');
  const header = byline(shown, user, now, network);
  if (network.label) header.append(networkBadge(source, network));
  body.append(header);

  const quoted = isTweet(shown.quoted_status) ? shown.quoted_status : null;
  const quotedUrl = quoted ? safeHref(quoted.url) : null;
  const hiddenUrl = quoted
    ? (href) => href.includes(`/status/${quoted.id_str}`) || (quotedUrl !== null && href === quotedUrl)
    : null;
  // The words of the phrases this card holds in full, as the server matched them: in the text,
  // or through a link, mention or hashtag (then the card says so, and marks that entity).
  const match = matcher
    ? matcher.forTweet([visibleText(shown), quoted ? visibleText(quoted) : ''].join('\n'),
      [...matchEntities(shown), ...matchEntities(quoted)])
    : { regex: null, via: [] };
  const marker = match.regex;
  const matched = new Set(match.via.flatMap((item) => item.entities));
  const { paragraph, replyTo } = tweetText(shown, marker, hiddenUrl, network, matched);
  if (replyTo.length) body.append(replyLine(replyTo, network, matched));
  body.append(paragraph);
  if (match.via.length) body.append(matchedVia(match.via));
  const media = photos(shown);
  if (media) body.append(media);
  if (quoted) body.append(quoteBox(quoted, marker, now, network, matched));

  const main = el('div', 'card');
  const avatarLink = markUser(link(network.profileUrl(actorOf(user)), 'avatar-link'), user);
  avatarLink.setAttribute('tabindex', '-1');
  avatarLink.setAttribute('aria-hidden', 'true');
  avatarLink.append(avatar(user, false));
  main.append(avatarLink, body);
  article.append(main);

  const item = document.createElement('li');
  item.append(article);
  return item;
}

/**
 * A profile frame arrived: redraw the name, handle, profile links and avatar of every node under
 * `root` that shows this author (`data-user-id`), in place, so focus and scrolling stay put.
 */
export function applyProfile(root, profile) {
  for (const node of root.querySelectorAll(`[data-user-id="${CSS.escape(profile.did)}"]`)) {
    if (!('screenName' in node.dataset)) continue; // the card itself: only its parts are drawn
    const was = { id_str: profile.did, name: node.dataset.name, screen_name: node.dataset.screenName };
    const user = mergeUser(was, profile);
    const network = networkOf(node.closest('article.tweet')?.dataset.source);
    if (node.classList.contains('avatar')) {
      const src = node instanceof HTMLImageElement ? node.getAttribute('src') : null;
      user.profile_image_url_https = profile.avatar ?? src;
      const same = safeImageSrc(user.profile_image_url_https) === src && user.name === was.name
        && user.screen_name === was.screen_name;
      if (!same) node.replaceWith(avatar(user, node.classList.contains('avatar-small')));
      continue;
    }
    markUser(node, user);
    const href = safeHref(network.profileUrl(actorOf(user)));
    if (href && node instanceof HTMLAnchorElement) node.setAttribute('href', href);
    if (node.classList.contains('author')) {
      const nameNode = node.querySelector('.name');
      const handleNode = node.querySelector('.handle');
      if (nameNode) nameNode.textContent = user.name || user.screen_name;
      if (handleNode) handleNode.textContent = `@${user.screen_name}`;
    } else if (node.classList.contains('retweeter')) {
      node.textContent = user.name || `@${user.screen_name}`;
    }
  }
}
