// Generates src/protocol.ts from shared/protocol.py, the one definition of the protocol's names
// (subprotocols, close codes) that the gateway and the Python client use too. `--check` only
// compares and exits 1 when the committed file differs (run by `npm run typecheck`).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, '..', '..', '..', 'shared', 'protocol.py');
const target = join(here, '..', 'src', 'protocol.ts');
const LINE = /^([A-Z][A-Z0-9_]{0,63}) = (\d{1,6}|"[a-z0-9.]{1,64}")(?:\s+#\s*(.{0,200}))?$/;

const lines = ['// Generated from shared/protocol.py by scripts/gen-protocol.mjs: do not edit.', ''];
let count = 0;
for (const line of readFileSync(source, 'utf8').split('\n')) {
  const m = LINE.exec(line);
  if (!m) {
    if (/^[A-Z][A-Z0-9_]* =/.test(line)) throw new Error(`shared/protocol.py: cannot translate ${JSON.stringify(line)}`);
    continue;
  }
  const [, name, value, comment] = m;
  if (comment) lines.push(`/** ${comment.replace(/\*\//g, '* /')} */`);
  lines.push(`export const ${name} = ${value.startsWith('"') ? `'${value.slice(1, -1)}'` : value};`);
  count += 1;
}
if (count === 0) throw new Error('shared/protocol.py: no constants found');
const text = `${lines.join('\n')}\n`;

if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    /* missing: differs */
  }
  if (current !== text) {
    console.error('src/protocol.ts differs from shared/protocol.py: run `npm run build` (scripts/gen-protocol.mjs)');
    process.exit(1);
  }
} else {
  writeFileSync(target, text);
}
