// The native side: builds harness.c with gcc into .cache/oracle/ (again only when the
// source is newer than the binary) and runs a whole batch of cases in one process.

import { execFileSync, spawnSync } from 'child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'fs';
import { dirname, join } from 'path';
import type { OracleCase } from './generate';
import {
  CODE_BASE,
  DATA_BASE,
  STACK_BASE,
  DATA_WIN_OFF,
  DATA_WIN_SIZE,
  STACK_WIN_OFF,
  STACK_WIN_SIZE,
  INSN_OFF,
  TARGET_BACK_OFF,
  TARGET_FWD_OFF,
} from './layout';

/** What one machine (host CPU or emulator) did with a case. */
export interface MachineResult {
  /** null: execution reached an exit stub; otherwise the exception vector. */
  vector: number | null;
  /** Where execution ended: the exit stub reached, or the faulting RIP. */
  rip: bigint;
  regs: bigint[];
  rflags: number;
  data: Uint8Array;
  stack: Uint8Array;
  /** Host: the signal that ended the case. */
  signal?: number;
  /** Emulator: its diagnostic for the fault, or a host-side error (crash, no progress). */
  detail?: string;
  error?: string;
}

const MAGIC = 0x3243524f; // "ORC2"
const HEADER_SIZE = 64;
/** Longest code under test: a flag producer and the instruction (harness.c's MAX_CODE). */
export const MAX_CODE = 32;
const IN_SIZE = 16 + MAX_CODE + 16 * 8 + 8 + DATA_WIN_SIZE + STACK_WIN_SIZE;
const OUT_SIZE = 24 + 16 * 8 + 8 + DATA_WIN_SIZE + STACK_WIN_SIZE;
const IN_REGS = 16 + MAX_CODE;
const IN_DATA = IN_REGS + 16 * 8 + 8;

/** The repository root (where package.json is), from this file's compiled location. */
export function projectRoot(): string {
  let d = __dirname;
  for (;;) {
    const pj = join(d, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'textpoke') return d;
    const up = dirname(d);
    if (up === d) throw new Error(`oracle: no textpoke package.json above ${__dirname}`);
    d = up;
  }
}

/** Builds the harness if needed; returns the binary's path. */
export function buildHarness(): string {
  const root = projectRoot();
  const src = join(root, 'test', 'oracle', 'harness.c');
  const dir = join(root, '.cache', 'oracle');
  const bin = join(dir, 'harness');
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return bin;
  mkdirSync(dir, { recursive: true });
  // Build under a private name and rename: a concurrent run never sees half a binary.
  const tmp = `${bin}.${process.pid}.tmp`;
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', tmp, src], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`oracle: building ${src} with gcc failed: ${err.stderr?.toString() || err.message}`);
  }
  renameSync(tmp, bin);
  return bin;
}

function header(n: number): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(n, 4);
  b.writeBigUInt64LE(CODE_BASE, 8);
  b.writeBigUInt64LE(DATA_BASE, 16);
  b.writeBigUInt64LE(STACK_BASE, 24);
  [DATA_WIN_OFF, DATA_WIN_SIZE, STACK_WIN_OFF, STACK_WIN_SIZE, INSN_OFF, TARGET_BACK_OFF, TARGET_FWD_OFF, 0].forEach(
    (v, i) => b.writeUInt32LE(v, 32 + 4 * i),
  );
  return b;
}

function encodeCase(c: OracleCase, b: Buffer, at: number): void {
  if (c.bytes.length === 0 || c.bytes.length > MAX_CODE) throw new Error(`oracle: ${c.bytes.length} code bytes (at most ${MAX_CODE})`);
  b[at] = c.bytes.length;
  b.writeBigUInt64LE(c.gsBase, at + 8);
  b.set(c.bytes, at + 16);
  c.regs.forEach((v, i) => b.writeBigUInt64LE(v, at + IN_REGS + 8 * i));
  b.writeBigUInt64LE(BigInt(c.rflags), at + IN_REGS + 128);
  b.set(c.data, at + IN_DATA);
  b.set(c.stack, at + IN_DATA + DATA_WIN_SIZE);
}

function decodeResult(b: Buffer, at: number): MachineResult {
  const signal = b.readUInt32LE(at);
  const regs: bigint[] = [];
  for (let i = 0; i < 16; i++) regs.push(b.readBigUInt64LE(at + 24 + 8 * i));
  return {
    vector: signal === 0 ? null : b.readUInt32LE(at + 4),
    signal: signal === 0 ? undefined : signal,
    rip: b.readBigUInt64LE(at + 16),
    regs,
    rflags: Number(b.readBigUInt64LE(at + 152)),
    data: new Uint8Array(b.subarray(at + 160, at + 160 + DATA_WIN_SIZE)),
    stack: new Uint8Array(b.subarray(at + 160 + DATA_WIN_SIZE, at + OUT_SIZE)),
  };
}

/** Runs every case on the host CPU, in one harness process. */
export function runNative(bin: string, cases: readonly OracleCase[]): MachineResult[] {
  const input = Buffer.alloc(HEADER_SIZE + cases.length * IN_SIZE);
  header(cases.length).copy(input, 0);
  cases.forEach((c, i) => encodeCase(c, input, HEADER_SIZE + i * IN_SIZE));
  const r = spawnSync(bin, [], { input, maxBuffer: cases.length * OUT_SIZE + (1 << 20), timeout: 600_000 });
  if (r.error) throw new Error(`oracle: running ${bin}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`oracle: ${bin} exited with ${r.status ?? r.signal}: ${r.stderr.toString()}`);
  }
  const out = r.stdout;
  if (out.length !== cases.length * OUT_SIZE) {
    throw new Error(`oracle: ${bin} wrote ${out.length} bytes for ${cases.length} cases (expected ${cases.length * OUT_SIZE})`);
  }
  return cases.map((_, i) => decodeResult(out, i * OUT_SIZE));
}
