/** Mark the viewer's keywords in tweet text: whole words, any case, built as text nodes and <mark>s. */

const WORD_CHAR = '[\\p{L}\\p{N}\\p{M}_]';

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function wordsRegExp(words) {
  // Longest first, so "rustacean" wins over "rust" when both are tracked.
  const alternatives = [...words].sort((a, b) => b.length - a.length).map(escapeRegExp);
  return new RegExp(`(?<!${WORD_CHAR})(?:${alternatives.join('|')})(?!${WORD_CHAR})`, 'giu');
}

/** The lowered words of a piece of text, as the server splits it into terms (roughly). */
function wordsOf(text) {
  return String(text).toLocaleLowerCase().split(/[^\p{L}\p{N}\p{M}_]+/u).filter(Boolean);
}

/**
 * What to mark for a filter, or null when it has no phrases. `forText(text)` gives a global
 * regular expression for the words of the phrases `text` holds in full, or null: with
 * ["python", "trio rust"], a tweet matched by "python" that also says "trio" gets "python"
 * marked, not "trio", since "trio rust" is not what it matched.
 *
 * The server also matches the entities (a link's full address, a mention's handle, a hashtag),
 * which the text may not show. `forTweet(text, entities)` says which: `{regex, via}`, `via` being
 * each phrase matched only with an entity's help, `{phrase, kind, entities}`, for a hint on the
 * card and to mark the entity that matched.
 */
export function termMatcher(track) {
  const phrases = [];
  for (const phrase of Array.isArray(track) ? track : []) {
    const words = new Set(
      String(phrase).split(/\s+/).filter(Boolean).map((word) => word.toLocaleLowerCase()),
    );
    if (words.size) phrases.push([...words]);
  }
  if (phrases.length === 0) return null;
  const anyWord = wordsRegExp(new Set(phrases.flat()));
  const cache = new Map();
  const regexFor = (words) => {
    if (words.size === 0) return null;
    const key = [...words].sort().join(' ');
    if (!cache.has(key)) cache.set(key, wordsRegExp(words));
    return cache.get(key);
  };
  const presentIn = (text) => {
    const present = new Set();
    for (const match of String(text).matchAll(anyWord)) present.add(match[0].toLocaleLowerCase());
    return present;
  };
  return {
    forText(text) {
      const present = presentIn(text);
      const words = new Set();
      for (const phrase of phrases) {
        if (phrase.every((word) => present.has(word))) phrase.forEach((word) => words.add(word));
      }
      return regexFor(words);
    },

    /** `entities`: [{kind: 'link' | 'mention' | 'hashtag', entity, text}]. */
    forTweet(text, entities = []) {
      const present = presentIn(text);
      const entityWords = entities.map((item) => ({ ...item, words: new Set(wordsOf(item.text)) }));
      const words = new Set();
      const via = [];
      for (const phrase of phrases) {
        const missing = phrase.filter((word) => !present.has(word));
        const helpers = entityWords.filter((item) => missing.some((word) => item.words.has(word)));
        const supplied = new Set(helpers.flatMap((item) => [...item.words]));
        if (!missing.every((word) => supplied.has(word))) continue;
        phrase.forEach((word) => words.add(word));
        if (missing.length) {
          via.push({ phrase: phrase.join(' '), kind: helpers[0].kind, entities: helpers.map((h) => h.entity) });
        }
      }
      return { regex: regexFor(words), via };
    },
  };
}

/** Append `text` to `parent` as text nodes, with each match of `matcher` wrapped in <mark>. */
export function appendHighlighted(parent, text, matcher) {
  if (!text) return;
  if (!matcher) {
    parent.append(text);
    return;
  }
  let last = 0;
  for (const match of text.matchAll(matcher)) {
    if (match.index > last) parent.append(text.slice(last, match.index));
    const mark = document.createElement('mark');
    mark.textContent = match[0];
    parent.append(mark);
    last = match.index + match[0].length;
  }
  if (last < text.length) parent.append(text.slice(last));
}
