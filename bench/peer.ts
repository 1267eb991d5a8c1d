// textpoke side by side with a peer: the same bytes, registers and memory run on
// textpoke and on Unicorn (QEMU's TCG as a library, Debian's libunicorn-dev), timed
// apart, and reported as MIPS and ratios. The peer is optional: without the library
// the section says so and reports textpoke alone.
//
// Instruction counts come from textpoke (it counts every step); a workload's count is
// linear in its repeat register, so two short textpoke runs give it exactly for any
// repeat count, and each engine runs the repeat count that fills its own time budget.
// Final registers are compared, so both engines did the same work. Both are timed in
// CPU time of their own process (process.cpuUsage, CLOCK_PROCESS_CPUTIME_ID): the
// host is shared, and wall time would measure whoever else runs on it.

import { execFileSync } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Machine } from '../emu/machine';
import { GPR_NAMES, R12, R13, RDX, RBX, RSP } from '../emu/regs';
import { asmBytes } from '../scripts/gas';
import { repoRoot, cachedKernelVersions, defaultCacheDir } from '../kernel-model/image/download';
import { loadVmlinux } from '../kernel-model/image/vmlinux';
import { checksumBuffer } from './emulator';
import { type BenchOptions, errorText, median } from './util';

/** CPU seconds (user + system) this process used since `c0`. */
function cpuSeconds(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

const TEXT = 0xffffffff81000000n;
const DRIVER = 0xffffffffc0000000n;
const BUF = 0xffffc90000100000n;
const STACK = 0xffffc90000200000n;
const STACK_SIZE = 0x10000;

interface Region {
  addr: bigint;
  bytes: Uint8Array;
  code: boolean;
}

/** One workload: memory, per-CPU entry registers, and where every CPU stops. */
export interface Workload {
  label: string;
  cpus: number;
  /** 0: each CPU runs to the stop address; 1: round-robin, one instruction at a time. */
  quantum: 0 | 1;
  regions: Region[];
  /** The register that holds the repeat count (the work scales with it). */
  repeatReg: number;
  regs: (cpu: number, repeat: number) => Map<number, bigint>;
  entry: bigint;
  stop: bigint;
}

export interface PeerFigure {
  label: string;
  cpus: number;
  quantum: number;
  /** Median of the timed trials (each a fresh machine), after the warm-up (warmUp). */
  textpokeMips: number;
  /** Every timed trial, in MIPS: their spread says how settled the figure is. */
  textpokeTrials: number[];
  /** Untimed trials run first until V8 had optimised the compiled blocks. */
  warmups: number;
  peerMips: number | null;
  peerTrials: number[] | null;
  /** peer / textpoke: how many times faster the peer is. */
  ratio: number | null;
  /** Both engines ended with the same registers on a common repeat count. */
  agree: boolean | null;
}

export interface PeerResults {
  peer: string | null;
  note: string;
  rows: PeerFigure[];
}

// ---- textpoke ----

export function textpokeMachine(w: Workload, repeat: number): Machine {
  const m = new Machine({ cpus: w.cpus });
  for (const r of w.regions) m.load(r.addr, r.bytes, r.code);
  for (const cpu of m.cpus) {
    cpu.setRipBig(w.entry);
    for (const [reg, v] of w.regs(cpu.id, repeat)) cpu.setReg(reg, v);
  }
  return m;
}

function runTextpoke(w: Workload, repeat: number): { steps: number; seconds: number; regs: bigint[][] } {
  const m = textpokeMachine(w, repeat);
  const c0 = process.cpuUsage();
  const r = m.run({ schedule: { kind: 'round-robin', quantum: w.quantum === 1 ? 1 : 1_000_000 }, maxSteps: Number.MAX_SAFE_INTEGER });
  const dt = cpuSeconds(c0);
  if (r.stop !== 'halted') throw new Error(`${w.label}: textpoke stopped with '${r.stop}', not at the final hlt`);
  for (const c of m.cpus) {
    if (c.rip !== w.stop + 1n) throw new Error(`${w.label}: CPU${c.id} halted at 0x${c.rip.toString(16)}, not after the final hlt`);
    c.setRipBig(w.stop);
  }
  // The final hlt is a step on textpoke and the stop address on the peer: not counted.
  return { steps: r.steps - w.cpus, seconds: dt, regs: m.cpus.map((c) => GPR_NAMES.map((_, i) => c.getReg(i))) };
}

/** Instructions for `repeat`, from two runs (the count is a + b·repeat). */
function instructionCount(w: Workload): (repeat: number) => number {
  const s1 = runTextpoke(w, 1).steps;
  const s2 = runTextpoke(w, 2).steps;
  return (k) => s1 + (s2 - s1) * (k - 1);
}

// ---- the peer ----

function peerBinary(): { path: string } | { why: string } {
  if (!existsSync('/usr/include/unicorn/unicorn.h')) return { why: 'Unicorn is not installed (Debian: apt-get install libunicorn-dev)' };
  const src = join(repoRoot(), 'bench', 'peer', 'unicorn-bench.c');
  const dir = join(repoRoot(), '.cache', 'bench');
  const bin = join(dir, 'unicorn-bench');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(dir, { recursive: true });
    try {
      execFileSync('gcc', ['-O2', '-o', bin, src, '-lunicorn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      return { why: `building the Unicorn harness failed: ${errorText(e)}` };
    }
  }
  return { path: bin };
}

/** The spec lines for a workload's memory; each region is written to a file once. */
const regionLines = new Map<Workload, string[]>();
function memoryLines(w: Workload, dir: string): string[] {
  let lines = regionLines.get(w);
  if (!lines) {
    lines = [];
    for (const r of w.regions) {
      const file = join(dir, `region${regionLines.size}-${lines.length}.bin`);
      writeFileSync(file, r.bytes);
      lines.push(`map 0x${r.addr.toString(16)} 0x${r.bytes.length.toString(16)}`, `load 0x${r.addr.toString(16)} ${file} 0x0 0x${r.bytes.length.toString(16)}`);
    }
    regionLines.set(w, lines);
  }
  return lines;
}

function runPeer(bin: string, w: Workload, repeat: number, dir: string): { seconds: number; regs: bigint[][] } {
  const lines = [`cpus ${w.cpus}`, `quantum ${w.quantum}`, `stop 0x${w.stop.toString(16)}`, ...memoryLines(w, dir)];
  for (let c = 0; c < w.cpus; c++) {
    lines.push(`reg ${c} rip 0x${w.entry.toString(16)}`);
    for (const [reg, v] of w.regs(c, repeat)) lines.push(`reg ${c} ${GPR_NAMES[reg]} 0x${v.toString(16)}`);
  }
  const spec = join(dir, 'spec.txt');
  writeFileSync(spec, lines.join('\n') + '\n');
  const out = execFileSync(bin, [spec], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const sec = /^seconds ([0-9.]+)$/m.exec(out);
  if (!sec) throw new Error(`${w.label}: the Unicorn harness printed no time: ${out.trim()}`);
  const regs: bigint[][] = [];
  for (const m of out.matchAll(/^cpu (\d+) (.*)$/gm)) regs[Number(m[1])] = m[2].trim().split(' ').map((x) => BigInt(x));
  return { seconds: Number(sec[1]), regs };
}

// ---- workloads ----

const assembled = new Map<string, Uint8Array>();
function code(src: string, at: bigint): Uint8Array {
  const key = `${at}:${src}`;
  let b = assembled.get(key);
  if (!b) assembled.set(key, (b = asmBytes(src, at)));
  return b;
}

/** A loop whose body repeats `repeat` times, then hlt at `stop`. */
function loopWorkload(label: string, body: string, cpus: number, quantum: 0 | 1, extra: Region[] = [], regs: (cpu: number) => [number, bigint][] = () => []): Workload {
  const src = `${body}\n  .globl stop\nstop:\n  hlt\n`;
  const bytes = code(src, TEXT);
  // The stop address: the one hlt, at the end.
  const stop = TEXT + BigInt(bytes.length - 1);
  return {
    label, cpus, quantum, entry: TEXT, stop, repeatReg: R12,
    regions: [{ addr: TEXT, bytes, code: true }, { addr: STACK, bytes: new Uint8Array(STACK_SIZE), code: false }, ...extra],
    regs: (cpu, repeat) => new Map<number, bigint>([[R12, BigInt(repeat)], [RSP, STACK + BigInt(STACK_SIZE - 64)], [RDX, BigInt(cpu)], ...regs(cpu)]),
  };
}

const REGISTER_LOOP = `
  1:
    mov $1000, %ecx
  2:
    add %rcx, %rdx
    rol $5, %rdx
    xor %rdx, %rax
    lea 1(%rax,%rcx,2), %r8
    dec %rcx
    jnz 2b
    dec %r12
    jnz 1b
`;

const CHECKSUM_LOOP = `
  1:
    mov %rbx, %rsi
    mov $4096, %ecx
  2:
    movzbl (%rsi), %eax
    add %rax, %rdx
    rol $5, %rdx
    inc %rsi
    dec %rcx
    jnz 2b
    dec %r12
    jnz 1b
`;

export function fixtureWorkloads(): Workload[] {
  const buf: Region = { addr: BUF, bytes: checksumBuffer().slice(), code: false };
  return [
    loopWorkload('1 CPU, register loop', REGISTER_LOOP, 1, 0),
    loopWorkload('1 CPU, checksum loop', CHECKSUM_LOOP, 1, 0, [buf], () => [[RBX, BUF]]),
    loopWorkload('4 CPUs q=1, register loop', REGISTER_LOOP, 4, 1),
  ];
}

/**
 * The kernel's own functions from Debian's image, called in a loop by a driver in
 * module space: crc32_le(crc, buf, len) and xxh64(buf, len, seed) over 4 KiB.
 */
export function kernelWorkloads(o: BenchOptions): Workload[] {
  const versions = cachedKernelVersions();
  if (versions.length === 0) {
    o.log('peer: no kernel in .cache/kernel (npm run fetch-kernel): the kernel functions are left out');
    return [];
  }
  const dir = join(defaultCacheDir(), versions[versions.length - 1]);
  const vm = loadVmlinux(join(dir, 'vmlinux'), { systemMap: join(dir, 'System.map') });
  const probe = new Machine({ cpus: 1 });
  vm.mapInto(probe, { sections: ['.text', '.rodata'] });
  const regions: Region[] = [];
  for (const name of ['.text', '.rodata']) {
    const s = vm.sections.find((x) => x.name === name);
    if (!s) throw new Error(`peer: the kernel has no ${name}`);
    regions.push({ addr: s.loadAddr, bytes: probe.mem.readBytes(s.loadAddr, s.size), code: s.code });
  }
  regions.push({ addr: BUF, bytes: checksumBuffer().slice(), code: false }, { addr: STACK, bytes: new Uint8Array(STACK_SIZE), code: false });
  const out: Workload[] = [];
  const calls: [string, string][] = [
    ['crc32_le', `mov %r13d, %edi\n movabs $0x${BUF.toString(16)}, %rsi\n mov $4096, %edx`],
    ['xxh64', `movabs $0x${BUF.toString(16)}, %rdi\n mov $4096, %esi\n mov %r13, %rdx`],
  ];
  for (const [fn, args] of calls) {
    const addr = vm.symbols.resolve(fn);
    if (addr === undefined) {
      o.log(`peer: the kernel has no ${fn}; left out`);
      continue;
    }
    const src = `
    1:
      ${args}
      movabs $0x${addr.toString(16)}, %rax
      call *%rax
      mov %rax, %r13
      dec %r12
      jnz 1b
      .globl stop
    stop:
      hlt
    `;
    const bytes = code(src, DRIVER);
    out.push({
      label: `1 CPU, kernel ${fn} (4 KiB)`,
      cpus: 1, quantum: 0, entry: DRIVER, stop: DRIVER + BigInt(bytes.length - 1), repeatReg: R12,
      regions: [...regions, { addr: DRIVER, bytes, code: true }],
      regs: (_cpu, repeat) => new Map<number, bigint>([[R12, BigInt(repeat)], [R13, 0n], [RSP, STACK + BigInt(STACK_SIZE - 64)]]),
    });
  }
  return out;
}

// ---- the section ----

/** The repeat count that keeps an engine busy for about `budget` seconds, from a probe run. */
function repeatFor(secondsPerRepeat: number, budget: number): number {
  return Math.max(2, Math.min(1e9, Math.ceil(budget / Math.max(secondsPerRepeat, 1e-9))));
}

/**
 * The repeat count that fills `budget` seconds of `run` (seconds for a repeat count).
 * A short probe is mostly fixed cost (a fresh machine decodes and compiles, a JIT
 * translates) and would make every trial short, so the probe's repeat count doubles
 * until it runs for a tenth of the budget; the trials then measure running, not
 * starting. The same for both engines.
 */
function calibrate(run: (repeat: number) => number, budget: number): number {
  let k = 4;
  let s = run(k);
  while (s < budget / 10 && k < 1e8) {
    k *= s <= 0 ? 16 : Math.min(16, Math.max(2, Math.ceil(budget / 10 / s)));
    s = run(k);
  }
  return repeatFor(s / k, budget);
}

/**
 * Untimed trials until the rate stops climbing: V8 optimises the compiled blocks (and
 * the step loop) only after they have run a while, in tiers, and a trial measured
 * before that is several times slower than the ones after (62 against 272 MIPS on
 * crc32_le). Done when two trials in a row fail to beat the best so far by 10%, or
 * after `max`. Returns the trials run.
 */
function warmUp(mips: () => number, max: number): number {
  let best = 0;
  let flat = 0;
  let n = 0;
  while (n < max && flat < 2) {
    const r = mips();
    n++;
    if (r > best * 1.1) flat = 0;
    else flat++;
    best = Math.max(best, r);
  }
  return n;
}

function sameRegs(a: bigint[][], b: bigint[][]): boolean {
  return a.length === b.length && a.every((r, c) => b[c] !== undefined && r.every((v, i) => v === b[c][i]));
}

export function benchPeer(o: BenchOptions): PeerResults {
  const found = peerBinary();
  const workloads = [...fixtureWorkloads(), ...kernelWorkloads(o)];
  const budget = o.quick ? 0.05 : Math.max(o.minSeconds, 0.5);
  // Five timed trials at least (after the warm-up): the median and the spread are reported.
  const trials = o.quick ? o.trials : Math.max(o.trials, 5);
  const tmp = mkdtempSync(join(tmpdir(), 'textpoke-peer-'));
  const rows: PeerFigure[] = [];
  try {
    for (const w of workloads) {
      o.log(`peer: ${w.label}`);
      const count = instructionCount(w);
      const probe = runTextpoke(w, 4);
      const k0 = calibrate((k) => runTextpoke(w, k).seconds, budget);
      const trial = (k: number): number => count(k) / runTextpoke(w, k).seconds / 1e6;
      let best = 0;
      const warmups = o.quick ? 0 : warmUp(() => {
        const r = trial(k0);
        best = Math.max(best, r);
        return r;
      }, 12);
      // Calibrated on cold runs, a trial would be short once warm: the repeat count again, at the warm rate.
      const perRepeat = count(k0 + 1) - count(k0);
      const kt = o.quick ? k0 : repeatFor(perRepeat / (best * 1e6), budget);
      const textpokeTrials = Array.from({ length: trials }, () => trial(kt));
      const textpokeMips = median(textpokeTrials);
      let peerMips: number | null = null;
      let peerTrials: number[] | null = null;
      let agree: boolean | null = null;
      if ('path' in found) {
        // A common repeat count first: both engines must end in the same registers.
        agree = sameRegs(runPeer(found.path, w, 4, tmp).regs, probe.regs);
        const ku = calibrate((k) => runPeer(found.path, w, k, tmp).seconds, budget);
        const runs = Array.from({ length: trials }, () => runPeer(found.path, w, ku, tmp));
        peerTrials = runs.map((r) => count(ku) / r.seconds / 1e6);
        peerMips = median(peerTrials);
      }
      rows.push({ label: w.label, cpus: w.cpus, quantum: w.quantum, textpokeMips, textpokeTrials, warmups, peerMips, peerTrials, ratio: peerMips === null ? null : peerMips / textpokeMips, agree });
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return {
    peer: 'path' in found ? 'Unicorn (libunicorn, QEMU TCG JIT)' : null,
    note: 'path' in found ? 'same bytes, registers and memory on both; instruction counts from textpoke; MIPS per CPU second of each engine' : found.why,
    rows,
  };
}
