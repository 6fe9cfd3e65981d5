/**
 * The client module under test: the built sources, or another build of the same API named by
 * TICKSTREAM_CLIENT (an absolute path), e.g. the previous gateway/static/tickstream.js, to
 * show which behaviours a change fixed.
 */
import { pathToFileURL } from 'node:url';

type ClientModule = typeof import('../src/index.js');

const override = process.env.TICKSTREAM_CLIENT;
export const ts: ClientModule = await import(override ? pathToFileURL(override).href : '../src/index.js');
