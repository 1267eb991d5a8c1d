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
import { Footprint } from '../emu/memory';

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
  passes: { nmis: number; preemptions: number; schedules: number; states: number; seconds: number; complete: boolean }[];
  seconds: number;
  bugs: Counterexample[];
}

/** A deadlock: every live CPU waits or halts, one at least waits, nothing is pending. */
export function terminalBug(m: Machine): Bug | null {
  if (m.idleReason() !== 'deadlock') return null;
  const parts = m.cpus.filter((c) => c.blocked).map((c) => `CPU${c.id}@${m.symbolize(c.rip)}`);
  return { kind: 'deadlock', summary: `deadlock: ${m.cpus.map((c) => `CPU${c.id} ${c.blocked ? `waits (${c.blocked.detail})` : c.halted ? 'halted' : 'runs'} at ${m.symbolize(c.rip)}`).join('; ')}`, signature: parts.join(',') };
}

/** FNV-1a over 32-bit words. */
function mix(h: number, v: number): number {
  h ^= v & 0xffff;
  h = Math.imul(h, 16777619);
  h ^= v >>> 16;
  return Math.imul(h, 16777619);
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
    const w = new Int32Array(pg.data.buffer);
    for (let i = 0; i < w.length; i++) {
      a = mix(a, w[i]);
      b = mix(b, w[i] + i);
    }
  }
  return `${a >>> 0}:${b >>> 0}`;
}

interface Budget {
  nmis: number;
  preemptions: number;
  depth: number;
  last: number;
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

class RestartPass extends Error {}

/** Explores every schedule within the bound from the machine's current state; leaves the machine there. */
export function explore(m: Machine, opts: ExploreOptions): ExploreResult {
  const t0 = Date.now();
  const nmiCpus = opts.nmiCpus ?? (opts.nmis > 0 ? m.cpus.map((c) => c.id) : []);
  const stateful = opts.stateful ?? true;
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
    bugs.set(key, { ...bug, choices: path.slice(), nmis: used.nmis, preemptions: used.preemptions, steps });
  };

  /**
   * One step of `cpu`, its footprint recorded into the ownership map. Returns whether
   * it was private: it touched only words no other CPU has written or that only it has
   * touched, changed no CPU's event state, ran no host routine, read no clock or device.
   * A word becoming shared after a private step relied on it restarts the pass.
   */
  const step = (cpu: number): boolean => {
    if (!reduce) {
      m.take({ kind: 'step', cpu });
      return false;
    }
    const c = m.cpus[cpu];
    const sig = eventSignature(m, opts.observe);
    const host = c.hostFrames.length > 0;
    fp.clear();
    // The instruction this step runs is read too: a step that fetches bytes another CPU
    // later writes does not commute with that write (the footprint leaves fetches out,
    // and a decoded instruction is not fetched again). Up to 15 bytes from RIP; a step
    // that delivers an event instead changes event state and is not private anyway.
    if (!host) fp.noteRange(c.rip, 15, false);
    m.mem.footprint = fp;
    // Cached pages would let an access bypass the slow path that records it.
    m.mem.flushTlb();
    try {
      m.take({ kind: 'step', cpu });
    } finally {
      m.mem.footprint = null;
    }
    let priv = !fp.global && !host && c.hostFrames.length === 0 && eventSignature(m, opts.observe) === sig;
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
    for (const k of fp.reads) touch(k, false);
    for (const k of fp.writes) touch(k, true);
    if (broken) throw new RestartPass();
    if (priv) {
      for (const k of fp.reads) words.get(k)!.used = true;
      for (const k of fp.writes) words.get(k)!.used = true;
    }
    return priv;
  };

  // One pass per bound (nmis, preemptions), smallest first.
  for (let nb = 0; nb <= opts.nmis && !limited; nb++) {
    for (let pb = 0; pb <= opts.preemptions && !limited; pb++) {
      let visited = new Map<string, Budget[]>();
      const pass0 = { schedules, states, cut, t: Date.now() };
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
        const choices = m.enabled();
        const runnable = choices.filter((c) => c.kind === 'step').map((c) => c.cpu);
        // Drains (TSO) and IPI arrivals: no CPU runs, so no preemption and the same last
        // CPU; each is a step for depth and never private (it writes shared state).
        const asyncChoices = choices.filter((c) => c.kind === 'drain' || c.kind === 'ipi');
        const nmiTo = (cpu: number): boolean => b.nmis > 0 && nmiCpus.includes(cpu) && !m.cpus[cpu].nmiPending && !m.cpus[cpu].shutdown;
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
          const h = stateHash(m, rootMark);
          const seen = visited.get(h);
          if (seen?.some((s) => s.nmis >= b.nmis && s.preemptions >= b.preemptions && s.depth >= b.depth && s.last === b.last)) {
            schedules++;
            return;
          }
          if (seen) seen.push({ ...b });
          else visited.set(h, [{ ...b }]);
        }
        const lastEnabled = runnable.includes(b.last);
        const here: Snapshot = m.snapshot();
        const cost = (cpu: number): number => (lastEnabled && cpu !== b.last ? 1 : 0);
        /** Takes `cpu`'s step (after an NMI to it if `nmi`) unless `ran`, searches on, comes back. */
        function* go(cpu: number, nmi: boolean, ran: boolean): Generator<Budget, void, void> {
          if (nmi) path.push({ kind: 'nmi', cpu });
          path.push({ kind: 'step', cpu });
          if (!ran) step(cpu);
          yield { nmis: b.nmis - (nmi ? 1 : 0), preemptions: b.preemptions - cost(cpu), depth: b.depth - 1, last: cpu };
          path.pop();
          if (nmi) path.pop();
          m.restore(here);
        }
        for (const c of asyncChoices) {
          m.take(c);
          path.push(c);
          yield { ...b, depth: b.depth - 1 };
          path.pop();
          m.restore(here);
        }
        if (!reduce) {
          for (const c of m.enabled(b.nmis > 0 ? nmiCpus : [])) {
            if (c.kind === 'drain' || c.kind === 'ipi') continue;
            if (c.kind === 'nmi') {
              m.take(c);
              path.push(c);
              yield { ...b, nmis: b.nmis - 1 };
              path.pop();
              m.restore(here);
            } else if (cost(c.cpu) <= b.preemptions) {
              yield* go(c.cpu, false, false);
            }
          }
          return;
        }
        // Reduced: an NMI arrives fused with its CPU's next step (arrivals commute with
        // other CPUs' steps); a private step of the last CPU is the only step choice.
        let runOn = false;
        if (lastEnabled) {
          runOn = step(b.last);
          yield* go(b.last, false, true);
        }
        for (const cpu of m.cpus.map((c) => c.id)) {
          if (cost(cpu) > b.preemptions || (runOn && cpu !== b.last)) continue;
          if (cpu !== b.last && runnable.includes(cpu)) yield* go(cpu, false, false);
          if (nmiTo(cpu)) {
            m.take({ kind: 'nmi', cpu });
            if (m.runnable(m.cpus[cpu])) yield* go(cpu, true, false);
            else m.restore(here);
          }
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
          visited = new Map();
          m.restore(root);
        }
      }
      m.restore(root);
      passes.push({
        nmis: nb, preemptions: pb, schedules: schedules - pass0.schedules, states: states - pass0.states,
        seconds: (Date.now() - pass0.t) / 1000, complete: !limited && cut === pass0.cut,
      });
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
    bugs: list,
  };
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
