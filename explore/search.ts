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
import { Footprint, type Page } from '../emu/memory';

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
  /** At most this many preemptions per schedule. */
  preemptions: number;
  /** Steps per schedule; a schedule that reaches it ends there (counted as cut). */
  maxDepth: number;
  /** Skip states already explored with at least as much budget left (default true). */
  stateful?: boolean;
  /** Checked at every state: a bug, or null. */
  check?: (m: Machine) => Bug | null;
  maxSchedules?: number;
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

// Bound once: under jest every test file runs in a vm context, where each lookup of a
// global such as `Math` goes through the context's interceptors; in this loop, the
// hottest of a search, that made the explorer 5-13x slower in the test suite than on the
// command line (the same search: 16 s in jest, 2.5 s in node; 3.5 s with this binding).
const imul = Math.imul;

/** FNV-1a over 32-bit words. */
function mix(h: number, v: number): number {
  h ^= v & 0xffff;
  h = imul(h, 16777619);
  h ^= v >>> 16;
  return imul(h, 16777619);
}

/** A hash of the state: CPUs (registers, flags, RIP, event state, host routines) and the pages changed since the root. */
export function stateHash(m: Machine, rootMark: number): string {
  let a = 2166136261;
  let b = 0x9747b28c;
  for (const c of m.cpus) {
    for (let i = 0; i < 32; i++) {
      a = mix(a, c.r[i]);
      b = mix(b, c.r[i] ^ i);
    }
    // The spin detector's progress decides when a spinning CPU blocks (a deadlock is seen then).
    // Everything its next PAUSE decides by (block or not): the iteration's start
    // registers and flags, what it read and wrote, its length so far. (Not the loop's
    // retired counts: they only feed run()'s livelock report, which the search does not use.)
    const sp = c.spin?.saveState();
    if (sp?.active) {
      for (const v of [sp.active ? 1 : 0, sp.impure ? 1 : 0, sp.pauseLo, sp.pauseHi, sp.flags, sp.reads.length, sp.writes.length, c.retired - sp.startRetired]) a = mix(a, v);
      for (let i = 0; i < 32; i++) b = mix(b, sp.regs[i]);
      for (const x of [...sp.reads, ...sp.writes]) {
        a = mix(a, x.lo);
        b = mix(b, x.value);
        a = mix(a, x.size);
      }
    }
    const ev = (c.nmiPending ? 1 : 0) | (c.nmiBlocked ? 2 : 0) | (c.halted ? 4 : 0) | (c.blocked ? 8 : 0) | (c.intShadow ? 16 : 0);
    for (const v of [readFlags(c), c.insn.lo, c.insn.hi, ev, c.contexts.length, c.serialSeq, c.apic.tpr, ...c.apic.irr, ...c.apic.isr]) {
      a = mix(a, v);
      b = mix(b, v + 1);
    }
    for (const f of c.hostFrames) {
      // Same routine fed the same values: the same generator state.
      for (const x of f.hist.inputs) {
        const v = x === undefined ? -1 : Number(BigInt.asUintN(32, x));
        a = mix(a, v);
        b = mix(b, v ^ 0x55);
      }
      a = mix(a, f.hist.inputs.length);
      // Between two generator steps: a wait still to be re-read, a guest call in
      // progress, the value the next step will be fed (a satisfied wait's).
      const r = f.resume === undefined ? -1 : Number(BigInt.asUintN(32, f.resume));
      a = mix(a, (f.pending ? 1 : 0) | (f.calling ? 2 : 0));
      b = mix(b, r);
    }
  }
  // Buffered stores (TSO) and IPIs in flight: invisible to CPUs, not to the future.
  for (const v of m.pendingWords()) {
    a = mix(a, v);
    b = mix(b, v + 1);
  }
  const pages = m.mem.journal!.pagesSince(rootMark).sort((x, y) => x.key - y.key);
  for (const pg of pages) {
    a = mix(a, pg.key);
    const h = pageHash(pg);
    a = mix(a, h[0]);
    b = mix(b, h[1]);
  }
  return `${a >>> 0}:${b >>> 0}`;
}

/**
 * Each page's hash, once per content version (Page.ver: the journal gives a page a new
 * version whenever it saves it before a change, and puts the old one back on undo; the
 * search hashes a state only right before it snapshots it, so no write can follow a
 * hash in the same journal epoch).
 */
const pageHashes = new WeakMap<Page, { ver: number; h: [number, number] }>();

function pageHash(pg: Page): [number, number] {
  const c = pageHashes.get(pg);
  if (c && c.ver === pg.ver) return c.h;
  let a = 2166136261;
  let b = 0x9747b28c;
  const w = new Int32Array(pg.data.buffer, pg.data.byteOffset, pg.data.byteLength >> 2);
  for (let i = 0; i < w.length; i++) {
    a = mix(a, w[i]);
    b = mix(b, w[i] + i);
  }
  const h: [number, number] = [a, b];
  pageHashes.set(pg, { ver: pg.ver, h });
  return h;
}

interface Budget {
  nmis: number;
  preemptions: number;
  depth: number;
  last: number;
}

/** A visited state's budget, and the pass that searched it. */
interface Seen extends Budget {
  pass: number;
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
  const exactDepth = opts.exactDepth ?? false;
  // Buffered stores (x86-TSO) reach memory in a later step than the one that made
  // them, so footprints would be misattributed: no reduction under TSO.
  const reduce = (opts.reduce ?? true) && !m.cpus.some((c) => c.tso);
  const root = m.snapshot();
  const rootMark = root.mark;
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

  const report = (bug: Bug, used: { nmis: number; preemptions: number }): void => {
    const key = `${bug.kind}:${bug.signature}`;
    const old = bugs.get(key);
    const steps = path.filter((c) => c.kind === 'step').length;
    if (old && (old.nmis < used.nmis || (old.nmis === used.nmis && (old.preemptions < used.preemptions || (old.preemptions === used.preemptions && old.steps <= steps))))) return;
    bugs.set(key, { ...bug, choices: path.slice(), nmis: used.nmis, preemptions: used.preemptions, steps, seconds: (Date.now() - t0) / 1000, cpuSeconds: cpuSince(cpu0) });
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
  const visited = new Map<string, Seen[]>();
  let pass = 0;
  // One pass per bound (nmis, preemptions), smallest first.
  for (let nb = 0; nb <= opts.nmis && !limited; nb++) {
    for (let pb = 0; pb <= opts.preemptions && !limited; pb++) {
      const pass0 = { schedules, states, cut, t: Date.now(), cpu: process.cpuUsage() };
      // A generator per state, driven by an explicit stack (searchFrom): a schedule can be
      // thousands of steps deep, more than the JS call stack holds. `yield b` searches
      // the child state with budget b and resumes here when it is done.
      function* dfs(b: Budget): Generator<Budget, void, void> {
        if (limited) return;
        states++;
        const used = { nmis: nb - b.nmis, preemptions: pb - b.preemptions };
        const found = opts.check?.(m) ?? null;
        if (found) {
          report(found, used);
          schedules++;
          return;
        }
        if (opts.done?.(m)) {
          schedules++;
          const end = opts.atEnd?.(m) ?? null;
          if (end) report(end, used);
          return;
        }
        const enabledNow = m.enabled();
        const runnable = enabledNow.filter((c) => c.kind === 'step').map((c) => c.cpu);
        // Drains (TSO) and IPI arrivals: no CPU runs, so no preemption and the same last
        // CPU; each is a step for depth and never private (it writes shared state).
        const asyncChoices = enabledNow.filter((c) => c.kind === 'drain' || c.kind === 'ipi');
        // Reduced: no NMI arrives while its CPU blocks NMIs (in an NMI handler). It
        // would only set the latch, which nothing reads before the CPU's iret; the
        // arrival just after that iret, fused with the CPU's next step, is the same
        // execution (README: reductions, 4).
        const nmiTo = (cpu: number): boolean =>
          b.nmis > 0 && nmiCpus.includes(cpu) && !m.cpus[cpu].nmiPending && !m.cpus[cpu].shutdown && !(reduce && m.cpus[cpu].nmiBlocked);
        if (runnable.length === 0 && asyncChoices.length === 0) {
          // The schedule can end here (a deadlock if anything waits); with NMIs left,
          // the reduced search also tries waking a CPU with one.
          schedules++;
          const t = terminalBug(m);
          if (t) report(t, used);
          if (!reduce || !m.cpus.some((c) => nmiTo(c.id))) return;
        }
        if (b.depth === 0) {
          schedules++;
          cut++;
          return;
        }
        if ((opts.maxSchedules !== undefined && schedules >= opts.maxSchedules) || Date.now() > deadline) {
          limited = true;
          return;
        }
        if (stateful) {
          // Whose turn was last matters only while that CPU can run (cost()); a state
          // reached when it cannot is the same search whoever ran last (last -1, which
          // covers every last CPU: each switch from it is free).
          const key: Budget = runnable.includes(b.last) ? b : { ...b, last: -1 };
          const h = stateHash(m, rootMark);
          const seen = visited.get(h);
          // With another last CPU, one preemption more covers it: only the first switch's
          // cost depends on who ran last (README: visited states).
          const covers = (s: Budget, t: Budget): boolean =>
            s.nmis >= t.nmis &&
            (!exactDepth || s.depth >= t.depth) &&
            s.preemptions >= t.preemptions + (s.last === t.last || s.last === -1 ? 0 : 1);
          if (seen?.some((s) => covers(s, key))) {
            schedules++;
            return;
          }
          if (seen) {
            const kept = seen.filter((s) => !covers(key, s));
            kept.push({ ...key, pass });
            visited.set(h, kept);
          } else visited.set(h, [{ ...key, pass }]);
        }
        const lastEnabled = runnable.includes(b.last);
        const nmiOk = m.cpus.map((c) => nmiTo(c.id));
        // A state with one choice is never come back to: no snapshot (the journal still
        // starts a new epoch, so the page hashes' versions stay exact: pageHash).
        let others = 0;
        for (const c of m.cpus) if (c.id !== b.last) others += (runnable.includes(c.id) ? 1 : 0) + (nmiOk[c.id] ? 1 : 0);
        const choices = asyncChoices.length + (reduce
          ? lastEnabled ? 1 + (nmiOk[b.last] ? 1 : 0) + (b.preemptions > 0 ? others : 0) : others + (nmiOk[b.last] ? 1 : 0)
          : 2);
        let here: Snapshot | null = null;
        if (choices > 1) here = m.snapshot();
        else {
          m.mem.journal!.mark();
          m.mem.flushTlb();
        }
        // The machine is put back to `here` only before the next choice from it, not
        // after each child: a state whose last child has been searched leaves that to
        // its parent, so a chain of single-choice states costs one restore, not one each
        // (a restore re-creates the host routines' generators that moved).
        let away = false;
        const back = (): void => {
          if (away) m.restore(here!);
          away = false;
        };
        const cost = (cpu: number): number => (lastEnabled && cpu !== b.last ? 1 : 0);
        /**
         * Takes an NMI to `cpu` if `nmi` and `cpu`'s step, unless `ran` (the step was
         * taken already, from `here`), and searches on.
         */
        function* go(cpu: number, nmi: boolean, ran: boolean): Generator<Budget, void, void> {
          if (!ran) {
            back();
            if (nmi) {
              m.take({ kind: 'nmi', cpu });
              away = true;
              if (!m.runnable(m.cpus[cpu])) return;
            }
            away = true;
            step(cpu);
          }
          away = true;
          if (nmi) path.push({ kind: 'nmi', cpu });
          path.push({ kind: 'step', cpu });
          yield { nmis: b.nmis - (nmi ? 1 : 0), preemptions: b.preemptions - cost(cpu), depth: b.depth - 1, last: cpu };
          path.pop();
          if (nmi) path.pop();
        }
        /** Takes a choice that is not a CPU's step from `here`, and searches on with `left`. */
        function* take(c: Choice, left: Budget): Generator<Budget, void, void> {
          back();
          m.take(c);
          away = true;
          path.push(c);
          yield left;
          path.pop();
        }
        for (const c of asyncChoices) yield* take(c, { ...b, depth: b.depth - 1 });
        if (!reduce) {
          // The choices of `here`, not of the state the last child left behind.
          back();
          for (const c of m.enabled(b.nmis > 0 ? nmiCpus : [])) {
            if (c.kind === 'drain' || c.kind === 'ipi') continue;
            if (c.kind === 'nmi') yield* take(c, { ...b, nmis: b.nmis - 1 });
            else if (cost(c.cpu) <= b.preemptions) {
              yield* go(c.cpu, false, false);
            }
          }
          return;
        }
        // Reduced: an NMI arrives fused with its CPU's next step (arrivals commute with
        // other CPUs' steps); a private step of the last CPU is the only step choice.
        // Order only (the same choices): with `nmisFirst` the NMI to the last CPU is
        // tried before its step, so early arrivals are searched first.
        const lastNmiFirst = nmisFirst && b.last >= 0 && nmiOk[b.last];
        if (lastNmiFirst) yield* go(b.last, true, false);
        let runOn = false;
        if (lastEnabled) {
          back();
          away = true;
          runOn = step(b.last);
          yield* go(b.last, false, true);
        }
        for (const cpu of m.cpus.map((c) => c.id)) {
          if (cost(cpu) > b.preemptions || (runOn && cpu !== b.last)) continue;
          if (cpu !== b.last && runnable.includes(cpu)) yield* go(cpu, false, false);
          if (nmiOk[cpu] && !(lastNmiFirst && cpu === b.last)) yield* go(cpu, true, false);
        }
      }
      for (;;) {
        try {
          searchFrom(dfs({ nmis: nb, preemptions: pb, depth: opts.maxDepth, last: -1 }), dfs);
          break;
        } catch (e) {
          if (!(e instanceof RestartPass)) throw e;
          // A word thought private turned out shared: redo this pass knowing it.
          restarts++;
          path.length = 0;
          // Earlier passes' states stay: each was searched completely within its
          // budget (no word turned shared there, README: private steps).
          for (const [h, list] of visited) {
            const kept = list.filter((s) => s.pass !== pass);
            if (kept.length) visited.set(h, kept);
            else visited.delete(h);
          }
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

/**
 * Runs a depth-first search written as generators without recursion: each yielded
 * budget starts a child search (`child(b)`), and its parent resumes when it returns.
 */
function searchFrom<B>(root: Generator<B, void, void>, child: (b: B) => Generator<B, void, void>): void {
  const stack: Generator<B, void, void>[] = [root];
  while (stack.length) {
    const r = stack[stack.length - 1].next();
    if (r.done) stack.pop();
    else stack.push(child(r.value));
  }
}

/** Replays a counterexample's choices on a machine in the state exploration started from. */
export function replay(m: Machine, choices: readonly Choice[]): void {
  for (const c of choices) m.take(c);
}
