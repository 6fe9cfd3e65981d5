// Vite with React's automatic JSX runtime (esbuild), and /ws proxied to a local gateway
// (`tickstream up --simulate` listens on 8080; TICKSTREAM_GATEWAY overrides it).
import { defineConfig } from 'vite';

const gateway = process.env.TICKSTREAM_GATEWAY ?? 'http://127.0.0.1:8080';

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  resolve: { dedupe: ['react', 'react-dom'] }, // one React when the package is linked (file:)
  server: { proxy: { '/ws': { target: gateway, ws: true } } },
});
