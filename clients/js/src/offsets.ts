/**
 * Offsets: `<ms>-<seq>` strings, ordered within one event type, compared as two integers
 * (never as strings, never across types).
 */

const OFFSET_RE = /^\d{1,20}-\d{1,20}$/;

/**
 * Compare two offsets numerically: -1, 0 or 1. Exact for any size (no floats) and cheap enough
 * for every event (no BigInt allocation).
 */
export function compareOffsets(a: string, b: string): -1 | 0 | 1 {
  const i = a.indexOf('-');
  const j = b.indexOf('-');
  return compareDigits(a.slice(0, i), b.slice(0, j)) || compareDigits(a.slice(i + 1), b.slice(j + 1));
}

function compareDigits(x: string, y: string): -1 | 0 | 1 {
  if (x.length > 1 && x.charCodeAt(0) === 48) x = x.replace(/^0+(?=\d)/, '');
  if (y.length > 1 && y.charCodeAt(0) === 48) y = y.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** True when `text` is an offset the gateway accepts (the whole string). */
export function isOffset(text: unknown): text is string {
  return typeof text === 'string' && OFFSET_RE.test(text);
}
