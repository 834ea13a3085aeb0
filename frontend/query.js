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

/** The filter in a page URL (?filter=...), canonicalised; "" when there is none. */
export function filterFromUrl(href) {
  return filterString(new URL(href).searchParams.get('filter'));
}

/** The page URL for a filter: ?filter=... or no query at all for the sample view. */
export function urlForFilter(href, filter) {
  const url = new URL(href);
  url.search = filter ? `?filter=${encodeFilter(filter)}` : '';
  return url.href;
}

/** The WebSocket URL on this page's host for a filter. */
export function socketUrl(filter, location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = filter ? `filter=${encodeFilter(filter)}` : 'stream=sample';
  return `${scheme}//${location.host}/ws?${query}`;
}
