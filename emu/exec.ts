// Run a byte string on one bare CPU: the library behind `textpoke exec`. No IDT is
// loaded, so any exception ends the run ("an exception with no handler"); HLT ends it
// normally; otherwise it stops at the step limit. execCodeAsync runs the same in
// chunks, yielding to the event loop between them, so a long run can report progress
// and be interrupted (SIGINT) with the state so far.

import { Machine } from './machine';
import { type GprName } from './cpu';
import { GPR_NAMES } from './regs';
import { readFlags, writeFlags } from './flags';
import { vectorName } from './events';
import { parseU64 } from './u64';

export const DEFAULT_CODE_ADDRESS = 0x401000n;
export const DEFAULT_STACK_TOP = 0x7ffff000n;
const STACK_SIZE = 0x10000;

export type RegName = GprName | 'rip' | 'rflags';
export const REG_NAMES: readonly RegName[] = [...GPR_NAMES, 'rip', 'rflags'];

export interface ExecRequest {
  code: Uint8Array;
  /** Load address (default 0x401000). */
  at?: bigint;
  /** Initial registers; anything not given is zero, RSP points into a mapped stack. */
  regs?: Partial<Record<RegName, bigint>>;
  maxSteps?: number;
  /** Extra zeroed memory to map: [address, size]. */
  map?: [bigint, number][];
}

export interface ExecResult {
  /** 'interrupted': stopped by the caller's AbortSignal (execCodeAsync). */
  stop: 'hlt' | 'step-limit' | 'exception' | 'interrupted';
  steps: number;
  regs: Record<RegName, bigint>;
  exception?: { vector: number; name: string; detail: string; rip: bigint };
  /** Set when the CPU was left spinning on memory that nothing else can change. */
  blocked?: string;
}

export class ExecInputError extends Error {}

/** Parses a register map in the CLI's format: {"rax": "0x…", …}. */
export function parseRegs(json: unknown, where: string): Partial<Record<RegName, bigint>> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ExecInputError(`${where}: expected a JSON object of register names to "0x…" values`);
  }
  const out: Partial<Record<RegName, bigint>> = {};
  for (const [k, v] of Object.entries(json)) {
    if (!(REG_NAMES as readonly string[]).includes(k)) {
      throw new ExecInputError(`${where}: unknown register '${k}' (expected one of ${REG_NAMES.join(', ')})`);
    }
    const val = typeof v === 'string' ? parseU64(v) : typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
    if (val === undefined) throw new ExecInputError(`${where}: register '${k}' must be a 64-bit value like "0x1f" (got ${JSON.stringify(v)})`);
    out[k as RegName] = val;
  }
  return out;
}

/** Sets up a one-CPU machine with the code loaded, a stack, and the given registers. */
export function prepareExec(req: ExecRequest): Machine {
  const at = req.at ?? DEFAULT_CODE_ADDRESS;
  const m = new Machine({ cpus: 1 });
  if (req.code.length === 0) throw new ExecInputError('--code: no bytes to run');
  m.load(at, req.code, true);
  m.mem.map(DEFAULT_STACK_TOP - BigInt(STACK_SIZE), STACK_SIZE + 0x1000);
  for (const [a, n] of req.map ?? []) m.mem.map(a, n);
  const cpu = m.cpu(0);
  cpu.setReg(4, DEFAULT_STACK_TOP);
  cpu.setRipBig(at);
  const regs = req.regs ?? {};
  GPR_NAMES.forEach((name, i) => {
    const v = regs[name];
    if (v !== undefined) cpu.setReg(i, v);
  });
  if (regs.rip !== undefined) cpu.setRipBig(regs.rip);
  writeFlags(cpu, regs.rflags !== undefined ? Number(regs.rflags & 0x3fffffn) : 0);
  cpu.serialize();
  return m;
}

export function readRegs(m: Machine, cpuId = 0): Record<RegName, bigint> {
  const cpu = m.cpu(cpuId);
  const out = {} as Record<RegName, bigint>;
  GPR_NAMES.forEach((name, i) => (out[name] = cpu.getReg(i)));
  out.rip = cpu.rip;
  out.rflags = BigInt(readFlags(cpu));
  return out;
}

const EXEC_SCHEDULE = { kind: 'round-robin', quantum: 100000 } as const;

export function execCode(req: ExecRequest): ExecResult {
  const m = prepareExec(req);
  return execResult(m, m.run({ schedule: EXEC_SCHEDULE, maxSteps: req.maxSteps ?? 1_000_000, stopOnHlt: true }));
}

export interface ExecControl {
  /** Called between chunks with the steps run so far. */
  onProgress?: (steps: number) => void;
  /** Aborting it ends the run at the next chunk boundary with stop 'interrupted'. */
  signal?: AbortSignal;
  /** Steps per chunk (default 1,000,000). */
  chunk?: number;
}

/**
 * execCode in chunks with the event loop turning between them. The machine state is
 * the same as one long run's: one CPU, and each chunk continues where the last ended.
 */
export async function execCodeAsync(req: ExecRequest, ctl: ExecControl = {}): Promise<ExecResult> {
  const m = prepareExec(req);
  const maxSteps = req.maxSteps ?? 1_000_000;
  const chunk = ctl.chunk ?? 1_000_000;
  for (;;) {
    const r = m.run({ schedule: EXEC_SCHEDULE, maxSteps: Math.min(maxSteps, m.steps + chunk), stopOnHlt: true });
    ctl.onProgress?.(m.steps);
    if (r.stop !== 'step-limit' || m.steps >= maxSteps) return execResult(m, r);
    await new Promise<void>((done) => setImmediate(done));
    if (ctl.signal?.aborted) return { ...execResult(m, r), stop: 'interrupted' };
  }
}

function execResult(m: Machine, r: { stop: string; steps: number }): ExecResult {
  const cpu = m.cpu(0);
  const res: ExecResult = {
    stop: r.stop === 'hlt' ? 'hlt' : r.stop === 'shutdown' ? 'exception' : 'step-limit',
    steps: r.steps,
    regs: readRegs(m),
  };
  if (r.stop === 'deadlock' && cpu.blocked) {
    // A PAUSE loop on memory nothing will change: it would spin to the step limit.
    res.blocked = cpu.blocked.detail;
  }
  if (cpu.shutdown) {
    res.exception = {
      vector: cpu.shutdown.vector,
      name: vectorName(cpu.shutdown.vector),
      detail: cpu.shutdown.detail,
      rip: cpu.shutdown.rip,
    };
    // Report the faulting instruction's address, not the (absent) handler's.
    res.regs.rip = cpu.shutdown.rip;
  }
  return res;
}

/** The `exec --json` shape: lower-case names, 0x-prefixed hex strings. */
export function execResultJson(r: ExecResult): Record<string, unknown> {
  const regs: Record<string, string> = {};
  for (const n of REG_NAMES) regs[n] = '0x' + r.regs[n].toString(16);
  const out: Record<string, unknown> = { stop: r.stop, steps: r.steps, regs };
  if (r.exception) {
    out.exception = {
      vector: r.exception.vector,
      name: r.exception.name,
      detail: r.exception.detail,
      rip: '0x' + r.exception.rip.toString(16),
    };
  }
  if (r.blocked) out.blocked = r.blocked;
  return out;
}
