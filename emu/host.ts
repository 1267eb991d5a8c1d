// Host routines: kernel-model functions written as TypeScript generators and bound to
// addresses in guest text. A CPU whose RIP reaches a bound address runs the generator
// instead of decoding bytes. Each `yield` is one schedulable step, and each access to
// guest memory is its own yielded operation, so other CPUs interleave at that grain
// and everything goes through the same memory path as guest code (write logging,
// watches, the XMC checker's writer ids).
//
// A routine is entered by a guest `call` (or by an event handler jumping to it) and
// returns like a function: `ret` semantics, the return value in RAX. It can call
// guest functions: it pushes its own address as the return address, so when the
// guest returns, RIP is back at the binding with the same RSP and the frame resumes.
// The same (address, RSP) test resumes a routine after an interrupt that arrived
// between two of its steps.
//
// Machine snapshots cannot copy a generator, so each routine keeps its history: the
// value fed into each step, the operation it yielded, and any memory its body read
// directly (outside an operation). Restoring re-creates the generator and feeds it the
// same values again; the operations are data and are not performed again, so the
// replay has no effect on the machine. Each replayed operation is compared with the
// recorded one: a routine that does not replay the same way is reported, never
// silently continued. Model state a body reads directly (a plan, a function pointer)
// is registered with Machine.addStatePart({ readByHostRoutines: true }): it is saved
// when the routine starts and loaded while it is replayed.

import type { Cpu } from './cpu';
import { HI, RAX, RSP, RDI, RSI, RDX, RCX, R8, R9 } from './regs';
import type { Insn, Exec } from './insn';
import { push64, pop64 } from './ops/stack';
import { toBig } from './u64';
import { readFlags, writeFlags, IF } from './flags';
import type { HostReadTap } from './memory';
import { mix, SEED_A, SEED_B } from './hash';

/** Describes why a CPU waits, for deadlock reports. */
export interface WaitInfo {
  /** CPUs whose action would end the wait (edges of the wait-for graph). */
  cpus: number[];
  /** One line: what the CPU waits for. */
  text: string;
}

export type HostOp =
  | { op: 'read'; addr: bigint; size: 1 | 2 | 4 | 8 }
  | { op: 'write'; addr: bigint; size: 1 | 2 | 4 | 8; value: bigint; what?: string }
  | { op: 'cmpxchg'; addr: bigint; size: 1 | 2 | 4 | 8; expected: bigint; value: bigint }
  | { op: 'xadd'; addr: bigint; size: 1 | 2 | 4 | 8; value: bigint }
  | { op: 'or'; addr: bigint; size: 1 | 2 | 4 | 8; value: bigint }
  | { op: 'and'; addr: bigint; size: 1 | 2 | 4 | 8; value: bigint }
  | {
      op: 'wait';
      addr: bigint;
      size: 1 | 2 | 4 | 8;
      until: (v: bigint) => boolean;
      what: string;
      waitsFor?: () => WaitInfo;
      /** Further locations whose change also re-evaluates `until` (which may peek them). */
      also?: { addr: bigint; size: number }[];
    }
  | { op: 'call'; target: bigint; args: bigint[]; what?: string }
  | { op: 'serialize'; how: 'cpuid' | 'sync_core' | 'iret' }
  /**
   * `fence`: drain the store buffer first, as an MFENCE would (Linux's weak_wrmsr_fence()
   * before an x2APIC ICR write: WRMSR to x2APIC MSRs does not serialize). Same step.
   */
  | { op: 'wrmsr'; msr: number; value: bigint; fence?: boolean }
  | { op: 'rdmsr'; msr: number }
  | { op: 'irqs'; enable: boolean }
  | { op: 'note'; text: string };

export type HostResult = bigint | undefined;
export type HostGen = Generator<HostOp, bigint | void, HostResult>;

/** What a routine sees when it starts. */
export interface HostContext {
  readonly cpu: number;
  /** Integer arguments rdi, rsi, rdx, rcx, r8, r9 at entry. */
  readonly args: readonly bigint[];
  /** A one-line status shown in reports and traces ("waiting for acks", …). */
  status: string;
  /** The kernel context this routine stands for in reports ("stop_machine"), if any. */
  label: string;
}

export type HostRoutine = (ctx: HostContext) => HostGen;

export interface HostBinding {
  name: string;
  address: bigint;
  routine: HostRoutine;
}

/** Everything needed to re-create a routine's generator at any of its steps. */
export interface HostHistory {
  binding: HostBinding;
  ctx: HostContext;
  /** Model state host routines read, as the routine started (null: none registered). */
  entry: Map<string, unknown> | null;
  /** Value fed into each step (the first is undefined). */
  inputs: HostResult[];
  /**
   * Running hash of the routine (binding, arguments) and of the values fed to it, in two
   * 32-bit halves: entry k covers the first k inputs (so there is one more entry than
   * inputs). Kept as the history grows and cut with it, so that the explorer's state
   * hash reads one entry per routine instead of re-hashing every input at every state.
   */
  hashA: number[];
  hashB: number[];
  /** Operation yielded by each step (absent for the final step, which returned). */
  ops: HostOp[];
  /** Direct memory reads of the body, in order, and how many there were after each step. */
  reads: { addr: bigint; len: number; bytes: Uint8Array }[];
  readMarks: number[];
  /** The live generator and how many steps it has taken. */
  gen: HostGen;
  genSteps: number;
  /** Records the body's direct reads while it runs. */
  tap: HostReadTap;
}

/** A routine's history diverged on replay (its body depends on state nobody saved). */
export class ReplayDivergence extends Error {}

export interface HostFrame {
  binding: HostBinding;
  hist: HostHistory;
  ctx: HostContext;
  rspLo: number;
  rspHi: number;
  /** A wait that has not been satisfied yet; re-evaluated each time the CPU runs. */
  pending: Extract<HostOp, { op: 'wait' }> | null;
  /** A guest call in progress. */
  calling: boolean;
  resume: HostResult;
  /** Description of the last operation, for traces. */
  last: string;
  /** How many interrupt contexts were active when the routine started (for context stacks). */
  depth: number;
}

function sizeMask(size: number): bigint {
  return (1n << BigInt(size * 8)) - 1n;
}

function splitBig(v: bigint): [number, number] {
  const a = BigInt.asUintN(64, v);
  return [Number(a & 0xffffffffn) | 0, Number(a >> 32n) | 0];
}

/** Reads guest memory through the CPU's path (so spin tracking and MMIO work). */
export function hostRead(cpu: Cpu, addr: bigint, size: number): bigint {
  const [lo, hi] = splitBig(addr);
  switch (size) {
    case 1:
      return BigInt(cpu.rd8(lo, hi));
    case 2:
      return BigInt(cpu.rd16(lo, hi));
    case 4:
      return BigInt(cpu.rd32(lo, hi) >>> 0);
    default: {
      const l = cpu.rd64(lo, hi);
      return toBig(l, cpu.th);
    }
  }
}

export function hostWrite(cpu: Cpu, addr: bigint, size: number, value: bigint): void {
  const [lo, hi] = splitBig(addr);
  const [vl, vh] = splitBig(value & sizeMask(size));
  switch (size) {
    case 1:
      cpu.wr8(lo, hi, vl & 0xff);
      return;
    case 2:
      cpu.wr16(lo, hi, vl & 0xffff);
      return;
    case 4:
      cpu.wr32(lo, hi, vl);
      return;
    default:
      cpu.wr64(lo, hi, vl, vh);
  }
}

function findFrame(cpu: Cpu, b: HostBinding): HostFrame | null {
  const rl = cpu.r[RSP];
  const rh = cpu.r[RSP + HI];
  const frames = cpu.hostFrames;
  for (let k = frames.length - 1; k >= 0; k--) {
    const f = frames[k];
    if (f.binding === b && f.rspLo === rl && f.rspHi === rh) {
      // Frames above it were abandoned (their context was unwound without returning).
      frames.length = k + 1;
      return f;
    }
  }
  return null;
}

/** Compiled form of a bound address: each execution is one step of the routine. */
export function hostExec(b: HostBinding): Exec {
  return (cpu, ins) => stepHost(cpu, ins, b);
}

function newHistory(cpu: Cpu, b: HostBinding, ctx: HostContext): HostHistory {
  const m = cpu.machine;
  const h: HostHistory = {
    binding: b, ctx, entry: m.hasHostReadParts ? m.saveParts(true) : null, inputs: [], hashA: [], hashB: [], ops: [], reads: [], readMarks: [],
    gen: b.routine(ctx), genSteps: 0,
    tap: {
      read: (addr, len, live) => {
        const bytes = live();
        h.reads.push({ addr, len, bytes: bytes.slice() });
        return bytes;
      },
    },
  };
  // The generator is a function of the routine, its context and the values fed to it.
  let a = mixBig(SEED_A, b.address);
  let c = mixBig(SEED_B, b.address);
  for (const x of ctx.args) {
    a = mixBig(a, x);
    c = mixBig(c, x ^ 0x55n);
  }
  h.hashA.push(a);
  h.hashB.push(c);
  return h;
}

/** Both 32-bit words of a 64-bit value. */
function mixBig(h: number, v: bigint): number {
  return mix(mix(h, Number(BigInt.asUintN(32, v))), Number(BigInt.asUintN(32, v >> 32n)));
}

/** Runs one step of a routine's generator, recording it. */
function advance(cpu: Cpu, h: HostHistory, input: HostResult): IteratorResult<HostOp, bigint | void> {
  h.inputs.push(input);
  const n = h.hashA.length - 1;
  h.hashA.push(input === undefined ? mix(h.hashA[n], 1) : mixBig(mix(h.hashA[n], 2), input));
  h.hashB.push(input === undefined ? mix(h.hashB[n], 3) : mixBig(mix(h.hashB[n], 4), input ^ 0x55n));
  const mem = cpu.mem;
  mem.hostReads = h.tap;
  let r: IteratorResult<HostOp, bigint | void>;
  try {
    r = h.gen.next(input);
  } finally {
    mem.hostReads = null;
  }
  h.genSteps++;
  h.readMarks.push(h.reads.length);
  if (!r.done) h.ops.push(r.value);
  return r;
}

function stepHost(cpu: Cpu, ins: Insn, b: HostBinding): Insn {
  let f = findFrame(cpu, b);
  if (!f) {
    const ctx: HostContext = {
      cpu: cpu.id,
      args: [RDI, RSI, RDX, RCX, R8, R9].map((i) => cpu.getReg(i)),
      status: '',
      label: '',
    };
    const hist = newHistory(cpu, b, ctx);
    f = {
      binding: b, hist, ctx, rspLo: cpu.r[RSP], rspHi: cpu.r[RSP + HI],
      pending: null, calling: false, resume: undefined, last: 'enter', depth: cpu.contexts.length,
    };
    cpu.hostFrames.push(f);
  } else if (f.calling) {
    f.calling = false;
    f.resume = cpu.getReg(RAX);
  }
  if (f.pending) {
    const w = f.pending;
    const v = hostRead(cpu, w.addr, w.size);
    if (!w.until(v)) {
      cpu.machine.blockOnWait(cpu, w);
      return ins;
    }
    f.pending = null;
    f.resume = v;
    f.last = `${w.what}: done`;
    return ins;
  }
  const input = f.resume;
  f.resume = undefined;
  const r = advance(cpu, f.hist, input);
  if (r.done) {
    cpu.hostFrames.pop();
    if (typeof r.value === 'bigint') cpu.setReg(RAX, r.value);
    const lo = pop64(cpu);
    return cpu.icache.at(lo, cpu.th);
  }
  return perform(cpu, ins, f, r.value);
}

function perform(cpu: Cpu, ins: Insn, f: HostFrame, op: HostOp): Insn {
  switch (op.op) {
    case 'read':
      f.resume = hostRead(cpu, op.addr, op.size);
      f.last = `read ${sym(cpu, op.addr)} = ${hex(f.resume)}`;
      return ins;
    case 'write':
      hostWrite(cpu, op.addr, op.size, op.value);
      f.last = `write ${sym(cpu, op.addr)} = ${hex(op.value)}${op.what ? ` (${op.what})` : ''}`;
      return ins;
    case 'cmpxchg': {
      // Locked: the store buffer drains before and after (x86-TSO).
      cpu.drainAll();
      const old = hostRead(cpu, op.addr, op.size);
      if (old === (op.expected & sizeMask(op.size))) hostWrite(cpu, op.addr, op.size, op.value);
      cpu.drainAll();
      f.resume = old;
      f.last = `cmpxchg ${sym(cpu, op.addr)}: ${hex(old)} -> ${old === op.expected ? hex(op.value) : 'unchanged'}`;
      return ins;
    }
    case 'xadd':
    case 'or':
    case 'and': {
      cpu.drainAll();
      const old = hostRead(cpu, op.addr, op.size);
      const nv = op.op === 'xadd' ? old + op.value : op.op === 'or' ? old | op.value : old & op.value;
      hostWrite(cpu, op.addr, op.size, nv & sizeMask(op.size));
      cpu.drainAll();
      f.resume = old;
      f.last = `lock ${op.op} ${sym(cpu, op.addr)}: ${hex(old)} -> ${hex(nv & sizeMask(op.size))}`;
      return ins;
    }
    case 'wait': {
      const v = hostRead(cpu, op.addr, op.size);
      if (op.until(v)) {
        f.resume = v;
        f.last = `${op.what}: done`;
        return ins;
      }
      f.pending = op;
      f.last = `waiting: ${op.what}`;
      cpu.machine.blockOnWait(cpu, op);
      return ins;
    }
    case 'call': {
      const regs = [RDI, RSI, RDX, RCX, R8, R9];
      op.args.forEach((a, i) => cpu.setReg(regs[i], a));
      push64(cpu, ins.lo, ins.hi);
      f.calling = true;
      f.last = `call ${op.what ?? sym(cpu, op.target)}`;
      const [lo, hi] = splitBig(op.target);
      return cpu.icache.at(lo, hi);
    }
    case 'serialize':
      cpu.serialize();
      f.last = op.how;
      return ins;
    case 'wrmsr':
      if (op.fence) cpu.drainAll();
      cpu.machine.wrmsr(cpu, op.msr, op.value);
      f.last = `wrmsr 0x${op.msr.toString(16)} = ${hex(op.value)}`;
      return ins;
    case 'rdmsr':
      f.resume = cpu.machine.rdmsr(cpu, op.msr);
      f.last = `rdmsr 0x${op.msr.toString(16)}`;
      return ins;
    case 'irqs': {
      const fl = readFlags(cpu);
      writeFlags(cpu, op.enable ? fl | IF : fl & ~IF);
      if (op.enable) cpu.brk = true;
      f.last = op.enable ? 'local_irq_enable' : 'local_irq_disable';
      return ins;
    }
    case 'note':
      f.last = op.text;
      return ins;
  }
}

function hex(v: bigint | undefined): string {
  return v === undefined ? '?' : '0x' + v.toString(16);
}

function sym(cpu: Cpu, a: bigint): string {
  return cpu.machine.symbolize(a);
}

/** Whether a replayed operation is the recorded one (closures aside: they are re-created). */
function sameOp(a: HostOp, b: HostOp): boolean {
  // Runs for every step a restore replays: no allocation (the explorer restores often).
  return sameValue(a, b, 0);
}

/**
 * Structural equality of plain data: bigints and other primitives by value, arrays and
 * records by their elements; a function (a closure re-created on replay) matches
 * anything below the top level.
 */
function sameValue(u: unknown, v: unknown, depth: number): boolean {
  if (u === v) return true;
  if (typeof u === 'function' || typeof v === 'function') return depth > 0;
  if (typeof u !== 'object' || typeof v !== 'object' || u === null || v === null) return false;
  if (Array.isArray(u) !== Array.isArray(v)) return false;
  if (Array.isArray(u)) {
    const w = v as unknown[];
    if (u.length !== w.length) return false;
    for (let i = 0; i < u.length; i++) if (!sameValue(u[i], w[i], depth + 1)) return false;
    return true;
  }
  const x = u as Record<string, unknown>;
  const y = v as Record<string, unknown>;
  for (const k in x) if (!sameValue(x[k], y[k], depth + 1)) return false;
  // Keys only y has: equal only if what x lacks is nothing (or a closure).
  for (const k in y) if (!(k in x) && !sameValue(undefined, y[k], depth + 1)) return false;
  return true;
}

/**
 * The routine as it was after `n` steps: its history cut to `n` steps, and a generator
 * that has taken them (the live one if it has taken exactly those, or a new one fed the
 * recorded values; `loadEntry` loads the model state the routine started with).
 * Returns the last operation yielded (the current one).
 */
export function rewindHistory(cpu: Cpu, h: HostHistory, n: number, loadEntry: (entry: Map<string, unknown>) => void): HostOp | undefined {
  h.inputs.length = n;
  if (h.hashA.length !== n + 1) {
    h.hashA.length = n + 1;
    h.hashB.length = n + 1;
  }
  h.ops.length = Math.min(h.ops.length, n);
  h.readMarks.length = n;
  h.reads.length = n > 0 ? h.readMarks[n - 1] : 0;
  if (h.genSteps !== n) {
    if (h.entry) loadEntry(h.entry);
    const gen = h.binding.routine(h.ctx);
    let next = 0;
    const mem = cpu.mem;
    const where = (): string => `host routine ${h.binding.name} on CPU${cpu.id}`;
    mem.hostReads = {
      read: (addr, len) => {
        const r = h.reads[next++];
        if (!r || r.addr !== addr || r.len !== len) {
          throw new ReplayDivergence(`${where()} read ${len} byte(s) at 0x${addr.toString(16)} on replay, not as recorded`);
        }
        return r.bytes.slice();
      },
    };
    try {
      for (let i = 0; i < n; i++) {
        const r = gen.next(h.inputs[i]);
        if (r.done) {
          if (i < h.ops.length) throw new ReplayDivergence(`${where()} returned at step ${i} on replay`);
          break;
        }
        if (!sameOp(r.value, h.ops[i])) {
          throw new ReplayDivergence(`${where()} yielded ${r.value.op} at step ${i} on replay, recorded ${h.ops[i]?.op ?? 'a return'}`);
        }
        h.ops[i] = r.value;
      }
    } finally {
      mem.hostReads = null;
    }
    h.gen = gen;
    h.genSteps = n;
  }
  return n > 0 ? h.ops[n - 1] : undefined;
}
