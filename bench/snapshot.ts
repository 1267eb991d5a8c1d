// Snapshot and restore cost: a machine in the middle of a patch (the fixture kernel's
// NMI-safe scenario, and Debian's kernel when it is cached) is snapshotted, run on for
// a stretch, and restored, many times. Snapshots copy nothing until pages change, so
// the restore cost grows with what the stretch wrote, not with memory size.

import { join } from 'path';
import type { Machine } from '../emu/machine';
import { loadScenario } from '../kernel-model/scenario/scenario-file';
import { prepareScenario } from '../kernel-model/scenario/run';
import { cachedKernelVersions } from '../kernel-model/image/download';
import { repoRoot } from '../kernel-model/image/download';
import { type BenchOptions, median, now, seconds } from './util';

export interface SnapshotFigure {
  scenario: string;
  /** Machine step the snapshot is taken at. */
  at: number;
  /** Mapped memory, KiB. */
  memoryKiB: number;
  /** Machine steps run between snapshot and restore. */
  stretch: number;
  snapshotMicros: number;
  restoreMicros: number;
  /** Pages and decodes the journal saved over the stretch. */
  journalEntries: number;
  trials: number;
}

const STRETCHES = [1, 100, 1000];

function figure(name: string, m: Machine, schedule: Parameters<Machine['run']>[0], stretch: number, o: BenchOptions): SnapshotFigure {
  const reps = o.quick ? 20 : 200;
  const snapT: number[] = [];
  const restT: number[] = [];
  let entries = 0;
  const at = m.steps;
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    const s = m.snapshot();
    snapT.push(seconds(t0));
    const before = m.mem.journal!.size;
    m.run({ ...schedule, maxSteps: at + stretch });
    entries = m.mem.journal!.size - before;
    const t1 = now();
    m.restore(s);
    restT.push(seconds(t1));
  }
  return {
    scenario: name, at, memoryKiB: m.mem.pages.size * 4, stretch, snapshotMicros: median(snapT) * 1e6,
    restoreMicros: median(restT) * 1e6, journalEntries: entries, trials: reps,
  };
}

function scenarioFigures(file: string, name: string, o: BenchOptions): SnapshotFigure[] {
  const s = loadScenario(file);
  const run = prepareScenario(s, {}, file);
  const m = run.m;
  // Into the patch: the first time text_poke_state leaves its start state is a good
  // place (host routines live on every CPU), else half the run.
  const probe = prepareScenario(s, {}, file);
  const total = probe.m.run({ schedule: run.schedule, maxSteps: run.maxSteps }).steps;
  m.run({ schedule: run.schedule, maxSteps: Math.floor(total / 2) });
  return STRETCHES.map((k) => figure(name, m, { schedule: run.schedule }, k, o));
}

export function benchSnapshots(o: BenchOptions): SnapshotFigure[] {
  const dir = join(repoRoot(), 'fixtures', 'scenarios');
  const out = scenarioFigures(join(dir, 'nmi-safe-primary.json'), 'nmi-safe-primary (fixture)', o);
  if (cachedKernelVersions().length > 0) {
    out.push(...scenarioFigures(join(dir, 'kernel', 'real-nmi-safe-primary.json'), 'real-nmi-safe-primary (Debian 6.1)', o));
  } else o.log('snapshot: no cached kernel, the real-kernel figures are skipped');
  return out;
}

export function formatSnapshots(f: SnapshotFigure[]): string {
  const rows = f.map(
    (x) =>
      `  ${x.scenario.padEnd(36)} ${String(x.at).padStart(8)} ${String(x.memoryKiB).padStart(9)} ${String(x.stretch).padStart(7)} ` +
      `${x.snapshotMicros.toFixed(1).padStart(11)} ${x.restoreMicros.toFixed(1).padStart(10)} ${String(x.journalEntries).padStart(8)}`,
  );
  return [
    '',
    'Snapshots (median µs; restore after running the stretch)',
    '========================================================',
    `  ${'scenario'.padEnd(36)} ${'at step'.padStart(8)} ${'mem KiB'.padStart(9)} ${'stretch'.padStart(7)} ${'snapshot µs'.padStart(11)} ${'restore µs'.padStart(10)} ${'journal'.padStart(8)}`,
    ...rows,
  ].join('\n');
}
