// Machine snapshots: the whole state of a machine at an instruction boundary, taken
// in microseconds and restored exactly, so that a search can branch at any point
// and a debugger can go back.
//
// What a snapshot holds, and how:
// - Memory and decoded instructions: nothing is copied when the snapshot is taken. The
//   journal (emu/journal.ts) saves a page on its first change after the snapshot
//   (bytes, per-byte write log, generation, code flag) and a decoded instruction on
//   its first change (decode, fetch epoch, validity), so a restore puts back exactly
//   the instruction caches the CPUs had: the stale fetch mode stays exact.
// - Every CPU: registers, lazy flags, segments, control registers, MSRs, event and NMI
//   state, contexts, the decode cursor, serialization counters, the spin tracker, the
//   local APIC, the stale-instruction list; host routines (generators, re-created from
//   their histories: emu/host.ts).
// - The machine: its clock, the schedule's position and the slot in progress, timers
//   (pending injections), blocked CPUs and what they watch, the XMC checker's state,
//   the exception log.
// - Registered parts (Machine.addStatePart): store buffers, TLBs, the kernel model.
//
// A snapshot is a point in the machine's past: restoring it discards snapshots taken
// after it (the journal is a trail), and it can be restored any number of times.
// Hooks, breakpoints, host bindings and the probe are not machine state: they stay as
// they are across a restore (bind host routines before the first snapshot).

// machine.ts first: it loads the CPU and the opcode table in the order they need.
import './machine';
import type { Machine, MachineCoreState } from './machine';
import type { Cpu } from './cpu';
import type { ApicState } from './apic';
import type { SpinState } from './spin';
import type { Insn } from './insn';
import { Journal } from './journal';
import { rewindHistory, type HostHistory, type HostOp } from './host';

/** A component that can join machine snapshots. States must be values: never mutated after saving. */
export interface SavesState<T> {
  saveState(): T;
  loadState(s: T): void;
}

/** A restore of a snapshot that is no longer in the machine's past. */
export class SnapshotError extends Error {}

interface FrameState {
  hist: HostHistory;
  steps: number;
  rspLo: number;
  rspHi: number;
  pending: boolean;
  calling: boolean;
  resume: bigint | undefined;
  last: string;
  depth: number;
  status: string;
  label: string;
}

interface CpuState {
  /** Plain fields (numbers, booleans, bigints, strings, null, immutable records), in keysOf's order. */
  plain: unknown[];
  r: Int32Array;
  msrs: [number, bigint][];
  contexts: Cpu['contexts'];
  frames: FrameState[];
  spin: SpinState | null;
  apic: ApicState;
  stale: Insn[];
}

export interface Snapshot {
  /** Machine step at which it was taken. */
  readonly steps: number;
  readonly id: number;
  readonly mark: number;
  readonly cpus: CpuState[];
  readonly core: MachineCoreState;
  readonly writeSeq: number;
  readonly codeWrites: number;
  readonly parts: Map<string, unknown>;
}

/**
 * How each Cpu field is saved. 'plain': copied as a value (immutable records such as
 * `shutdown`, `blocked`, `hookSkip` and Insn references included); 'special': saved by
 * its own code below; 'skip': identity or scratch. A field not listed is an error at
 * the first snapshot, so a new field cannot be forgotten silently.
 */
const CPU_FIELDS: Record<string, 'plain' | 'special' | 'skip'> = {
  r: 'special', msrs: 'special', contexts: 'special', hostFrames: 'special', spin: 'special', apic: 'special',
  icache: 'special', id: 'skip', machine: 'skip', mem: 'skip', th: 'skip', eh: 'skip',
  shutdown: 'plain', stoppedAt: 'plain', hookSkip: 'plain', continuing: 'plain', insn: 'plain', blocked: 'plain',
  // Memory ordering and translation: the TLB, store buffer and split-RMW state join as
  // the machine's 'cpu-memory' part (Cpu.saveMemoryState); the data caches are flushed.
  tlb: 'special', stores: 'special', rmw: 'special',
  tlbKey: 'skip', tlbPage: 'skip', wtlbKey: 'skip', wtlbPage: 'skip', xc: 'skip', cached: 'skip',
};

const plainKeys = new WeakMap<object, string[]>();

function keysOf(cpu: Cpu): string[] {
  const proto = Object.getPrototypeOf(cpu) as object;
  let keys = plainKeys.get(proto);
  if (keys) return keys;
  keys = [];
  for (const k of Object.keys(cpu)) {
    const how = CPU_FIELDS[k];
    const v = (cpu as unknown as Record<string, unknown>)[k];
    if (how === 'plain') keys.push(k);
    else if (how === undefined) {
      if (v !== null && typeof v === 'object') {
        throw new SnapshotError(`snapshot: Cpu.${k} holds an object emu/snapshot.ts does not know: list it in CPU_FIELDS or register it with addStatePart`);
      }
      keys.push(k);
    }
  }
  plainKeys.set(proto, keys);
  return keys;
}

function saveCpu(cpu: Cpu): CpuState {
  // An array, not a record: a search snapshots at most states, and a record built key by
  // key (and Object.assign back) is a slow dictionary-mode object.
  const keys = keysOf(cpu);
  const plain = new Array<unknown>(keys.length);
  const c = cpu as unknown as Record<string, unknown>;
  for (let i = 0; i < keys.length; i++) plain[i] = c[keys[i]];
  return {
    plain,
    r: cpu.r.slice(),
    msrs: [...cpu.msrs],
    contexts: cpu.contexts.slice(),
    frames: cpu.hostFrames.map((f) => ({
      hist: f.hist, steps: f.hist.genSteps, rspLo: f.rspLo, rspHi: f.rspHi, pending: f.pending !== null, calling: f.calling,
      resume: f.resume, last: f.last, depth: f.depth, status: f.ctx.status, label: f.ctx.label,
    })),
    spin: cpu.spin ? cpu.spin.saveState() : null,
    apic: cpu.apic.saveState(),
    stale: cpu.icache.saveState(),
  };
}

function loadCpu(m: Machine, cpu: Cpu, s: CpuState): void {
  const keys = keysOf(cpu);
  const c = cpu as unknown as Record<string, unknown>;
  for (let i = 0; i < keys.length; i++) c[keys[i]] = s.plain[i];
  cpu.r.set(s.r);
  cpu.msrs.clear();
  for (const [k, v] of s.msrs) cpu.msrs.set(k, v);
  cpu.contexts.length = 0;
  cpu.contexts.push(...s.contexts);
  if (s.spin) cpu.spin!.loadState(s.spin);
  cpu.apic.loadState(s.apic);
  cpu.icache.loadState(s.stale);
  cpu.hostFrames.length = 0;
  for (const f of s.frames) {
    const last = rewindHistory(cpu, f.hist, f.steps, (entry) => m.loadParts(entry));
    const h = f.hist;
    h.ctx.status = f.status;
    h.ctx.label = f.label;
    cpu.hostFrames.push({
      binding: h.binding, hist: h, ctx: h.ctx, rspLo: f.rspLo, rspHi: f.rspHi,
      pending: f.pending ? (last as Extract<HostOp, { op: 'wait' }>) : null,
      calling: f.calling, resume: f.resume, last: f.last, depth: f.depth,
    });
  }
}

let nextId = 1;

/** Snapshots in the machine's past, oldest first (restoring one drops those after it). */
const live = new WeakMap<Machine, Snapshot[]>();

export function takeSnapshot(m: Machine): Snapshot {
  if (!m.mem.journal) m.mem.journal = new Journal();
  const j = m.mem.journal;
  const s: Snapshot = {
    steps: m.steps,
    id: nextId++,
    mark: j.mark(),
    cpus: m.cpus.map(saveCpu),
    core: m.saveCore(),
    writeSeq: m.mem.writeSeq,
    codeWrites: m.mem.codeWriteLog.length,
    parts: m.saveParts(),
  };
  // Pages in the write TLB were saved in the old epoch: their next write must be saved again.
  m.mem.flushTlb();
  const list = live.get(m) ?? [];
  list.push(s);
  live.set(m, list);
  return s;
}

export function restoreSnapshot(m: Machine, s: Snapshot): void {
  const list = live.get(m) ?? [];
  const at = list.indexOf(s);
  if (at < 0 || !m.mem.journal) {
    throw new SnapshotError(`snapshot ${s.id} (step ${s.steps}) is not in this machine's past: a snapshot taken after the one last restored, or from another machine`);
  }
  list.length = at + 1;
  const restored = m.mem.journal.undoTo(s.mark);
  m.rehook(restored);
  m.mem.writeSeq = s.writeSeq;
  m.mem.codeWriteLog.length = s.codeWrites;
  m.mem.flushTlb();
  m.cpus.forEach((cpu, i) => loadCpu(m, cpu, s.cpus[i]));
  m.loadParts(s.parts);
  m.loadCore(s.core);
}
