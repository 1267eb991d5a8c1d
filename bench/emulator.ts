// Emulator speed: emulated instructions per second on tight integer loops (one CPU, and
// four CPUs interleaved one instruction at a time), what a trace probe costs, and how
// fast first executions decode and compile. The guest code is real assembler source,
// built with GNU as through scripts/gas.ts.

import { Machine } from '../emu/machine';
import type { Probe } from '../emu/probe';
import type { Schedule } from '../emu/scheduler';
import { Prng } from '../emu/scheduler';
import { RDX } from '../emu/regs';
import { asmBytes } from '../scripts/gas';
import type { MemoryModel, RmwMode } from '../emu/machine';
import { PageTables } from '../emu/page-tables';
import { type BenchOptions, median, now, seconds } from './util';

/** Kernel-style addresses, so every access goes through the 64-bit (hi != 0) paths. */
const TEXT = 0xffffffff81000000n;
const BUF = 0xffffffff82000000n;
const BUF_LEN = 4096;

export type LoopKind = 'checksum' | 'register' | 'rmw';

/**
 * The measured loops. Both run forever (the outer loop restarts the inner one), so a
 * run ends only at its step limit and every step is loop work.
 * - checksum: six instructions per byte of a 4 KiB buffer, one memory load each round.
 * - register: six register-only instructions per round.
 */
const LOOPS: Record<LoopKind, string> = {
  checksum: `
    movabs $0x${BUF.toString(16)}, %rbx
  outer:
    mov %rbx, %rsi
    mov $${BUF_LEN}, %ecx
  1:
    movzbl (%rsi), %eax
    add %rax, %rdx
    rol $5, %rdx
    inc %rsi
    dec %rcx
    jnz 1b
    jmp outer
  `,
  rmw: `
    movabs $0x${BUF.toString(16)}, %rbx
  outer:
    mov %rbx, %rsi
    mov $${BUF_LEN / 8}, %ecx
  1:
    addq %rdx, (%rsi)
    rol $5, %rdx
    add $8, %rsi
    dec %rcx
    jnz 1b
    jmp outer
  `,
  register: `
  outer:
    mov $100000, %ecx
  1:
    add %rcx, %rdx
    rol $5, %rdx
    xor %rdx, %rax
    lea 1(%rax,%rcx,2), %r8
    dec %rcx
    jnz 1b
    jmp outer
  `,
};

/** One pass of the checksum loop ending in HLT: checks the loop computes what it should. */
const CHECKSUM_ONCE = `
    movabs $0x${BUF.toString(16)}, %rsi
    mov $${BUF_LEN}, %ecx
  1:
    movzbl (%rsi), %eax
    add %rax, %rdx
    rol $5, %rdx
    inc %rsi
    dec %rcx
    jnz 1b
    hlt
`;

// Assembling forks as/ld: do it once per source, not per machine.
const assembled = new Map<string, Uint8Array>();
function code(src: string): Uint8Array {
  let b = assembled.get(src);
  if (!b) {
    b = asmBytes(src, TEXT);
    assembled.set(src, b);
  }
  return b;
}

let buffer: Uint8Array | null = null;
/** The checksummed buffer: fixed pseudo-random bytes (seeded, so every run sums the same). */
export function checksumBuffer(): Uint8Array {
  if (!buffer) {
    const rng = new Prng(0x7e57);
    buffer = new Uint8Array(BUF_LEN);
    for (let i = 0; i < BUF_LEN; i++) buffer[i] = rng.below(256);
  }
  return buffer;
}

/** Machine options a figure measures the cost of (absent: sc, atomic, flat). */
export interface Semantics {
  memoryModel?: MemoryModel;
  rmw?: RmwMode;
  /** Translate through 4-level page tables (TEXT and BUF mapped to low physical frames). */
  paging?: boolean;
}

const PHYS_TEXT = 0x1000000n;
const PHYS_BUF = 0x2000000n;
const PHYS_TABLES = 0x3000000n;

function machineFor(source: string, cpus: number, sem: Semantics = {}): Machine {
  const m = new Machine({ cpus, memoryModel: sem.memoryModel, rmw: sem.rmw, paging: sem.paging });
  const bytes = code(source);
  if (sem.paging) {
    m.load(PHYS_TEXT, bytes, true);
    m.load(PHYS_BUF, checksumBuffer());
    const pt = new PageTables(m, PHYS_TABLES);
    for (let off = 0n; off < BigInt(bytes.length); off += 0x1000n) pt.map(TEXT + off, PHYS_TEXT + off);
    pt.map(BUF, PHYS_BUF);
    pt.enable();
  } else {
    m.load(TEXT, bytes, true);
    m.load(BUF, checksumBuffer());
  }
  for (const cpu of m.cpus) {
    cpu.setRipBig(TEXT);
    // Different seeds per CPU, so the interleaved CPUs do not compute identical states.
    cpu.setReg(RDX, BigInt(cpu.id));
  }
  return m;
}

export function loopMachine(kind: LoopKind, cpus: number, sem: Semantics = {}): Machine {
  return machineFor(LOOPS[kind], cpus, sem);
}

/** Runs one checksum pass in the emulator and compares RDX with the same sum in JS. */
export function verifyChecksumLoop(): { ok: boolean; emulated: bigint; expected: bigint } {
  const m = machineFor(CHECKSUM_ONCE, 1);
  const r = m.run({ stopOnHlt: true, maxSteps: 10 * BUF_LEN });
  const mask = (1n << 64n) - 1n;
  let x = 0n;
  for (const b of checksumBuffer()) {
    x = (x + BigInt(b)) & mask;
    x = ((x << 5n) | (x >> 59n)) & mask;
  }
  const emulated = m.cpu(0).getReg(RDX);
  return { ok: r.stop === 'hlt' && emulated === x, emulated, expected: x };
}

/** A probe that observes nothing: what remains is the cost of being observed at all. */
export const NOOP_PROBE: Probe = {
  onStep(): void {},
};

export interface RateFigure {
  label: string;
  loop: LoopKind;
  cpus: number;
  quantum: number;
  probe: boolean;
  /** Steps and seconds of the median trial. */
  steps: number;
  seconds: number;
  /** Median over trials, millions of emulated instructions per CPU second. */
  mips: number;
  /** Median over trials, per wall-clock second (what a user waits; on a shared host it counts the neighbours too). */
  wallMips: number;
  /** Non-default machine semantics measured ('' for sc+atomic+flat), and the row it is compared with. */
  semantics: string;
  baseline: string | null;
  best: number;
  trials: number[];
}

export interface RateSpec {
  label: string;
  loop: LoopKind;
  cpus: number;
  quantum: number;
  probe?: boolean;
  semantics?: Semantics;
  /** Label of the default-semantics row this one's cost is reported against. */
  baseline?: string;
}

export function semanticsText(s: Semantics | undefined): string {
  if (!s) return '';
  const parts: string[] = [];
  if (s.memoryModel && s.memoryModel !== 'sc') parts.push(s.memoryModel);
  if (s.rmw && s.rmw !== 'atomic') parts.push(`${s.rmw} RMW`);
  if (s.paging) parts.push('paging');
  return parts.join(' + ');
}

/** The figures `npm run bench` reports, in table order. */
export const RATE_SPECS: RateSpec[] = [
  { label: '1 CPU, checksum loop', loop: 'checksum', cpus: 1, quantum: 10_000 },
  { label: '1 CPU, register loop', loop: 'register', cpus: 1, quantum: 10_000 },
  { label: '4 CPUs q=1, checksum loop', loop: 'checksum', cpus: 4, quantum: 1 },
  { label: '4 CPUs q=1, register loop', loop: 'register', cpus: 4, quantum: 1 },
  { label: '64 CPUs q=1, register loop', loop: 'register', cpus: 64, quantum: 1 },
  { label: '4 CPUs q=1000, checksum loop', loop: 'checksum', cpus: 4, quantum: 1000 },
  { label: '1 CPU, checksum, no-op probe', loop: 'checksum', cpus: 1, quantum: 10_000, probe: true },
  { label: '4 CPUs q=1, checksum, no-op probe', loop: 'checksum', cpus: 4, quantum: 1, probe: true },
  // What the concurrency semantics cost (docs/notes/x86-tso.md, docs/notes/paging.md).
  { label: '1 CPU, checksum loop, paging', loop: 'checksum', cpus: 1, quantum: 10_000, semantics: { paging: true }, baseline: '1 CPU, checksum loop' },
  { label: '1 CPU, checksum loop, tso', loop: 'checksum', cpus: 1, quantum: 10_000, semantics: { memoryModel: 'tso' }, baseline: '1 CPU, checksum loop' },
  { label: '1 CPU, RMW loop', loop: 'rmw', cpus: 1, quantum: 10_000 },
  { label: '1 CPU, RMW loop, paging', loop: 'rmw', cpus: 1, quantum: 10_000, semantics: { paging: true }, baseline: '1 CPU, RMW loop' },
  { label: '1 CPU, RMW loop, tso', loop: 'rmw', cpus: 1, quantum: 10_000, semantics: { memoryModel: 'tso' }, baseline: '1 CPU, RMW loop' },
  { label: '1 CPU, RMW loop, split', loop: 'rmw', cpus: 1, quantum: 10_000, semantics: { rmw: 'split' }, baseline: '1 CPU, RMW loop' },
  { label: '4 CPUs q=1, RMW loop', loop: 'rmw', cpus: 4, quantum: 1 },
  { label: '4 CPUs q=1, RMW loop, tso + split', loop: 'rmw', cpus: 4, quantum: 1, semantics: { memoryModel: 'tso', rmw: 'split' }, baseline: '4 CPUs q=1, RMW loop' },
];

/**
 * One loop configuration on its own machine: a warm-up when created (the loop's
 * instructions compile, V8 optimises the step loop), then timed trials of at least
 * `minSeconds` each, run in chunks so the clock is read rarely.
 */
export class RateRunner {
  private readonly m: Machine;
  private readonly schedule: Schedule;
  private readonly chunk: number;
  readonly results: { steps: number; seconds: number; mips: number; wallMips: number }[] = [];

  constructor(readonly spec: RateSpec, private readonly o: BenchOptions) {
    this.m = loopMachine(spec.loop, spec.cpus, spec.semantics);
    if (spec.probe) this.m.probe = NOOP_PROBE;
    this.schedule = { kind: 'round-robin', quantum: spec.quantum };
    this.chunk = o.quick ? 50_000 : 2_000_000;
    this.advance(o.quick ? 20_000 : 1_000_000);
  }

  private advance(n: number): void {
    const r = this.m.run({ schedule: this.schedule, maxSteps: this.m.steps + n });
    if (r.stop !== 'step-limit') throw new Error(`${this.spec.label}: the loop stopped early (${r.stop}); the bench measures nothing`);
  }

  trial(): void {
    const s0 = this.m.steps;
    // CPU time of this process: the host is shared, and wall time would count the neighbours.
    const c0 = process.cpuUsage();
    const t0 = now();
    let dt = 0;
    do {
      this.advance(this.chunk);
      const c = process.cpuUsage(c0);
      dt = (c.user + c.system) / 1e6;
    } while (dt < this.o.minSeconds);
    const wall = seconds(t0);
    const steps = this.m.steps - s0;
    this.results.push({ steps, seconds: dt, mips: steps / dt / 1e6, wallMips: steps / wall / 1e6 });
  }

  figure(): RateFigure {
    const spec = this.spec;
    if (this.m.exceptionLog.length) throw new Error(`${spec.label}: the guest took exceptions (${this.m.exceptionLog[0].detail})`);
    const mips = this.results.map((t) => t.mips);
    const med = median(mips);
    const mid = this.results.reduce((a, t) => (Math.abs(t.mips - med) < Math.abs(a.mips - med) ? t : a));
    return {
      label: spec.label, loop: spec.loop, cpus: spec.cpus, quantum: spec.quantum, probe: !!spec.probe,
      semantics: semanticsText(spec.semantics), baseline: spec.baseline ?? null,
      steps: mid.steps, seconds: mid.seconds, mips: med, wallMips: median(this.results.map((t) => t.wallMips)), best: Math.max(...mips), trials: mips,
    };
  }
}

/** Emulated MIPS of one loop configuration, its trials back to back. */
export function measureRate(spec: RateSpec, o: BenchOptions): RateFigure {
  const r = new RateRunner(spec, o);
  for (let i = 0; i < o.trials; i++) r.trial();
  return r.figure();
}

const REGS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];
const REGS32 = ['eax', 'ebx', 'ecx', 'edx', 'esi', 'edi', 'ebp', 'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d'];
const REGS8 = ['al', 'bl', 'cl', 'dl', 'sil', 'dil', 'bpl', 'r8b', 'r9b', 'r10b', 'r11b', 'r12b', 'r13b', 'r14b', 'r15b'];
const CC = ['e', 'ne', 'b', 'ae', 'l', 'ge', 'le', 'g', 's', 'ns', 'a', 'be'];

/**
 * `n` distinct straight-line instructions (no memory operands, no stack, no branches):
 * register ALU forms, shifts, LEA, IMUL, MOVZX, SETcc and CMOVcc with varying
 * registers and immediates, so first execution goes through decode and compile for
 * every one of them, across several opcode-table rows.
 */
export function straightLine(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = i % REGS.length;
    const b = (i * 7 + 3) % REGS.length;
    const c = (i * 11 + 5) % REGS.length;
    const r = REGS[a], s = REGS[b === a ? (b + 1) % REGS.length : b], t = REGS[c];
    const imm = (i * 2654435761) % 100000;
    switch (i % 12) {
      case 0: out.push(`add $${imm}, %${r}`); break;
      case 1: out.push(`mov %${r}, %${s}`); break;
      case 2: out.push(`lea ${imm}(%${r},%${s},${1 << (i % 4)}), %${t}`); break;
      case 3: out.push(`imul $${imm % 1000}, %${r}, %${s}`); break;
      case 4: out.push(`xor %${r}, %${s}`); break;
      case 5: out.push(`shl $${(i % 63) + 1}, %${r}`); break;
      case 6: out.push(`sub $${imm}, %${REGS32[a]}`); break;
      case 7: out.push(`cmp $${imm}, %${r}`); break;
      case 8: out.push(`set${CC[i % CC.length]} %${REGS8[a]}`); break;
      case 9: out.push(`cmov${CC[(i >> 2) % CC.length]} %${r}, %${s}`); break;
      case 10: out.push(`movzbl %${REGS8[a]}, %${REGS32[b]}`); break;
      default: out.push(`ror $${(i % 31) + 1}, %${r}`); break;
    }
  }
  return out.join('\n');
}

export interface DecodeFigure {
  /** Distinct instructions in the block (plus the final HLT). */
  instructions: number;
  /** First execution: decode + compile + run, instructions per second (median of trials). */
  firstPerSecond: number;
  /** Re-execution of the same block from the decoded-instruction cache. */
  cachedPerSecond: number;
  /** (first − cached) time per instruction: what decoding and compiling one instruction costs. */
  compileMicros: number;
  trials: number[];
}

/**
 * Decode throughput: a fresh machine executes a long straight-line block once, so every
 * step is a first execution. Machine construction and loading are not timed.
 */
export function measureDecode(o: BenchOptions): DecodeFigure {
  const n = o.quick ? 1000 : 20_000;
  const bytes = code(straightLine(n) + '\nhlt\n');
  const fresh = (): Machine => {
    const m = new Machine({ cpus: 1 });
    m.load(TEXT, bytes, true);
    m.cpu(0).setRipBig(TEXT);
    return m;
  };
  const runBlock = (m: Machine): number => {
    const s0 = m.steps;
    const t0 = now();
    const r = m.run({ schedule: { kind: 'round-robin', quantum: n + 1 }, stopOnHlt: true, maxSteps: s0 + n + 1 });
    const dt = seconds(t0);
    if (r.stop !== 'hlt' || m.exceptionLog.length) {
      throw new Error(`decode bench: the block did not run to its HLT (${r.stop}${m.exceptionLog.length ? `, ${m.exceptionLog[0].detail}` : ''})`);
    }
    if (m.steps - s0 !== n + 1) throw new Error(`decode bench: ran ${m.steps - s0} steps, expected ${n + 1}`);
    return dt;
  };
  // Trials of fresh machines until minSeconds of timed first executions each.
  const trialRate = (first: boolean): number => {
    let total = 0;
    let count = 0;
    const warm = fresh();
    runBlock(warm);
    do {
      let m = warm;
      if (first) m = fresh();
      else {
        m.cpu(0).halted = false;
        m.cpu(0).setRipBig(TEXT);
      }
      total += runBlock(m);
      count += n + 1;
    } while (total < o.minSeconds);
    return count / total;
  };
  trialRate(true); // warm-up: V8 compiles the decoder and the compile paths
  const firsts: number[] = [];
  for (let i = 0; i < o.trials; i++) firsts.push(trialRate(true));
  const cached: number[] = [];
  for (let i = 0; i < o.trials; i++) cached.push(trialRate(false));
  const firstPerSecond = median(firsts);
  const cachedPerSecond = median(cached);
  return {
    instructions: n,
    firstPerSecond,
    cachedPerSecond,
    compileMicros: (1 / firstPerSecond - 1 / cachedPerSecond) * 1e6,
    trials: firsts,
  };
}

export interface EmulatorResults {
  checksum: { ok: boolean; emulated: string; expected: string };
  rates: RateFigure[];
  decode: DecodeFigure;
}

export function benchEmulator(o: BenchOptions, specs: readonly RateSpec[] = RATE_SPECS): EmulatorResults {
  const c = verifyChecksumLoop();
  if (!c.ok) throw new Error(`the checksum loop computes 0x${c.emulated.toString(16)}, JS says 0x${c.expected.toString(16)}: fix the emulator before timing it`);
  // Trials go in rounds over all configurations rather than back to back, so a slow
  // patch of the host (another process on a 2-core VM) hits every figure alike and the
  // ratios between them (probe cost, interleaving cost) stay meaningful.
  const runners = specs.map((spec) => {
    o.log(`emulator: warm-up ${spec.label}`);
    return new RateRunner(spec, o);
  });
  for (let round = 0; round < o.trials; round++) {
    o.log(`emulator: round ${round + 1} of ${o.trials}`);
    for (const r of runners) r.trial();
  }
  const rates = runners.map((r) => r.figure());
  o.log('emulator: decode throughput');
  const decode = measureDecode(o);
  return { checksum: { ok: c.ok, emulated: '0x' + c.emulated.toString(16), expected: '0x' + c.expected.toString(16) }, rates, decode };
}
