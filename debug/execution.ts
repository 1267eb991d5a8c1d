// Resuming a prepared scenario run on behalf of a debugger, and telling it why the
// machine stopped. Breakpoints are emulator code hooks (emu/breakpoints.ts): no int3
// is ever written into guest text, which is the thing under study. Watchpoints use
// the memory watch mechanism (emu/memory.ts) and stop the writing CPU after the
// instruction that wrote, as an x86 data breakpoint traps.
//
// Every resumption follows the scenario's own schedule. A debugger "step" of CPU n
// runs the machine until CPU n has retired one more instruction; the other CPUs run
// as the schedule gives them turns, even if the debugger asked them to stay stopped,
// because textpoke's CPUs are one deterministic machine and freezing some of them
// would change the race being debugged. (The stepping console's `step <cpu>` is the
// tool for running one CPU alone.)
//
// Resumption runs in bounded chunks of machine steps so the server can notice a
// Ctrl-C between chunks; the chunk ends at a slice boundary, never inside a quantum.

import type { RunResult } from '../emu/machine';
import type { Snapshot } from '../emu/snapshot';
import type { Cpu } from '../emu/cpu';
import type { Insn } from '../emu/insn';
import type { Probe } from '../emu/probe';
import { ProbeSet } from '../emu/probe';
import type { ScenarioRun } from '../kernel-model/scenario/run';
import { machineReport } from '../kernel-model/scenario/report';
import { vectorNamer } from '../kernel-model/scenario/run';

export type WatchType = 'watch' | 'rwatch' | 'awatch';

/** Why the machine stopped, in the terms a debugger reports. */
export type DebugStop =
  | { kind: 'breakpoint'; cpu: number }
  | { kind: 'step'; cpu: number }
  | { kind: 'watch'; cpu: number; type: WatchType; address: bigint }
  | { kind: 'interrupt'; cpu: number }
  /** Going back reached the start of the recorded history (the machine as it was first prepared). */
  | { kind: 'history-start'; cpu: number }
  /** The run ended: deadlock, livelock, step limit, every CPU halted, shutdown. */
  | { kind: 'end'; cpu: number; result: RunResult; why: string };

/** What to run: the machine's schedule, until `stepCpu` (if any) retires one instruction. */
export interface Resume {
  stepCpu: number | null;
}

/** Machine steps per chunk between looks at the connection (a Ctrl-C is taken between chunks). */
export const CHUNK_STEPS = 1_000_000;

/** Stops one CPU when its retired count reaches `target`, through the probed step loop. */
class StepProbe implements Probe {
  fired = false;
  constructor(
    readonly cpu: number,
    private readonly target: number,
  ) {}
  onStep(cpu: Cpu): void {
    if (cpu.id !== this.cpu || this.fired || cpu.retired < this.target) return;
    this.fired = true;
    stopHere(cpu);
  }
}

/** Ends the CPU's slice at the current boundary and the run with it (Machine.run reports 'breakpoint'). */
function stopHere(cpu: Cpu): void {
  // As a breakpoint does (emu/breakpoints.ts): the resume restores cpu.brk as it was.
  cpu.machine.noteStopBrk(cpu.brk);
  cpu.stoppedAt = cpu.insn as Insn;
  cpu.brk = true;
}

interface Watchpoint {
  type: WatchType;
  address: bigint;
  len: number;
  ids: number[];
}

/**
 * What breakpoint and watchpoint hits do: stop the machine (normal), only count them
 * while history is replayed to find the last one (count), or stop at the n-th (seek).
 */
type HitMode = { kind: 'stop' } | { kind: 'count'; at: number[] } | { kind: 'seek'; left: number };

interface Checkpoint {
  snap: Snapshot;
  steps: number;
  retired: number[];
}

export class DebugTarget {
  private mode: HitMode = { kind: 'stop' };
  /** Snapshots in time order, one before each resumption: the history going back replays from. */
  private checkpoints: Checkpoint[] = [];
  private readonly breakpoints = new Map<string, { count: number; remove: () => void }>();
  private readonly watchpoints: Watchpoint[] = [];
  private watchHit: { cpu: number; type: WatchType; address: bigint } | null = null;
  /** The last way the machine stopped (the `?` packet and `monitor explain` read it). */
  last: DebugStop;
  /** The last run result that ended the run, for reports. */
  lastResult: RunResult | null = null;

  constructor(readonly run: ScenarioRun) {
    this.last = { kind: 'interrupt', cpu: 0 };
  }

  get machine(): ScenarioRun['m'] {
    return this.run.m;
  }

  // ---- Breakpoints (Z0/Z1): one code hook per address, shared by both kinds ----

  insertBreakpoint(address: bigint): void {
    const k = address.toString();
    const b = this.breakpoints.get(k);
    if (b) {
      b.count++;
      return;
    }
    this.breakpoints.set(k, { count: 1, remove: this.machine.addHook(address, (cpu) => (this.hit(cpu, false) ? 'stop' : 'continue')) });
  }

  removeBreakpoint(address: bigint): boolean {
    const k = address.toString();
    const b = this.breakpoints.get(k);
    if (!b) return false;
    if (--b.count === 0) {
      b.remove();
      this.breakpoints.delete(k);
    }
    return true;
  }

  hasBreakpoint(address: bigint): boolean {
    return this.breakpoints.has(address.toString());
  }

  // ---- Watchpoints (Z2 write, Z3 read, Z4 access) ----

  insertWatchpoint(type: WatchType, address: bigint, len: number): void {
    const mem = this.machine.mem;
    const ids: number[] = [];
    const hit = (cpu: number): void => {
      // Writes by the loader or the debugger itself (cpu -1) are not the guest's.
      if (cpu < 0 || this.watchHit || !this.hit(this.machine.cpus[cpu], true)) return;
      this.watchHit = { cpu, type, address };
      stopHere(this.machine.cpus[cpu]);
    };
    if (type !== 'rwatch') ids.push(mem.watch(address, len, hit));
    if (type !== 'watch') ids.push(mem.watchReads(address, len, hit));
    this.watchpoints.push({ type, address, len, ids });
  }

  removeWatchpoint(type: WatchType, address: bigint, len: number): boolean {
    const i = this.watchpoints.findIndex((w) => w.type === type && w.address === address && w.len === len);
    if (i < 0) return false;
    for (const id of this.watchpoints[i].ids) this.machine.mem.unwatch(id);
    this.watchpoints.splice(i, 1);
    return true;
  }

  /**
   * A breakpoint or watchpoint was reached: whether to stop there (see HitMode). A hit
   * is counted at the machine step its stop would report: in front of the instruction
   * for a breakpoint, after the writing instruction for a watchpoint.
   */
  private hit(cpu: Cpu, after: boolean): boolean {
    const md = this.mode;
    if (md.kind === 'stop') return true;
    if (md.kind === 'count') {
      md.at.push(this.machine.currentStep(cpu) + (after ? 1 : 0));
      return false;
    }
    return --md.left === 0;
  }

  // ---- Running ----

  /**
   * Runs up to `CHUNK_STEPS` machine steps of the scenario's schedule. Returns the stop,
   * or null when the chunk ran out with nothing to report (call again, or stop for a
   * Ctrl-C).
   */
  resume(r: Resume, chunk = CHUNK_STEPS): DebugStop | null {
    const { m } = this.run;
    const prev = m.probe;
    this.checkpoint();
    const stepProbe = r.stepCpu === null ? null : new StepProbe(r.stepCpu, m.cpus[r.stepCpu].retired + 1);
    if (stepProbe) m.probe = prev ? new ProbeSet([prev, stepProbe]) : stepProbe;
    this.watchHit = null;
    const end = m.steps + chunk;
    let res: RunResult;
    try {
      res = m.run({ schedule: this.run.schedule, maxSteps: this.run.maxSteps, until: () => m.steps >= end });
    } finally {
      m.probe = prev;
    }
    const stop = this.classify(res, stepProbe);
    if (stop) this.last = stop;
    return stop;
  }

  private classify(res: RunResult, step: StepProbe | null): DebugStop | null {
    if (res.stop === 'until') return null;
    if (res.stop === 'breakpoint' && res.cpu !== null) {
      if (this.watchHit) return { kind: 'watch', ...this.watchHit };
      if (step?.fired && step.cpu === res.cpu) return { kind: 'step', cpu: res.cpu };
      return { kind: 'breakpoint', cpu: res.cpu };
    }
    this.lastResult = res;
    return { kind: 'end', cpu: this.endCpu(res), result: res, why: `${res.stop} at machine step ${res.steps}` };
  }

  /** The thread to report when the run ends: the first CPU of a wait-for cycle, or the one the stop names. */
  private endCpu(res: RunResult): number {
    if (res.cpu !== null) return res.cpu;
    const rep = machineReport(this.machine, this.run.k.locks, vectorNamer(this.run.k));
    return rep.cycle?.[0] ?? this.last.cpu;
  }

  // ---- Going back: snapshots and deterministic re-execution ----

  /** Remembers the machine as it is now, unless the newest checkpoint is already here. */
  private checkpoint(): void {
    const m = this.machine;
    const last = this.checkpoints[this.checkpoints.length - 1];
    if (last && last.steps === m.steps && last.retired.every((r, i) => r === m.cpus[i].retired)) return;
    this.checkpoints.push({ snap: m.snapshot(), steps: m.steps, retired: m.cpus.map((c) => c.retired) });
  }

  /** Puts the machine back at checkpoint `i`; the later ones are gone with the future they recorded. */
  private restoreTo(i: number): void {
    this.machine.restore(this.checkpoints[i].snap);
    this.checkpoints.length = i + 1;
    this.lastResult = null;
  }

  /** Replays the schedule from where the machine is to machine step `end`, hits handled by `mode`. */
  private replay(mode: HitMode, end: number, probe: Probe | null = null): RunResult {
    const m = this.machine;
    const prev = m.probe;
    const prevMode = this.mode;
    this.mode = mode;
    this.watchHit = null;
    if (probe) m.probe = prev ? new ProbeSet([prev, probe]) : probe;
    try {
      return m.run({ schedule: this.run.schedule, maxSteps: end });
    } finally {
      m.probe = prev;
      this.mode = prevMode;
    }
  }

  /**
   * reverse-stepi: the machine as it was just after `cpu`'s previous instruction (its
   * last one undone). Replays from the newest checkpoint at which the CPU had not yet
   * run that instruction, stopping it when its retired count is one short of now.
   */
  reverseStep(cpu: number): DebugStop {
    const m = this.machine;
    this.checkpoint();
    const want = m.cpus[cpu].retired - 1;
    let i = this.checkpoints.length - 1;
    while (i >= 0 && this.checkpoints[i].retired[cpu] > want) i--;
    if (want < 0 || i < 0) {
      this.restoreTo(0);
      return (this.last = { kind: 'history-start', cpu });
    }
    const end = m.steps;
    this.restoreTo(i);
    if (m.cpus[cpu].retired < want) {
      const probe = new StepProbe(cpu, want);
      this.replay({ kind: 'count', at: [] }, end, probe);
    }
    return (this.last = { kind: 'step', cpu });
  }

  /**
   * reverse-continue: back to the last breakpoint or watchpoint hit before now, or to
   * the start of history. Each checkpoint interval, newest first, is replayed counting
   * hits; the last interval with any is replayed again to stop at its last hit.
   */
  reverseContinue(cpu: number): DebugStop {
    const m = this.machine;
    this.checkpoint();
    const now = m.steps;
    let end = now;
    for (let i = this.checkpoints.length - 2; i >= 0; i--) {
      this.restoreTo(i);
      // One step past the interval: a stop at its end (where the next checkpoint was
      // taken) is a hit of this interval; the next one resumes past it.
      const count: HitMode = { kind: 'count', at: [] };
      this.replay(count, end + 1);
      const k = count.at.filter((p) => p < now && p <= end).length;
      if (k > 0) {
        this.restoreTo(i);
        const r = this.replay({ kind: 'seek', left: k }, end + 1);
        const stop = this.hitStop(r);
        if (stop) return (this.last = stop);
        break;
      }
      end = this.checkpoints[i].steps;
    }
    this.restoreTo(0);
    return (this.last = { kind: 'history-start', cpu });
  }

  private hitStop(r: RunResult): DebugStop | null {
    if (r.stop !== 'breakpoint' || r.cpu === null) return null;
    const w = this.watchHit as { cpu: number; type: WatchType; address: bigint } | null;
    return w ? { kind: 'watch', ...w } : { kind: 'breakpoint', cpu: r.cpu };
  }

  /** Records a stop the server decided on (Ctrl-C). */
  interrupted(cpu: number): DebugStop {
    this.last = { kind: 'interrupt', cpu };
    return this.last;
  }
}
