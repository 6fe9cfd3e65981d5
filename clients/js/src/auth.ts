/**
 * Authentication: where the client gets its JWT (a fixed string, or a function, plain or
 * async, called for a fresh one before every connection and again before the current token's
 * `exp`), and when to refresh it. The client sends it as the first message of a connection
 * (`{"op":"auth"}`), or in the URL with `auth: 'query'`.
 */

/** A JWT, a function returning a fresh one, or null/undefined for an anonymous connection. */
export type TokenSource =
  | string
  | null
  | undefined
  | (() => string | null | undefined | Promise<string | null | undefined>);

const REFRESH_MARGIN = 60000; // re-authenticate at most this long before `exp` ...
const REFRESH_FRACTION = 0.5; // ... and at the latest after this fraction of the token's life
const MIN_REFRESH_DELAY = 200;
const MAX_TOKEN_LENGTH = 8192; // the gateway's limit

/** The `exp` and `iat` claims of a JWT (seconds), without verifying it; nulls if unreadable. */
export function tokenClaims(token: string): { exp: number | null; iat: number | null } {
  try {
    const part = token.split('.')[1] ?? '';
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const claims: unknown = JSON.parse(atob(b64));
    if (claims === null || typeof claims !== 'object') return { exp: null, iat: null };
    const { exp, iat } = claims as { exp?: unknown; iat?: unknown };
    return { exp: typeof exp === 'number' ? exp : null, iat: typeof iat === 'number' ? iat : null };
  } catch {
    return { exp: null, iat: null };
  }
}

/**
 * Milliseconds from `now` until `token` (obtained at `obtainedAt`) should be replaced: at most
 * 60 s before `exp`, and at the latest once half of its life has passed (same rule as the
 * Python client). Null when it has no `exp`.
 */
export function refreshDelay(token: string, obtainedAt: number, now: number): number | null {
  const { exp } = tokenClaims(token);
  if (exp === null) return null;
  const expiresAt = exp * 1000;
  const lifetime = Math.max(0, expiresAt - obtainedAt);
  const refreshAt = expiresAt - Math.min(REFRESH_MARGIN, lifetime * REFRESH_FRACTION);
  return Math.max(MIN_REFRESH_DELAY, refreshAt - now);
}

/** The token `source` gives now (a function is called); throws on a wrong type or size. */
export async function fetchToken(source: TokenSource): Promise<string | null> {
  const token = typeof source === 'function' ? await source() : source;
  if (token == null || token === '') return null;
  if (typeof token !== 'string') throw new TypeError(`the token function returned ${typeof token}, not a string`);
  if (token.length > MAX_TOKEN_LENGTH) throw new TypeError(`token too long: ${token.length} characters (at most ${MAX_TOKEN_LENGTH})`);
  return token;
}

/** The client's token: the current one, when it was obtained, whether a fresher one can be had. */
export class TokenKeeper {
  token: string | null = null;
  private obtainedAt = 0;

  constructor(public source: TokenSource) {}

  /** True when a fresh token can be asked for (the source is a function). */
  get refreshable(): boolean {
    return typeof this.source === 'function';
  }

  /** Ask the source for the token to use now (a function is called); it becomes current. */
  async next(): Promise<string | null> {
    const token = await fetchToken(this.source);
    this.token = token;
    this.obtainedAt = Date.now();
    return token;
  }

  /** Milliseconds until the current token should be refreshed; null when it never needs to be. */
  refreshIn(): number | null {
    if (!this.refreshable || this.token === null) return null;
    return refreshDelay(this.token, this.obtainedAt, Date.now());
  }
}
