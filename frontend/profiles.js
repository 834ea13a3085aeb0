/**
 * Author profiles sent after the posts (`{"type":"profile","profile":{did, handle, name, avatar}}`):
 * Bluesky posts arrive naming their author by DID alone, and the name, handle and avatar follow.
 * The page keeps the newest profile per DID, bounded, for cards rendered later.
 */

export const MAX_PROFILES = 1000;

// Bluesky's placeholder for a handle that no longer verifies: the DID says more.
const INVALID_HANDLE = 'handle.invalid';

function text(value) {
  return typeof value === 'string' && value.trim() !== '' ? value : undefined;
}

/** A profile frame's payload as {did, handle?, name?, avatar?}, or null when it names no DID. */
export function readProfile(value) {
  if (value === null || typeof value !== 'object') return null;
  const did = text(value.did);
  if (!did) return null;
  const profile = { did };
  const handle = text(value.handle);
  if (handle && handle !== INVALID_HANDLE) profile.handle = handle;
  const name = text(value.name);
  if (name) profile.name = name;
  const avatar = text(value.avatar);
  if (avatar) profile.avatar = avatar;
  return profile;
}

/**
 * `user` ({name, screen_name, profile_image_url_https}) with what `profile` knows. A name that
 * only repeated the old handle (or DID) follows the new handle.
 */
export function mergeUser(user, profile) {
  const oldHandle = typeof user.screen_name === 'string' ? user.screen_name : '';
  const oldName = typeof user.name === 'string' ? user.name : '';
  const handle = profile.handle ?? oldHandle;
  const name = profile.name ?? (oldName === '' || oldName === oldHandle ? handle : oldName);
  return {
    ...user,
    name,
    screen_name: handle,
    profile_image_url_https: profile.avatar ?? user.profile_image_url_https ?? null,
  };
}

export class Profiles {
  constructor(cap = MAX_PROFILES) {
    this.cap = cap;
    this.byDid = new Map(); // in use order: the first is the least recently used
  }

  get size() {
    return this.byDid.size;
  }

  /** Merge a profile frame's payload in; returns the merged profile, or null for junk. */
  remember(value) {
    const profile = readProfile(value);
    if (!profile) return null;
    const merged = { ...this.byDid.get(profile.did), ...profile };
    this.byDid.delete(profile.did);
    this.byDid.set(profile.did, merged);
    while (this.byDid.size > this.cap) this.byDid.delete(this.byDid.keys().next().value);
    return merged;
  }

  get(did) {
    const profile = this.byDid.get(did);
    if (profile) {
      this.byDid.delete(did);
      this.byDid.set(did, profile);
    }
    return profile;
  }

  /** `tweet` with known profiles applied to its author, its retweet's and its quote's; the same
   * object when none is known, so the common case costs no copy. */
  fill(tweet, depth = 0) {
    if (this.byDid.size === 0 || tweet === null || typeof tweet !== 'object') return tweet;
    let filled = tweet;
    const user = tweet.user;
    const profile = typeof user?.id_str === 'string' ? this.get(user.id_str) : undefined;
    if (profile) filled = { ...tweet, user: mergeUser(user, profile) };
    if (depth < 2) {
      for (const key of ['retweeted_status', 'quoted_status']) {
        const inner = tweet[key];
        if (inner === null || typeof inner !== 'object') continue;
        const innerFilled = this.fill(inner, depth + 1);
        if (innerFilled !== inner) filled = { ...filled, [key]: innerFilled };
      }
    }
    return filled;
  }
}
