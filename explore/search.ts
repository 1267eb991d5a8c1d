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
}

export interface ExploreResult {
  outcome: 'bug' | 'clean' | 'limit';
  /** The bounded space was explored entirely (no schedule, time or depth limit hit). */
  complete: boolean;
  schedules: number;
  states: number;
  /** Schedules cut at maxDepth. */
  cut: number;
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
function stateHash(m: Machine, rootMark: number): string {
  let a = 2166136261;
  let b = 0x9747b28c;
  for (const c of m.cpus) {
    for (let i = 0; i < 32; i++) {
      a = mix(a, c.r[i]);
      b = mix(b, c.r[i] ^ i);
    }
    // The spin detector's progress decides when a spinning CPU blocks (a deadlock is seen then).
    const sp = c.spin?.saveState();
    if (sp) for (const v of [sp.active ? 1 : 0, sp.pauseLo, sp.reads.length, sp.writes.length]) a = mix(a, v);
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

/** Explores every schedule within the bound from the machine's current state; leaves the machine there. */
export function explore(m: Machine, opts: ExploreOptions): ExploreResult {
  const t0 = Date.now();
  const nmiCpus = opts.nmiCpus ?? (opts.nmis > 0 ? m.cpus.map((c) => c.id) : []);
  const stateful = opts.stateful ?? true;
  const root = m.snapshot();
  const rootMark = root.mark;
  const bugs = new Map<string, Counterexample>();
  let schedules = 0;
  let states = 0;
  let cut = 0;
  let limited = false;
  const path: Choice[] = [];
  const deadline = opts.timeLimitSeconds ? t0 + opts.timeLimitSeconds * 1000 : Infinity;

  const report = (bug: Bug, used: { nmis: number; preemptions: number }): void => {
    const key = `${bug.kind}:${bug.signature}`;
    const old = bugs.get(key);
    const steps = path.filter((c) => c.kind === 'step').length;
    if (old && (old.nmis < used.nmis || (old.nmis === used.nmis && (old.preemptions < used.preemptions || (old.preemptions === used.preemptions && old.steps <= steps))))) return;
    bugs.set(key, { ...bug, choices: path.slice(), nmis: used.nmis, preemptions: used.preemptions, steps });
  };

  // One pass per bound (nmis, preemptions), smallest first.
  for (let nb = 0; nb <= opts.nmis && !limited; nb++) {
    for (let pb = 0; pb <= opts.preemptions && !limited; pb++) {
      const visited = new Map<string, Budget[]>();
      const dfs = (b: Budget): void => {
        if (limited) return;
        states++;
        const used = { nmis: nb - b.nmis, preemptions: pb - b.preemptions };
        const found = opts.check?.(m) ?? null;
        if (found) {
          report(found, used);
          schedules++;
          return;
        }
        const choices = m.enabled(b.nmis > 0 ? nmiCpus : []);
        const steps = choices.filter((c) => c.kind === 'step');
        if (steps.length === 0) {
          schedules++;
          const t = terminalBug(m);
          if (t) report(t, used);
          return;
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
        const lastEnabled = steps.some((c) => c.cpu === b.last);
        const here: Snapshot = m.snapshot();
        for (const c of choices) {
          let next: Budget;
          if (c.kind === 'nmi') next = { ...b, nmis: b.nmis - 1 };
          else {
            const pre = lastEnabled && c.cpu !== b.last ? 1 : 0;
            if (pre > b.preemptions) continue;
            next = { nmis: b.nmis, preemptions: b.preemptions - pre, depth: b.depth - 1, last: c.cpu };
          }
          m.take(c);
          path.push(c);
          dfs(next);
          path.pop();
          m.restore(here);
        }
      };
      dfs({ nmis: nb, preemptions: pb, depth: opts.maxDepth, last: -1 });
      m.restore(root);
    }
  }
  const list = [...bugs.values()].sort((x, y) => x.nmis - y.nmis || x.preemptions - y.preemptions || x.steps - y.steps);
  return {
    outcome: list.length ? 'bug' : limited ? 'limit' : 'clean',
    complete: !limited && cut === 0,
    schedules,
    states,
    cut,
    seconds: (Date.now() - t0) / 1000,
    bugs: list,
  };
}

/** Replays a counterexample's choices on a machine in the state exploration started from. */
export function replay(m: Machine, choices: readonly Choice[]): void {
  for (const c of choices) m.take(c);
}
