// The browser bundle: src/index.ts as one ES module without bare imports, written to
// gateway/static/tickstream.js (committed: the gateway serves it without Node).
//   node scripts/bundle.mjs           write it
//   node scripts/bundle.mjs --check   exit 1 when the committed file differs from a fresh build
//   node scripts/bundle.mjs --size    minified + gzipped sizes (default bundle, with msgpack)
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const target = join(root, '..', '..', 'gateway', 'static', 'tickstream.js');
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const banner = `// Tickstream browser client ${version}: built from clients/js/src by \`npm --prefix clients/js run build\`; do not edit.\n`
  + "// import { connect } from '/static/tickstream.js'; see docs/browser-client.md.";

async function bundle(entry, minify) {
  const result = await build({
    entryPoints: [join(root, entry)], bundle: true, format: 'esm', target: 'es2020', platform: 'browser',
    minify, write: false, legalComments: 'none', charset: 'utf8', banner: minify ? {} : { js: banner },
  });
  return result.outputFiles[0].text;
}

if (process.argv.includes('--size')) {
  for (const [name, entry] of [['tickstream.js', 'src/index.ts'], ['with msgpack', 'scripts/with-msgpack.ts']]) {
    const text = await bundle(entry, true);
    console.log(`${name}: ${text.length} bytes minified, ${gzipSync(text, { level: 9 }).length} bytes gzipped`);
  }
} else {
  const text = await bundle('src/index.ts', false);
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(target, 'utf8');
    } catch {
      /* missing: differs */
    }
    if (current !== text) {
      console.error('gateway/static/tickstream.js differs from a fresh build of clients/js/src: run `npm --prefix clients/js run build`');
      process.exit(1);
    }
    console.log('gateway/static/tickstream.js matches clients/js/src');
  } else {
    writeFileSync(target, text);
  }
}
