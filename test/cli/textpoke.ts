// Runs the built CLI as a user would: `node dist/bin/textpoke.js …` in a child
// process, with colour and history kept out of the way unless a test asks. No
// timings: speed is measured in `npm run bench`, never asserted in a test.

import { spawnSync } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';

/** The repository root (this file runs from dist/test/cli). */
export const ROOT = resolve(__dirname, '..', '..', '..');
export const BIN = join(ROOT, 'dist', 'bin', 'textpoke.js');
export const SCENARIOS = join(ROOT, 'fixtures', 'scenarios');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function textpoke(args: string[], opts: { input?: string; env?: Record<string, string | undefined> } = {}): CliResult {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined, TEXTPOKE_HISTORY: join(tmpdir(), 'textpoke-test-history'), ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, input: opts.input ?? '', encoding: 'utf8', env: env as NodeJS.ProcessEnv, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Parses stdout as the one JSON object a --json command prints. */
export function json<T = Record<string, unknown>>(r: CliResult): T {
  const lines = r.stdout.trim().split('\n');
  if (lines.length !== 1) throw new Error(`expected one line of JSON, got ${lines.length}: ${r.stdout.slice(0, 200)}\n${r.stderr}`);
  return JSON.parse(lines[0]) as T;
}

const made: string[] = [];

/** A fresh temporary directory, removed by removeTempDirs (call it from afterAll). */
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'textpoke-cli-'));
  made.push(d);
  return d;
}

export function removeTempDirs(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

export const HEX_BYTES = /^[0-9a-f]{2}( [0-9a-f]{2})*$/;
export const HEX_ADDR = /^0x[0-9a-f]+$/;

/** An error the CLI promises: exit 2, one line on stderr, no stack trace, nothing on stdout. */
export function expectUserError(r: CliResult, ...fragments: (string | RegExp)[]): void {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^textpoke: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const f of fragments) expect(lines[0]).toMatch(f);
}
