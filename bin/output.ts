// Output conventions shared by every command: JSON with bigints as "0x…" strings and
// byte arrays as hex strings; colour only on a terminal and never with NO_COLOR; a
// progress bar on stderr only when stderr is a terminal and output is not JSON.

import type { Style } from '../kernel-model/present/demo';
import { PLAIN_STYLE } from '../kernel-model/present/demo';

function replacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return (v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16));
  if (v instanceof Uint8Array) return Array.from(v, (b) => b.toString(16).padStart(2, '0')).join(' ');
  if (v instanceof Map) return Object.fromEntries(v);
  if (v instanceof Set) return [...v];
  return v;
}

/** One value as one line of JSON, the CLI's machine-readable form. */
export function jsonLine(v: unknown): string {
  return JSON.stringify(v, replacer);
}

export function printJson(v: unknown): void {
  process.stdout.write(jsonLine(v) + '\n');
}

export function print(text: string): void {
  if (text) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

/** --color / --no-color force it; NO_COLOR (any non-empty value) always wins. */
export function colorEnabled(flag: boolean | undefined): boolean {
  if (process.env.NO_COLOR) return false;
  if (flag !== undefined) return flag;
  return process.stdout.isTTY === true && process.env.TERM !== 'dumb';
}

const sgr = (open: number, close: number) => (s: string): string => `\x1b[${open}m${s}\x1b[${close}m`;

const ANSI_STYLE: Style = {
  bold: sgr(1, 22),
  dim: sgr(2, 22),
  red: sgr(31, 39),
  green: sgr(32, 39),
  yellow: sgr(33, 39),
  cyan: sgr(36, 39),
};

export function styleFor(flag: boolean | undefined): Style {
  return colorEnabled(flag) ? ANSI_STYLE : PLAIN_STYLE;
}

export interface Progress {
  update(steps: number): void;
  done(): void;
}

/**
 * A progress bar on stderr for runs bounded by `total` steps. Null when stderr is not
 * a terminal (unless TEXTPOKE_PROGRESS=1 asks for it anyway, as tests do) or the
 * output is JSON. It appears only once a run has lasted a moment.
 */
export function progressBar(label: string, total: number, json: boolean): Progress | null {
  if (json || !(process.stderr.isTTY || process.env.TEXTPOKE_PROGRESS === '1')) return null;
  const t0 = Date.now();
  let last = 0;
  let shown = false;
  const width = 30;
  return {
    update(steps: number): void {
      const now = Date.now();
      if (now - last < 100 || now - t0 < 300) return;
      last = now;
      shown = true;
      const f = Math.min(1, steps / Math.max(1, total));
      const bar = '#'.repeat(Math.round(f * width)).padEnd(width, '.');
      process.stderr.write(`\r${label} [${bar}] ${steps.toLocaleString('en-US')} steps (${((now - t0) / 1000).toFixed(1)} s)\x1b[K`);
    },
    done(): void {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}
