/** A DOM for the React tests under Node (jsdom), installed before React is imported. */
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://localhost/' });
const g = globalThis as Record<string, unknown>;
for (const key of Object.getOwnPropertyNames(dom.window)) {
  if (!(key in g) && !key.startsWith('_')) g[key] = (dom.window as unknown as Record<string, unknown>)[key];
}
g.window = dom.window;
g.document = dom.window.document;
g.IS_REACT_ACT_ENVIRONMENT = true;

/** Animation frames the test runs by hand: `runFrame()` runs the callbacks requested so far. */
const pending = new Map<number, () => void>();
let nextFrame = 1;
g.requestAnimationFrame = (fn: () => void) => {
  pending.set(nextFrame, fn);
  return nextFrame++;
};
g.cancelAnimationFrame = (id: number) => pending.delete(id);

export function framesWaiting(): number {
  return pending.size;
}

export function runFrame(): void {
  const callbacks = [...pending.values()];
  pending.clear();
  for (const fn of callbacks) fn();
}
