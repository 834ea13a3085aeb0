/**
 * Why nothing arrives, in plain words. The server's reasons are exception texts and HTTP
 * statuses ("network error: HandshakeError ([Errno -2] Name or service not known)"); a person
 * reading the page wants "The server cannot find Bluesky on the network". Each rule gives a short
 * label for the one-line header and a sentence for the feed; the raw text stays as the detail.
 */

/** [pattern, short label, sentence]; `{S}` stands for the source's name, `{N}` for an HTTP status. */
const RULES = [
  [/redis/i, 'Feed interrupted',
    'The server lost its connection to Redis, the database that carries the posts between its workers.'],
  [/name or service not known|nodename nor servname|name resolution|getaddrinfo|no address associated/i,
    'Can’t find {S}',
    'The server cannot find {S} on the network: looking up its address (DNS) failed. The server may be offline.'],
  [/\b(401|403)\b|unauthori[sz]ed|forbidden/i, '{S} refused the keys',
    '{S} refused the server’s credentials (HTTP {N}). Whoever runs this server needs to check its API keys.'],
  [/\b(420|429)\b|too many|rate.?limit|enhance your calm/i, '{S} asks to slow down',
    '{S} asked the server to slow down (HTTP {N}): too many connections in a short time.'],
  [/\bHTTP 5\d\d\b/i, '{S} is having trouble', '{S} answered with an error on its side (HTTP {N}).'],
  [/\bHTTP \d{3}\b/i, '{S} said no', '{S} turned the connection down (HTTP {N}).'],
  [/all attempts to connect|connect call failed/i, 'Can’t connect to {S}',
    'The server knows {S}’s address, but nothing answers there: the connection was refused or timed out.'],
  [/refused|errno 111\b/i, '{S} refused the connection',
    '{S} refused the connection: nothing answers at its address right now.'],
  [/same credentials|duplicate stream/i, 'Stream taken over',
    'Another program opened a stream with the same credentials, so {S} closed this one.'],
  [/no data for|timed? ?out|stall/i, '{S} went quiet', '{S} stopped sending anything, not even a keep-alive.'],
  [/pacing reconnects/i, 'Pacing reconnects',
    'The server waits a moment between connections so that {S} does not block it.'],
  [/upstream owner/i, 'Waiting for the feed', 'Another worker of this server is opening the feed.'],
  [/stream ended|connection closed|disconnect/i, '{S} closed the stream', '{S} closed the connection.'],
  [/network|unreachable|reset|ssl|tls|certificate/i, 'Can’t reach {S}',
    'The server cannot reach {S} over the network.'],
];

function fill(template, source, status) {
  const text = template.replaceAll('{S}', source).replace(' (HTTP {N})', status ? ` (HTTP ${status})` : '');
  return text.charAt(0).toLocaleUpperCase('en') + text.slice(1);
}

/**
 * What a raw `reason` means, for `source` ("Bluesky"): {short, sentence}. A reason no rule knows
 * still gives a sentence that says what is going on; its text is the detail.
 */
export function explainReason(reason, source) {
  const raw = typeof reason === 'string' ? reason : '';
  const status = (/HTTP (\d{3})/.exec(raw) ?? /\b(40[13]|42[09])\b/.exec(raw))?.[1] ?? '';
  for (const [pattern, short, sentence] of RULES) {
    if (pattern.test(raw)) return { short: fill(short, source, status), sentence: fill(sentence, source, status) };
  }
  return { short: fill('Can’t reach {S}', source, ''), sentence: `The server cannot reach ${source} right now.` };
}

/** "in 12 s" / "now", for a retry `seconds` away. */
export function retryIn(seconds) {
  return seconds > 0 ? `in ${seconds} s` : 'now';
}
