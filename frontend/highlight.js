/** Mark the viewer's keywords in tweet text: whole words, any case, built as text nodes and <mark>s. */

const WORD_CHAR = '[\\p{L}\\p{N}\\p{M}_]';

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A global regular expression for every word of every tracked phrase, or null when there are none.
 * ["python", "trio rust"] marks "python", "trio" and "rust" wherever they stand as whole words.
 */
export function termMatcher(track) {
  const terms = new Set();
  for (const phrase of Array.isArray(track) ? track : []) {
    for (const word of String(phrase).split(/\s+/)) {
      if (word) terms.add(word.toLocaleLowerCase());
    }
  }
  if (terms.size === 0) return null;
  // Longest first, so "rustacean" wins over "rust" when both are tracked.
  const alternatives = [...terms].sort((a, b) => b.length - a.length).map(escapeRegExp);
  return new RegExp(`(?<!${WORD_CHAR})(?:${alternatives.join('|')})(?!${WORD_CHAR})`, 'giu');
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
