/** Tweet times: parse Twitter's created_at, and say how long ago something was ("5s", "2m", "3h"). */

const MONTHS = {
  Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5,
  Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11,
};
// "Wed Oct 10 20:19:24 +0000 2018"
const TWITTER_DATE = /^\w{3} (\w{3}) (\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})$/;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const dayFormat = new Intl.DateTimeFormat('en', { month: 'short', day: 'numeric' });
const dayYearFormat = new Intl.DateTimeFormat('en', { month: 'short', day: 'numeric', year: 'numeric' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** Milliseconds since the epoch for a Twitter date string, or NaN. */
export function parseTwitterDate(text) {
  const m = TWITTER_DATE.exec(typeof text === 'string' ? text.trim() : '');
  if (!m || !(m[1] in MONTHS)) return NaN;
  const [, mon, day, hh, mm, ss, sign, oh, om, year] = m;
  const utc = Date.UTC(+year, MONTHS[mon], +day, +hh, +mm, +ss);
  const offset = (sign === '-' ? -1 : 1) * (+oh * HOUR + +om * MINUTE);
  return utc - offset;
}

/** When a tweet was made, in ms: timestamp_ms when present (top-level tweets), else created_at. */
export function tweetTimeMs(tweet) {
  const ms = Number(tweet?.timestamp_ms);
  if (Number.isFinite(ms) && ms > 0) return ms;
  return parseTwitterDate(tweet?.created_at);
}

/** "0s" … "59s", "1m" … "59m", "1h" … "23h", then a date ("Oct 10", or "Oct 10, 2018" in another year). */
export function relativeTime(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return '';
  const age = Math.max(0, now - ms);
  if (age < MINUTE) return `${Math.floor(age / SECOND)}s`;
  if (age < HOUR) return `${Math.floor(age / MINUTE)}m`;
  if (age < DAY) return `${Math.floor(age / HOUR)}h`;
  const date = new Date(ms);
  const sameYear = date.getFullYear() === new Date(now).getFullYear();
  return (sameYear ? dayFormat : dayYearFormat).format(date);
}

/** A long, local form for tooltips. */
export function fullTime(ms) {
  return Number.isFinite(ms) ? fullFormat.format(new Date(ms)) : '';
}
