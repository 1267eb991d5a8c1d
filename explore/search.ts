// The systematic explorer: depth-first search over a machine's choice points (which
// CPU steps next, where an NMI arrives) from a snapshot, within a bound of NMIs,
// preemptions (CHESS) and steps per schedule. Bounds grow one at a time (NMIs, then
// preemptions), so each distinct bug is first found with the fewest NMIs, then the
// fewest preemptions; among those the shortest schedule is kept. Visited states are
// not explored twice when the earlier visit had at least the budget left (see
// README.md for why that is sound). Imports emu/ only.

import type { Machine, Choice } from '../emu/machine';
import type { Snapshot } from '../emu/snapshot';
import { readFlags } from '../emu/flags';
import { Footprint, PAGE_SIZE, type Page } from '../emu/memory';
import { mix, fmix, SEED_A, SEED_B } from '../emu/hash';
import { VisitedTable, VISITED_LIMITS, entriesWithin } from './visited';

export type BugKind = 'deadlock' | 'livelock' | 'invariant' | 'xmc' | 'assertion';

export interface Bug {
  kind: BugKind;
  summary: string;
  /** Two bugs with the same kind and signature are the same bug (e.g. who waits where). */
  signature: string;
}

export interface Counterexample extends Bug {
  choices: Choice[];
  nmis: number;
  preemptions: number;
  steps: number;
  /** Seconds into the search when this counterexample (the best so far) was found. */
  seconds: number;
  /** The same in this process's CPU time (user + system): on a shared host, wall time is 2–6× more. */
  cpuSeconds: number;
}

export interface ExploreOptions {
  /** At most this many explorer-injected NMIs per schedule. */
  nmis: number;
  /** To these CPUs (default: none when nmis is 0, else all). */
  nmiCpus?: number[];
  /** At most this many of them to any one CPU (default: no limit but `nmis`; at most 8 CPUs, 15 per CPU). */
  nmisPerCpu?: number;
  /** At most this many preemptions per schedule. */
  preemptions: number;
  /** Steps per schedule; a schedule that reaches it ends there (counted as cut). */
  maxDepth: number;
  /** Skip states already explored with at least as much budget left (default true). */
  stateful?: boolean;
  /** Checked at every state: a bug, or null. */
  check?: (m: Machine) => Bug | null;
  maxSchedules?: number;
  /**
   * Entries the visited-state table may hold (default about 50 million: what fits in
   * 2.5 GiB, explore/visited.ts): past it the search stops as at a time limit, not
   * exhausted, rather than running out of memory.
   */
  maxVisited?: number;
  /** Memory the visited-state table may take, in bytes (default 2.5 GiB); sets `maxVisited` when that is not given. */
  visitedBytes?: number;
  timeLimitSeconds?: number;
  /**
   * Reduction (default true): NMIs arrive fused with their CPU's next step, and a
   * private step of the CPU that ran last is not a choice point (README.md).
   */
  reduce?: boolean;
  /**
   * Search order (not what is searched): at each state, the NMI to the CPU that ran
   * last before that CPU's step, so schedules with early NMIs come first (default
   * false: steps first, NMIs last). Every pass still searches every schedule.
   */
  nmisFirst?: boolean;
  /**
   * Schedules are meant to end at maxDepth (e.g. `--to depth`): a visited state covers a
   * later visit only with at least as many steps left. Otherwise (default) depth is left
   * out of that comparison, which is sound for every pass in which no schedule is cut at
   * maxDepth, and a pass with a cut is never complete (README: visited states).
   */
  exactDepth?: boolean;
  /** A number that changes whenever the checker's own state changes (its log of BUGs). */
  observe?: (m: Machine) => number;
  /**
   * Where a schedule ends (e.g. the patch has finished and every CPU has left it): the
   * end of every schedule that reaches it, checked by `atEnd`, never counted as cut.
   */
  done?: (m: Machine) => boolean;
  /** Checked where `done` ends a schedule (e.g. every site holds its new bytes). */
  atEnd?: (m: Machine) => Bug | null;
}

export interface ExploreResult {
  outcome: 'bug' | 'clean' | 'limit';
  /** The bounded space was explored entirely (no schedule, time or depth limit hit). */
  complete: boolean;
  schedules: number;
  states: number;
  /** Schedules cut at maxDepth. */
  cut: number;
  /** Passes redone because a word the reduction took as private turned out shared. */
  restarts: number;
  /**
   * One entry per pass run (bounds grow NMIs first, then preemptions; each pass
   * searches every schedule within its own bound): `complete` when that bound was
   * exhausted (no limit, no schedule cut at maxDepth).
   */
  passes: { nmis: number; preemptions: number; schedules: number; states: number; seconds: number; cpuSeconds: number; complete: boolean }[];
  seconds: number;
  /** CPU time (user + system) of this process during the search. */
  cpuSeconds: number;
  bugs: Counterexample[];
}

/** A deadlock: every live CPU waits or halts, one at least waits, nothing is pending. */
export function terminalBug(m: Machine): Bug | null {
  if (m.idleReason() !== 'deadlock') return null;
  const parts = m.cpus.filter((c) => c.blocked).map((c) => `CPU${c.id}@${m.symbolize(c.rip)}`);
  return { kind: 'deadlock', summary: `deadlock: ${m.cpus.map((c) => `CPU${c.id} ${c.blocked ? `waits (${c.blocked.detail})` : c.halted ? 'halted' : 'runs'} at ${m.symbolize(c.rip)}`).join('; ')}`, signature: parts.join(',') };
}

/** A hash of the state: CPUs (registers, flags, RIP, event state, host routines) and the pages changed since the root. */
export function stateHash(m: Machine, rootMark: number): string {
  hashState(m, rootMark);
  return `${hashA >>> 0}:${hashB >>> 0}`;
}

/** The two 32-bit halves of the last hashState (no allocation: the search hashes every state). */
let hashA = 0;
let hashB = 0;

/** The state's hash, into hashA and hashB. */
function hashState(m: Machine, rootMark: number): void {
  let a = SEED_A;
  let b = SEED_B;
  for (const c of m.cpus) {
    const r = c.r;
    for (let i = 0; i < 32; i++) {
      a = mix(a, r[i]);
      b = mix(b, r[i] ^ i);
    }
    // The spin detector's progress decides when a spinning CPU blocks (a deadlock is seen then).
    // Everything its next PAUSE decides by (block or not): the iteration's start
    // registers and flags, what it read and wrote, its length so far. (Not the loop's
    // retired counts: they only feed run()'s livelock report, which the search does not use.)
    if (c.spin?.tracking) {
      const sp = c.spin.saveState();
      a = mix(a, 1);
      a = mix(a, sp.impure ? 1 : 0);
      a = mix(a, sp.pauseLo);
      a = mix(a, sp.pauseHi);
      a = mix(a, sp.flags);
      a = mix(a, sp.reads.length);
      a = mix(a, sp.writes.length);
      a = mix(a, c.retired - sp.startRetired);
      for (let i = 0; i < 32; i++) b = mix(b, sp.regs[i]);
      for (const list of [sp.reads, sp.writes]) {
        for (const x of list) {
          a = mix(a, x.lo);
          b = mix(b, x.value);
          a = mix(a, x.size);
        }
      }
    }
    const ev = (c.nmiPending ? 1 : 0) | (c.nmiBlocked ? 2 : 0) | (c.halted ? 4 : 0) | (c.blocked ? 8 : 0) | (c.intShadow ? 16 : 0);
    const fl = readFlags(c);
    a = mix(a, fl);
    b = mix(b, fl + 1);
    a = mix(a, c.insn.lo);
    b = mix(b, c.insn.lo + 1);
    a = mix(a, c.insn.hi);
    b = mix(b, c.insn.hi + 1);
    a = mix(a, ev);
    b = mix(b, ev + 1);
    a = mix(a, c.contexts.length);
    b = mix(b, c.contexts.length + 1);
    a = mix(a, c.serialSeq);
    b = mix(b, c.serialSeq + 1);
    a = mix(a, c.apic.tpr);
    b = mix(b, c.apic.tpr + 1);
    const irr = c.apic.irr;
    const isr = c.apic.isr;
    for (let i = 0; i < 8; i++) {
      a = mix(a, irr[i]);
      b = mix(b, irr[i] + 1);
    }
    for (let i = 0; i < 8; i++) {
      a = mix(a, isr[i]);
      b = mix(b, isr[i] + 1);
    }
    for (const f of c.hostFrames) {
      // Same routine fed the same values: the same generator state (the history's
      // running hash: emu/host.ts).
      const h = f.hist;
      const n = h.inputs.length;
      a = mix(a, h.hashA[n]);
      b = mix(b, h.hashB[n]);
      a = mix(a, n);
      // Between two generator steps: a wait still to be re-read, a guest call in
      // progress, the value the next step will be fed (a satisfied wait's).
      const rv = f.resume === undefined ? -1 : Number(BigInt.asUintN(32, f.resume));
      a = mix(a, (f.pending ? 1 : 0) | (f.calling ? 2 : 0));
      b = mix(b, rv);
    }
  }
  // Buffered stores (TSO) and IPIs in flight: invisible to CPUs, not to the future.
  for (const v of m.pendingWords()) {
    a = mix(a, v);
    b = mix(b, v + 1);
  }
  // The pages changed since the root, as a set: each page's (address, content) finalized
  // and summed, so no order is needed (the journal keeps them in the order of change).
  const j = m.mem.journal!;
  const pages = j.trackedMark === rootMark ? j.changed : j.pagesSince(rootMark);
  let sa = 0;
  let sb = 0;
  for (const pg of pages) {
    const h = pageHash(pg);
    sa = (sa + h.a) | 0;
    sb = (sb + h.b) | 0;
  }
  a = mix(a, pages.length);
  a = mix(a, sa);
  b = mix(b, sb);
  hashA = a;
  hashB = b;
}

/** A page's part of the state hash: its address and content, finalized. */
interface PageHash {
  ver: number;
  a: number;
  b: number;
  /** The content the sums are of (as 32-bit words), and the sums. */
  copy: Int32Array;
  sa: number;
  sb: number;
  /** The page's bytes as 32-bit words; both as 64-bit floats (compared two words at a time). */
  words: Int32Array;
  wide: Float64Array;
  copyWide: Float64Array;
}

/**
 * Per word of a page, the keys of the content hash's two halves: fixed pseudo-random
 * words (splitmix32), so that the hash is a sum over words (Zobrist) and a new version
 * of a page costs only its changed words.
 */
const ZA = new Int32Array(PAGE_SIZE >> 2);
const ZB = new Int32Array(PAGE_SIZE >> 2);
{
  let x = 0x2545f491;
  for (let i = 0; i < ZA.length; i++) {
    ZA[i] = fmix((x = (x + 0x9e3779b9) | 0));
    ZB[i] = fmix((x = (x + 0x9e3779b9) | 0));
  }
}

/**
 * Each page's hash, once per content version (Page.ver: the journal gives a page a new
 * version whenever it saves it before a change, and puts the old one back on undo; the
 * search hashes a state only right before it snapshots it, so no write can follow a
 * hash in the same journal epoch). The content's part is a sum over its words, each
 * finalized with its index's key: a new version is compared with the content last
 * hashed and only the words that differ change the sums (a step writes a few words).
 */
const pageHashes = new WeakMap<Page, PageHash>();

function pageHash(pg: Page): PageHash {
  let c = pageHashes.get(pg);
  if (c && c.ver === pg.ver) return c;
  let sa = 0;
  let sb = 0;
  if (!c) {
    const words = new Int32Array(pg.data.buffer, pg.data.byteOffset, pg.data.byteLength >> 2);
    for (let i = 0; i < words.length; i++) {
      sa = (sa + fmix(words[i] ^ ZA[i])) | 0;
      sb = (sb + fmix(words[i] ^ ZB[i])) | 0;
    }
    const copy = words.slice();
    const wide = new Float64Array(pg.data.buffer, pg.data.byteOffset, pg.data.byteLength >> 3);
    c = { ver: pg.ver, a: 0, b: 0, copy, sa, sb, words, wide, copyWide: new Float64Array(copy.buffer) };
    pageHashes.set(pg, c);
  } else {
    const { words, copy, wide, copyWide } = c;
    sa = c.sa;
    sb = c.sb;
    for (let j = 0; j < wide.length; j++) {
      // Equal doubles other than zeros have equal bits (NaNs compare unequal: only
      // looked at more closely); +0 and -0 compare equal but differ.
      const x = wide[j];
      const y = copyWide[j];
      if (x === y && (x !== 0 || 1 / x === 1 / y)) continue;
      for (let i = 2 * j; i < 2 * j + 2; i++) {
        const w = words[i];
        const o = copy[i];
        if (w === o) continue;
        sa = (sa + fmix(w ^ ZA[i]) - fmix(o ^ ZA[i])) | 0;
        sb = (sb + fmix(w ^ ZB[i]) - fmix(o ^ ZB[i])) | 0;
        copy[i] = w;
      }
    }
    c.ver = pg.ver;
    c.sa = sa;
    c.sb = sb;
  }
  const lo = pg.key | 0;
  const hi = Math.floor(pg.key / 0x100000000) | 0;
  c.a = fmix(mix(mix(sa, lo), hi));
  c.b = fmix(mix(mix(sb, lo ^ 0x5bd1e995), hi));
  return c;
}

/** What a frame's choice does (Frame.todo holds cpu or index * OPS + op). */
const OP_ASYNC = 0; // asyncChoices[x]: a drain or an IPI arrival
const OP_NMI = 1; // nmiChoices[x]: an NMI on its own (not reduced)
const OP_RUN_ON = 2; // the last CPU x's step, which may be private
const OP_STEP = 3; // CPU x's step
const OP_NMI_STEP = 4; // an NMI to CPU x fused with its step
const OPS = 8;

/** The choice records a schedule's path holds (never changed: shared). */
const STEP: Choice[] = [];
const NMI: Choice[] = [];

/** One state whose choices the search is taking: its budget, snapshot and choices. */
class Frame {
  nmis = 0;
  nmiUsed = 0;
  preemptions = 0;
  depth = 0;
  last = -1;
  /** The CPU that ran last can run here (switching away from it costs a preemption). */
  lastEnabled = false;
  /** The state, if it has more than one choice; `away`: the machine has left it. */
  here: Snapshot | null = null;
  away = false;
  /** The last CPU's step was private: the only step choice (README: reductions, 3). */
  runOn = false;
  /** The path's length at this state. */
  pathLen = 0;
  readonly runnable: boolean[];
  readonly nmiOk: boolean[];
  readonly asyncChoices: Choice[] = [];
  readonly nmiChoices: Choice[] = [];
  /** The choices in search order, and the next one to take. */
  readonly todo: number[] = [];
  next = 0;

  constructor(ncpus: number) {
    this.runnable = new Array<boolean>(ncpus).fill(false);
    this.nmiOk = new Array<boolean>(ncpus).fill(false);
  }
}

/** What a switch to `cpu` from frame f's state costs: a preemption if the last CPU could have run on. */
function cost(f: Frame, cpu: number): number {
  return f.lastEnabled && cpu !== f.last ? 1 : 0;
}

/** Who has touched one 8-byte word during the search (see README: private steps). */
interface WordUse {
  /** The only CPU that touched it, or -1 for several. */
  owner: number;
  written: boolean;
  /** A step was run on as private because of it. */
  used: boolean;
}

/** Every CPU's event state, the checker's counters: a step that changes any is not private. */
function eventSignature(m: Machine, observe: ((m: Machine) => number) | undefined): number {
  let h = 2166136261;
  for (const c of m.cpus) {
    h = mix(h, (c.nmiPending ? 1 : 0) | (c.nmiBlocked ? 2 : 0) | (c.halted ? 4 : 0) | (c.blocked ? 8 : 0) | (c.shutdown ? 16 : 0));
    h = mix(h, c.contexts.length);
    for (const v of c.apic.irr) h = mix(h, v);
    for (const v of c.apic.isr) h = mix(h, v);
  }
  h = mix(h, m.xmc.violations.length);
  if (observe) h = mix(h, observe(m));
  return h;
}

/** What another CPU can make pending on this one: a latched NMI, the APIC's requested vectors. */
function pendingSignature(c: Machine['cpus'][number]): number {
  let h = c.nmiPending ? 1 : 0;
  for (const v of c.apic.irr) h = mix(h, v);
  return h;
}

/** The ownership map's key for a CPU's pending events (negative: no memory word has it). */
function pendingWord(cpu: number): number {
  return -1 - cpu;
}

/**
 * The ownership map's key for the code-write sequence (Memory.writeSeq): read by every
 * serializing step, written by every code write. Negative, below the CPUs' pending words
 * and above the kernel model's pseudo-words (kernel-model/linux/shared-state.ts, ≤ -2^32).
 */
const CODE_WRITE_SEQ_WORD = -(2 ** 31);

class RestartPass extends Error {}

/** Explores every schedule within the bound from the machine's current state; leaves the machine there. */
export function explore(m: Machine, opts: ExploreOptions): ExploreResult {
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const nmiCpus = opts.nmiCpus ?? (opts.nmis > 0 ? m.cpus.map((c) => c.id) : []);
  const stateful = opts.stateful ?? true;
  const nmisFirst = opts.nmisFirst ?? false;
  const perCpu = opts.nmisPerCpu ?? Infinity;
  const lim = VISITED_LIMITS;
  if (opts.nmis > lim.nmis || opts.preemptions > lim.preemptions || m.cpus.length > lim.cpus || (opts.exactDepth && opts.maxDepth > lim.depth)) {
    throw new RangeError(`explore: the visited table holds at most ${lim.nmis} NMIs, ${lim.preemptions} preemptions, ${lim.cpus} CPUs and (exactDepth) depth ${lim.depth} (${opts.nmis}, ${opts.preemptions}, ${m.cpus.length}, ${opts.maxDepth})`);
  }
  if (perCpu !== Infinity && (m.cpus.length > 8 || perCpu > 15 || perCpu < 0)) throw new RangeError(`nmisPerCpu: at most 8 CPUs and 15 NMIs per CPU (${m.cpus.length} CPUs, ${perCpu})`);
  const exactDepth = opts.exactDepth ?? false;
  // Buffered stores (x86-TSO) reach memory in a later step than the one that made
  // them, so footprints would be misattributed: no reduction under TSO.
  const reduce = (opts.reduce ?? true) && !m.cpus.some((c) => c.tso);
  const root = m.snapshot();
  const rootMark = root.mark;
  const journal = m.mem.journal!;
  journal.trackChanges(rootMark);
  const bugs = new Map<string, Counterexample>();
  let schedules = 0;
  let states = 0;
  let cut = 0;
  let restarts = 0;
  const passes: ExploreResult['passes'] = [];
  let limited = false;
  const path: Choice[] = [];
  const deadline = opts.timeLimitSeconds ? t0 + opts.timeLimitSeconds * 1000 : Infinity;
  const words = new Map<number, WordUse>();
  const fp = new Footprint();

  /** A bug found at the current state, its schedule having used `nmis` NMIs and `preemptions` preemptions. */
  const report = (bug: Bug, nmis: number, preemptions: number): void => {
    const key = `${bug.kind}:${bug.signature}`;
    const old = bugs.get(key);
    const steps = path.filter((c) => c.kind === 'step').length;
    if (old && (old.nmis < nmis || (old.nmis === nmis && (old.preemptions < preemptions || (old.preemptions === preemptions && old.steps <= steps))))) return;
    bugs.set(key, { ...bug, choices: path.slice(), nmis, preemptions, steps, seconds: (Date.now() - t0) / 1000, cpuSeconds: cpuSince(cpu0) });
  };

  /**
   * One step of `cpu`, its footprint recorded into the ownership map. Returns whether
   * it was private: it touched only words no other CPU has written or that only it has
   * touched, changed no CPU's event state, read no clock or device, wrote no code, and
   * neither started nor finished a host routine. A host routine's step counts like a
   * guest instruction: its memory accesses are recorded by the machine, and the kernel
   * model's JS-side state its body reads or writes as pseudo-words of their own
   * (kernel-model/linux/shared-state.ts). A word becoming shared after a private step
   * relied on it restarts the pass.
   */
  const step = (cpu: number): boolean => {
    if (!reduce) {
      m.take({ kind: 'step', cpu });
      return false;
    }
    const c = m.cpus[cpu];
    const sig = eventSignature(m, opts.observe);
    const pendingBefore = m.cpus.map(pendingSignature);
    // A routine starting or returning changes what `done` reads (every CPU back in its
    // own thread), so such a step is not private; steps within it may be.
    const frames = c.hostFrames.length;
    // Serializing reads the code-write sequence (Cpu.serialize: serialSeq, which the
    // XMC checker and the end-of-patch check compare), which every code write advances.
    const serialEpoch = c.serialEpoch;
    const writeSeq = m.mem.writeSeq;
    fp.clear();
    // The instruction this step runs is read too: a step that fetches bytes another CPU
    // later writes does not commute with that write (the footprint leaves fetches out,
    // and a decoded instruction is not fetched again). Up to 15 bytes from RIP (for a
    // host routine's step, the bytes at its binding: a harmless over-approximation); a
    // step that delivers an event instead changes event state and is not private anyway.
    fp.noteRange(c.rip, 15, false);
    m.mem.footprint = fp;
    // Cached pages would let an access bypass the slow path that records it.
    m.mem.flushTlb();
    try {
      m.take({ kind: 'step', cpu });
    } finally {
      m.mem.footprint = null;
    }
    if (c.serialEpoch !== serialEpoch) fp.reads.push(CODE_WRITE_SEQ_WORD);
    if (m.mem.writeSeq !== writeSeq) fp.writes.push(CODE_WRITE_SEQ_WORD);
    let priv = !fp.global && c.hostFrames.length === frames && eventSignature(m, opts.observe) === sig;
    let broken = false;
    const touch = (k: number, write: boolean): void => {
      let u = words.get(k);
      if (!u) {
        words.set(k, (u = { owner: cpu, written: write, used: false }));
        return;
      }
      const wasShared = u.owner === -1 && u.written;
      if (u.owner !== cpu) u.owner = -1;
      if (write) u.written = true;
      if (u.owner === -1 && u.written) {
        priv = false;
        if (!wasShared && u.used) broken = true;
      }
    };
    // Interrupts other CPUs can send it (an IPI, an NMI by ICR) are taken at a CPU's
    // step boundary: every step reads that CPU's pending-event word, and a step that
    // makes an interrupt pending on another CPU writes that CPU's. So once some CPU
    // sends another an interrupt, that CPU's steps are no longer private, and where the
    // interrupt lands among them is a choice again (the explorer's own NMIs are choices
    // already: 2).
    touch(pendingWord(cpu), false);
    m.cpus.forEach((o, i) => {
      if (i !== cpu && pendingSignature(o) !== pendingBefore[i]) touch(pendingWord(i), true);
    });
    for (const k of fp.reads) touch(k, false);
    for (const k of fp.writes) touch(k, true);
    if (broken) throw new RestartPass();
    if (priv) {
      words.get(pendingWord(cpu))!.used = true;
      for (const k of fp.reads) words.get(k)!.used = true;
      for (const k of fp.writes) words.get(k)!.used = true;
    }
    return priv;
  };

  // States already searched, with the budget they had left, across passes: a state
  // searched with at least as much left in every dimension (an earlier pass's bound is
  // smaller, so what it had left is what a later pass has left after spending more
  // on the way) has every schedule the new visit has, and its bugs were reported at a
  // cost no higher (README: visited states).
  // A state is told apart by its 64-bit hash (a collision would prune a state wrongly).
  // The table lives in typed arrays outside the JS heap; by default it stops (as at a
  // limit) at what fits in about 2.5 GiB, counting the old and new arrays of its last
  // doubling (explore/visited.ts).
  const visited = new VisitedTable(exactDepth);
  const maxVisited = opts.maxVisited ?? entriesWithin(opts.visitedBytes ?? 2.5 * 2 ** 30, exactDepth);
  let pass = 0;
  // The search's stack: one frame per state whose choices are being searched, reused by
  // depth (a schedule can be thousands of steps deep, more than the JS call stack holds,
  // and the search makes no object per state but its visited-table entry and snapshot).
  const frames: Frame[] = [];
  const ncpus = m.cpus.length;
  const nmiTarget = m.cpus.map((c) => nmiCpus.includes(c.id));
  const noNmis: number[] = [];
  let nb = 0;
  let pb = 0;

  /**
   * Whether the explorer may send `cpu` an NMI with `nmis` left. Reduced: none arrives
   * while its CPU blocks NMIs (in an NMI handler). It would only set the latch, which
   * nothing reads before the CPU's iret; the arrival just after that iret, fused with
   * the CPU's next step, is the same execution (README: reductions, 4).
   */
  const nmiTo = (cpu: number, nmis: number, used: number): boolean => {
    const c = m.cpus[cpu];
    return nmis > 0 && nmiTarget[cpu] && roomFor(used, cpu) && !c.nmiPending && !c.shutdown && !(reduce && c.nmiBlocked);
  };
  /** Whether `cpu` may take one more NMI under nmisPerCpu, given the per-CPU counts. */
  const roomFor = (used: number, cpu: number): boolean => ((used >>> (4 * cpu)) & 15) < perCpu;
  /** The per-CPU counts after one more NMI to `cpu` (counted only under nmisPerCpu). */
  const sent = (used: number, cpu: number): number => (perCpu === Infinity ? used : used + (1 << (4 * cpu)));

  /**
   * Arrives at a state with a budget left: counts it, checks it, ends the schedule there
   * or skips a state already searched; else sets frames[d] up to search its choices and
   * returns true.
   */
  const enter = (d: number, nmis: number, nmiUsed: number, preemptions: number, depth: number, last: number): boolean => {
    if (limited) return false;
    states++;
    const found = opts.check?.(m) ?? null;
    if (found) {
      report(found, nb - nmis, pb - preemptions);
      schedules++;
      return false;
    }
    if (opts.done?.(m)) {
      schedules++;
      const end = opts.atEnd?.(m) ?? null;
      if (end) report(end, nb - nmis, pb - preemptions);
      return false;
    }
    let f = frames[d];
    if (!f) frames[d] = f = new Frame(ncpus);
    const enabledNow = m.enabled();
    const { runnable, nmiOk, asyncChoices } = f;
    runnable.fill(false);
    if (asyncChoices.length !== 0) asyncChoices.length = 0;
    let anyRunnable = false;
    for (const c of enabledNow) {
      if (c.kind === 'step') {
        runnable[c.cpu] = true;
        anyRunnable = true;
      } else if (c.kind === 'drain' || c.kind === 'ipi') {
        // Drains (TSO) and IPI arrivals: no CPU runs, so no preemption and the same last
        // CPU; each is a step for depth and never private (it writes shared state).
        asyncChoices.push(c);
      }
    }
    let anyNmi = false;
    for (let i = 0; i < ncpus; i++) anyNmi = (nmiOk[i] = nmiTo(i, nmis, nmiUsed)) || anyNmi;
    if (!anyRunnable && asyncChoices.length === 0) {
      // The schedule can end here (a deadlock if anything waits); with NMIs left,
      // the reduced search also tries waking a CPU with one.
      schedules++;
      const t = terminalBug(m);
      if (t) report(t, nb - nmis, pb - preemptions);
      if (!reduce || !anyNmi) return false;
    }
    if (depth === 0) {
      schedules++;
      cut++;
      return false;
    }
    if ((opts.maxSchedules !== undefined && schedules >= opts.maxSchedules) || Date.now() > deadline || visited.size >= maxVisited) {
      limited = true;
      return false;
    }
    const lastEnabled = last >= 0 && runnable[last];
    if (stateful) {
      // Whose turn was last matters only while that CPU can run (cost()); a state
      // reached when it cannot is the same search whoever ran last (last -1, which
      // covers every last CPU: each switch from it is free).
      const keyLast = lastEnabled ? last : -1;
      hashState(m, rootMark);
      if (visited.visit(hashA, hashB, nmis, nmiUsed, preemptions, depth, keyLast, pass)) {
        schedules++;
        return false;
      }
    }
    f.nmis = nmis;
    f.nmiUsed = nmiUsed;
    f.preemptions = preemptions;
    f.depth = depth;
    f.last = last;
    f.lastEnabled = lastEnabled;
    f.runOn = false;
    f.away = false;
    f.pathLen = path.length;
    f.next = 0;
    // A state with one choice is never come back to: no snapshot (the journal still
    // starts a new epoch, so the page hashes' versions stay exact: pageHash).
    let others = 0;
    for (let i = 0; i < ncpus; i++) if (i !== last) others += (runnable[i] ? 1 : 0) + (nmiOk[i] ? 1 : 0);
    const nmiLast = last >= 0 && nmiOk[last];
    const choices = asyncChoices.length + (reduce
      ? lastEnabled ? 1 + (nmiLast ? 1 : 0) + (preemptions > 0 ? others : 0) : others + (nmiLast ? 1 : 0)
      : 2);
    if (choices > 1) f.here = m.snapshot();
    else {
      f.here = null;
      m.mem.journal!.mark();
      m.mem.flushTlb();
    }
    // The choices, in the order they are searched.
    const todo = f.todo;
    if (todo.length !== 0) todo.length = 0;
    for (let i = 0; i < asyncChoices.length; i++) todo.push(i * OPS + OP_ASYNC);
    if (!reduce) {
      const all = m.enabled(nmis > 0 ? nmiCpus : noNmis);
      f.nmiChoices.length = 0;
      for (const c of all) {
        if (c.kind === 'nmi') {
          if (!roomFor(nmiUsed, c.cpu)) continue;
          f.nmiChoices.push(c);
          todo.push((f.nmiChoices.length - 1) * OPS + OP_NMI);
        } else if (c.kind === 'step' && cost(f, c.cpu) <= preemptions) todo.push(c.cpu * OPS + OP_STEP);
      }
      return true;
    }
    // Reduced: an NMI arrives fused with its CPU's next step (arrivals commute with
    // other CPUs' steps); a private step of the last CPU is the only step choice.
    // Order only (the same choices): with `nmisFirst` the NMI to the last CPU is
    // tried before its step, so early arrivals are searched first.
    const lastNmiFirst = nmisFirst && nmiLast;
    if (lastNmiFirst) todo.push(last * OPS + OP_NMI_STEP);
    if (lastEnabled) todo.push(last * OPS + OP_RUN_ON);
    for (let i = 0; i < ncpus; i++) {
      if (cost(f, i) > preemptions) continue;
      if (i !== last && runnable[i]) todo.push(i * OPS + OP_STEP);
      if (nmiOk[i] && !(lastNmiFirst && i === last)) todo.push(i * OPS + OP_NMI_STEP);
    }
    return true;
  };

  /** The machine back at frame f's state, unless it is there (a chain of single-choice states costs one restore). */
  const back = (f: Frame): void => {
    if (f.away) m.restore(f.here!);
    f.away = false;
  };

  /**
   * Takes frame d's next choice and enters the state it leads to. Returns whether that
   * state has choices of its own (frames[d + 1] is set up), false when the child ended
   * at once; null when frame d has no choice left.
   */
  const descend = (d: number): boolean | null => {
    const f = frames[d];
    const { todo } = f;
    while (f.next < todo.length) {
      const code = todo[f.next++];
      const op = code % OPS;
      const x = (code - op) / OPS;
      // (Setting an array's length costs even when it does not change it.)
      if (path.length !== f.pathLen) path.length = f.pathLen;
      switch (op) {
        case OP_ASYNC:
        case OP_NMI: {
          // A drain or an IPI arrival (a step for depth), or, not reduced, an NMI's
          // arrival on its own (one NMI of the budget).
          const nmi = op === OP_NMI;
          const c = nmi ? f.nmiChoices[x] : f.asyncChoices[x];
          back(f);
          m.take(c);
          f.away = true;
          path.push(c);
          return enter(d + 1, f.nmis - (nmi ? 1 : 0), nmi ? sent(f.nmiUsed, c.cpu) : f.nmiUsed, f.preemptions, f.depth - (nmi ? 0 : 1), f.last);
        }
        case OP_RUN_ON:
          // The last CPU's step: if private, it is the only step choice (others are skipped below).
          back(f);
          f.away = true;
          f.runOn = step(x);
          path.push(STEP[x] ??= { kind: 'step', cpu: x });
          return enter(d + 1, f.nmis, f.nmiUsed, f.preemptions, f.depth - 1, x);
        case OP_STEP:
        case OP_NMI_STEP: {
          if (f.runOn && x !== f.last) continue;
          back(f);
          const nmi = op === OP_NMI_STEP;
          if (nmi) {
            m.take({ kind: 'nmi', cpu: x });
            f.away = true;
            if (!m.runnable(m.cpus[x])) continue;
          }
          f.away = true;
          step(x);
          if (nmi) path.push(NMI[x] ??= { kind: 'nmi', cpu: x });
          path.push(STEP[x] ??= { kind: 'step', cpu: x });
          return enter(d + 1, f.nmis - (nmi ? 1 : 0), nmi ? sent(f.nmiUsed, x) : f.nmiUsed, f.preemptions - cost(f, x), f.depth - 1, x);
        }
      }
    }
    return null;
  };

  // One pass per bound (nmis, preemptions), smallest first.
  for (nb = 0; nb <= opts.nmis && !limited; nb++) {
    for (pb = 0; pb <= opts.preemptions && !limited; pb++) {
      const pass0 = { schedules, states, cut, t: Date.now(), cpu: process.cpuUsage() };
      for (;;) {
        try {
          path.length = 0;
          let d = enter(0, nb, 0, pb, opts.maxDepth, -1) ? 0 : -1;
          while (d >= 0) {
            // Past a limit nothing more is counted: unwind.
            const r = limited ? null : descend(d);
            if (r === null) frames[d--].here = null;
            else if (r) d++;
          }
          break;
        } catch (e) {
          if (!(e instanceof RestartPass)) throw e;
          // A word thought private turned out shared: redo this pass knowing it.
          restarts++;
          path.length = 0;
          // Earlier passes' states stay: each was searched completely within its
          // budget (no word turned shared there, README: private steps).
          visited.dropPass(pass);
          m.restore(root);
        }
      }
      m.restore(root);
      passes.push({
        nmis: nb, preemptions: pb, schedules: schedules - pass0.schedules, states: states - pass0.states,
        seconds: (Date.now() - pass0.t) / 1000, cpuSeconds: cpuSince(pass0.cpu), complete: !limited && cut === pass0.cut,
      });
      pass++;
    }
  }
  journal.trackChanges(-1);
  const list = [...bugs.values()].sort((x, y) => x.nmis - y.nmis || x.preemptions - y.preemptions || x.steps - y.steps);
  return {
    outcome: list.length ? 'bug' : limited ? 'limit' : 'clean',
    complete: !limited && cut === 0,
    schedules,
    states,
    cut,
    restarts,
    passes,
    seconds: (Date.now() - t0) / 1000,
    cpuSeconds: cpuSince(cpu0),
    bugs: list,
  };
}

/** CPU seconds (user + system) of this process since `from`. */
function cpuSince(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return Math.round((d.user + d.system) / 1000) / 1000;
}

/** Replays a counterexample's choices on a machine in the state exploration started from. */
export function replay(m: Machine, choices: readonly Choice[]): void {
  for (const c of choices) m.take(c);
}
