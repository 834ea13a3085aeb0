/** The viewer's filter: tidy what they typed, and move it between the input, the page URL and /ws. */

/**
 * Split "python, trio  rust," into ["python", "trio rust"].
 * A comma separates phrases (any of them matches); spaces inside a phrase mean "all of these words".
 * Blank phrases are dropped, so a stray comma is not an error.
 */
export function parsePhrases(raw) {
  return String(raw ?? '')
    .split(',')
    .map((phrase) => phrase.trim().replace(/\s+/g, ' '))
    .filter(Boolean);
}

// Twitter's limits, as the server enforces them (pats_trio/matching.py).
export const MAX_PHRASE_BYTES = 60;
export const MAX_PHRASES = 400;
const utf8 = new TextEncoder();
const graphemes = new Intl.Segmenter('en', { granularity: 'grapheme' });

/** The characters of `text` as a person counts them: "👍🏽" is one, not two or four. */
export function characters(text) {
  return Array.from(graphemes.segment(text), (part) => part.segment);
}

const quoted = (text) => `“${text.length > 40 ? `${characters(text).slice(0, 30).join('')}…` : text}”`;

/**
 * Why the server would refuse this filter, in a sentence that starts with a capital and counts
 * characters as they were typed (the limit is in UTF-8 bytes, which nobody counts); null if fine.
 */
export function filterProblem(raw) {
  const phrases = parsePhrases(raw);
  for (const phrase of phrases) {
    if (utf8.encode(phrase.toLowerCase()).length <= MAX_PHRASE_BYTES) continue;
    const chars = characters(phrase);
    let fits = 0;
    let bytes = 0;
    for (const char of chars) {
      bytes += utf8.encode(char.toLowerCase()).length;
      if (bytes > MAX_PHRASE_BYTES) break;
      fits += 1;
    }
    return `The phrase ${quoted(phrase)} is too long: it has ${chars.length} characters, and at most `
      + `${fits} of these fit (${MAX_PHRASE_BYTES} bytes). Shorten it, or split it with a comma.`;
  }
  const distinct = new Set(phrases.map((phrase) => phrase.toLowerCase())).size;
  if (distinct > MAX_PHRASES) {
    return `The filter has ${distinct} phrases; the limit is ${MAX_PHRASES}. Remove some of them.`;
  }
  return null;
}

/** The canonical filter string sent to the server: "python,trio rust" ("" means the sample stream). */
export function filterString(raw) {
  return parsePhrases(raw).join(',');
}

/** What the input box shows for a filter: "python, trio rust". */
export function filterForInput(filter) {
  return parsePhrases(filter).join(', ');
}

/** Query-string value with readable commas: "python,trio%20rust". */
export function encodeFilter(filter) {
  return encodeURIComponent(filter).replace(/%2C/gi, ',');
}

/** At most this many columns, each with its own filter, side by side. */
export const MAX_COLUMNS = 6;

/**
 * The filters in a page URL, one per column (`?filter=python&filter=rust`), canonicalised; one
 * sample column ([""]) when there is none. An empty `filter=` is a sample column.
 */
export function filtersFromUrl(href) {
  const values = new URL(href).searchParams.getAll('filter');
  return values.length ? values.slice(0, MAX_COLUMNS).map(filterString) : [''];
}

/** The page URL for these columns' filters: no query for one sample column. */
export function urlForFilters(href, filters) {
  const url = new URL(href);
  if (filters.length <= 1) url.search = filters[0] ? `?filter=${encodeFilter(filters[0])}` : '';
  else url.search = `?${filters.map((filter) => `filter=${encodeFilter(filter)}`).join('&')}`;
  return url.href;
}

/** The WebSocket URL on this page's host for a filter. */
export function socketUrl(filter, location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = filter ? `filter=${encodeFilter(filter)}` : 'stream=sample';
  return `${scheme}//${location.host}/ws?${query}`;
}
