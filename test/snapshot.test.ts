// Machine snapshots: run, snapshot, run to the end; restore; run to the end again:
// the same trace and the same end state (registers, memory, steps), on every fixture
// scenario, at points inside host routines and inside NMI handlers too. And stopping
// a run (step limit, breakpoints, continue) changes nothing the machine computes.

import { readdirSync } from 'fs';
import type { Machine, RunResult } from '../emu/machine';
import { SnapshotError, type Snapshot } from '../emu/snapshot';
import { machineState, scenarioRun, StepRecorder, SCENARIOS } from './helpers/machine-state';
import { guest } from './helpers/guest';
import { requireSymbol } from '../kernel-model/image/kernel-image';

const FILES = readdirSync(SCENARIOS).filter((f) => f.endsWith('.json'));

function toEnd(m: Machine, run: ReturnType<typeof scenarioRun>): RunResult {
  return m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
}

/** The reference: the scenario run once, start to end, with its trace. */
function reference(file: string): { r: RunResult; state: ReturnType<typeof machineState>; trace: string[] } {
  const run = scenarioRun(file);
  const rec = new StepRecorder();
  run.m.probe = rec;
  const r = toEnd(run.m, run);
  return { r, state: machineState(run.m), trace: rec.steps };
}

describe.each(FILES)('snapshots on %s', (file) => {
  const ref = reference(file);

  it('stopping at the step limit and running on reaches the same end at the same step', () => {
    const run = scenarioRun(file);
    const m = run.m;
    for (const k of [1, 7, 1000, 4321, Math.floor(ref.r.steps / 2)]) {
      const r = m.run({ schedule: run.schedule, maxSteps: Math.min(k, ref.r.steps) });
      if (r.stop !== 'step-limit') break;
    }
    const r = toEnd(m, run);
    expect(r).toEqual(ref.r);
    expect(machineState(m)).toEqual(ref.state);
  });

  it('restore then run again gives the same trace and end state, at several points', () => {
    const run = scenarioRun(file);
    const m = run.m;
    const rec = new StepRecorder();
    m.probe = rec;
    const points = [0, 3, Math.floor(ref.r.steps / 3), Math.floor((2 * ref.r.steps) / 3)];
    for (const k of points) {
      const stop = m.run({ schedule: run.schedule, maxSteps: k });
      if (k > 0) expect(stop.stop).toBe('step-limit');
      const at = machineState(m);
      const s = m.snapshot();
      const mark = rec.steps.length;
      expect(toEnd(m, run)).toEqual(ref.r);
      expect(machineState(m)).toEqual(ref.state);
      m.restore(s);
      expect(machineState(m)).toEqual(at);
      rec.steps.length = mark;
      expect(toEnd(m, run)).toEqual(ref.r);
      expect(machineState(m)).toEqual(ref.state);
      expect(rec.steps).toEqual(ref.trace);
      m.restore(s);
      rec.steps.length = mark;
    }
  });

  it('restores inside host routines and NMI handlers; older snapshots stay, newer ones go', () => {
    const run = scenarioRun(file);
    const m = run.m;
    const inHost = (): boolean => m.cpus.some((c) => c.hostFrames.some((f) => f.hist.genSteps > 3));
    const inNmiHost = (): boolean => m.cpus.some((c) => c.contexts.some((x) => x.kind === 'NMI') && c.hostFrames.length > 0);
    const a = m.run({ schedule: run.schedule, maxSteps: run.maxSteps, until: inHost });
    const snaps: { s: Snapshot; state: ReturnType<typeof machineState> }[] = [];
    if (a.stop === 'until') {
      snaps.push({ s: m.snapshot(), state: machineState(m) });
      // Single steps in the middle of a routine: snapshots between host steps.
      for (let i = 0; i < 5; i++) {
        m.run({ schedule: run.schedule, maxSteps: m.steps + 1 });
        snaps.push({ s: m.snapshot(), state: machineState(m) });
      }
    }
    const b = m.run({ schedule: run.schedule, maxSteps: run.maxSteps, until: inNmiHost });
    if (b.stop === 'until') snaps.push({ s: m.snapshot(), state: machineState(m) });
    expect(toEnd(m, run)).toEqual(ref.r);
    // Newest first, then an older one, then a newer one again (gone by then).
    for (let i = snaps.length - 1; i >= 0; i -= 2) {
      m.restore(snaps[i].s);
      expect(machineState(m)).toEqual(snaps[i].state);
      expect(toEnd(m, run)).toEqual(ref.r);
      expect(machineState(m)).toEqual(ref.state);
    }
    if (snaps.length > 1) {
      m.restore(snaps[0].s);
      expect(() => m.restore(snaps[snaps.length - 1].s)).toThrow(SnapshotError);
    }
  });
});

describe('breakpoints and continues do not perturb the run', () => {
  const SYMBOLS = ['queued_spin_unlock', 'asm_exc_nmi', 'asm_exc_int3', 'nmi_lock_handler_unlock', 'workload_locker', 'poke_int3_handler'];

  it.each(FILES)('%s: same end, same step, with breakpoints at several symbols', (file) => {
    const ref = reference(file);
    const run = scenarioRun(file);
    const m = run.m;
    const hits = new Map<string, number>();
    const removers = new Map<string, () => void>();
    for (const name of SYMBOLS) {
      const a = run.img.symbols.resolve(name);
      if (a === undefined) continue;
      removers.set(name, m.addHook(a, () => 'stop'));
      hits.set(name, 0);
    }
    let r = toEnd(m, run);
    let stops = 0;
    while (r.stop === 'breakpoint') {
      stops++;
      const at = m.symbolize(m.cpu(r.cpu!).rip).split('+')[0];
      const n = (hits.get(at) ?? 0) + 1;
      hits.set(at, n);
      // Some breakpoints go after a few hits ("delete"), the others stay.
      if (n >= 3 && at !== 'asm_exc_nmi') removers.get(at)?.();
      r = toEnd(m, run);
    }
    expect(stops).toBeGreaterThan(0);
    expect(r).toEqual(ref.r);
    expect(machineState(m)).toEqual(ref.state);
  });

  it('break queued_spin_unlock, continue, delete 1, continue: the deadlock of the plain run, at its step', () => {
    const ref = reference('nmi-deadlock-primary.json');
    const run = scenarioRun('nmi-deadlock-primary.json');
    const remove = run.m.addHook(requireSymbol(run.img, 'queued_spin_unlock'), () => 'stop');
    expect(toEnd(run.m, run).stop).toBe('breakpoint');
    remove();
    const r = toEnd(run.m, run);
    expect(r).toEqual(ref.r);
    expect(r.stop).toBe('deadlock');
  });
});

describe('snapshots on small guest programs', () => {
  it('the stale fetch mode keeps each CPU instruction cache exactly across a restore', () => {
    // CPU1 rewrites the immediate of an instruction CPU0 has decoded; CPU0 has not
    // serialized, so in the stale mode it keeps running the old bytes. A restore to
    // before the write must give back CPU0's decode as it was, so the rerun keeps the
    // stale instruction exactly as the first run did.
    const g = guest(
      `
      .text
    reader:
      mov $0, %ecx
    1:
    site:
      add $1, %rcx
      pause
      cmp $100, %rcx
      jb 1b
      hlt
    writer:
      movb $2, site+3
      hlt
      .data
      `,
      { cpus: 2, fetchMode: 'stale', entry: 'reader' },
    );
    const m = g.m;
    m.cpu(1).setRipBig(g.sym('writer'));
    const sched = { kind: 'list' as const, slots: [{ cpu: 0, steps: 5 }, { cpu: 1, steps: 1 }], then: { kind: 'round-robin' as const, quantum: 1 } };
    m.run({ schedule: sched, maxSteps: 4 });
    const s = m.snapshot();
    const at = machineState(m);
    const r1 = m.run({ schedule: sched, maxSteps: 10_000 });
    const end1 = machineState(m);
    m.restore(s);
    expect(machineState(m)).toEqual(at);
    const r2 = m.run({ schedule: sched, maxSteps: 10_000 });
    expect(r2).toEqual(r1);
    expect(machineState(m)).toEqual(end1);
  });

  it('a snapshot costs no page copies until pages are written, and restore undoes only those', () => {
    const g = guest(
      `
      .text
      .globl _start
    _start:
      movq $1, buf
      movq $2, buf+4096
      hlt
      .data
    buf:
      .fill 8192, 1, 0
      `,
    );
    const m = g.m;
    const s = m.snapshot();
    const j = m.mem.journal!;
    const before = j.size;
    m.run({ stopOnHlt: true });
    // Two data pages and the stack page written; the text page decoded (code flag) — no more.
    expect(j.size - before).toBeLessThanOrEqual(8);
    expect(m.mem.readU64(g.sym('buf'))).toBe(1n);
    m.restore(s);
    expect(m.mem.readU64(g.sym('buf'))).toBe(0n);
    expect(m.mem.readU64(g.sym('buf') + 4096n)).toBe(0n);
  });
});
