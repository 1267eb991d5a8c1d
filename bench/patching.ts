// Patching time as CPUs and sites grow: runtime patching of the lock ops on N emulated
// CPUs with each protocol, timed on the wall clock and counted in machine steps. The
// steps between the 'patch-start' and 'patch-done' events are the patch itself; the
// rest of a run is boot and the lock workload around it. The same grid code serves the
// fixture kernel (runtimePatch) and the real kernel (runtimePatchVmlinux, once it exists).

import type { KernelImage } from '../kernel-model/image/kernel-image';
import type { OpChange, Protocol } from '../kernel-model/linux/kernel-model';
import { relative } from 'path';
import { runtimePatch, type RuntimePatchOptions } from '../kernel-model/scenario/runtime-patch';
import { repoRoot } from '../kernel-model/image/download';
import { type BenchOptions, BudgetExceeded, Timeline, errorText, isRecord, median, now, perDoubling, seconds } from './util';

/** The five paravirt lock ops (pv_ops.lock), all switched to native. */
export const LOCK_OPS = [
  'lock.queued_spin_lock_slowpath',
  'lock.queued_spin_unlock',
  'lock.wait',
  'lock.kick',
  'lock.vcpu_is_preempted',
] as const;

export interface PatchConfig {
  label: string;
  protocol: Protocol;
  nmi: boolean;
}

export const PATCH_CONFIGS: readonly PatchConfig[] = [
  { label: 'stop-machine', protocol: 'stop-machine', nmi: false },
  { label: 'stop-machine+nmi', protocol: 'stop-machine', nmi: true },
  { label: 'batch', protocol: 'batch', nmi: false },
];

export interface OpSet {
  label: string;
  ops: readonly string[];
}

export const OP_SETS: readonly OpSet[] = [
  { label: 'unlock only', ops: ['lock.queued_spin_unlock'] },
  { label: 'all lock ops', ops: LOCK_OPS },
];

/** What the bench needs from a runtime patch, whoever implements it. */
export interface PatchRunInfo {
  steps: number;
  outcome: string;
  /** Steps of the first 'patch-start' and the last 'patch-done' event, if logged. */
  patchStart: number | null;
  patchDone: number | null;
  /** patchDone − patchStart. */
  patchSteps: number | null;
  /** Sites the patch planned (the report's site list), if the report has one. */
  planned: number | null;
}

/** A runtime patch function; the result is checked at run time, so dynamically found implementations fit too. */
export type PatchFn = (img: KernelImage, o: RuntimePatchOptions) => unknown;

/** Reads steps, outcome and the patch's step span out of a RuntimePatchResult-shaped value. */
export function patchRunInfo(result: unknown): PatchRunInfo {
  const report = isRecord(result) ? result.report : undefined;
  if (!isRecord(report) || typeof report.steps !== 'number') throw new Error('the patch function returned no report with steps');
  let start: number | null = null;
  let done: number | null = null;
  if (Array.isArray(report.events)) {
    for (const e of report.events as unknown[]) {
      if (!isRecord(e) || typeof e.step !== 'number') continue;
      if (e.kind === 'patch-start' && start === null) start = e.step;
      if (e.kind === 'patch-done') done = e.step;
    }
  }
  return {
    steps: report.steps,
    outcome: typeof report.outcome === 'string' ? report.outcome : '?',
    patchStart: start,
    patchDone: done,
    patchSteps: start !== null && done !== null ? done - start : null,
    planned: Array.isArray(report.sites) ? report.sites.length : null,
  };
}

export interface PatchRow {
  config: string;
  protocol: Protocol;
  nmi: boolean;
  cpus: number;
  opSet: string;
  ops: number;
  /** Sites the patch rewrote (its plan), or the image's sites of the ops when the report has no plan. */
  sites: number;
  /** Median wall time of a whole run (boot, workload, patch), milliseconds. */
  ms: number;
  /** Median wall time from patch-start to patch-done (sampled once per scheduler slice), milliseconds. */
  patchMs: number;
  steps: number;
  patchSteps: number | null;
  outcome: string;
  runs: number;
  /** Growth per doubling of CPUs from the previous row of the same config and op set. */
  patchMsPerDoubling: number | null;
  patchStepsPerDoubling: number | null;
  /** Why the row has no figures (over budget, failed), if it has none. */
  error?: string;
}

export interface GridSpec {
  configs: readonly PatchConfig[];
  cpus: readonly number[];
  opSets: readonly OpSet[];
  /** Timed runs per cell (median); 1 for expensive images. */
  runs: number;
  /** Untimed runs per cell first (V8 warm-up for cheap images). */
  warm: number;
  /** Wall-clock budget per run, seconds: a run over it is abandoned. */
  runBudget: number;
  /** Budget for the whole grid, seconds: cells after it are skipped. */
  gridBudget: number;
  /** Ops set before boot patching (a paravirt guest's boot), the same for every cell. */
  bootOps?: readonly OpChange[];
}

export function sitesOf(img: KernelImage, ops: readonly string[]): number {
  const want = new Set(ops);
  return img.sites.filter((s) => want.has(s.op)).length;
}

function opChanges(ops: readonly string[]): OpChange[] {
  return ops.map((op) => ({ op, mode: 'native' }));
}

/**
 * Runs every (op set, config, CPU count) cell of the grid, smallest CPU count first, so
 * an exhausted budget cuts the expensive end. `fn` may return a promise.
 */
export async function patchGrid(fn: PatchFn, img: KernelImage, g: GridSpec, o: BenchOptions, what: string): Promise<PatchRow[]> {
  const rows: PatchRow[] = [];
  const t0 = now();
  for (const set of g.opSets) {
    for (const cfg of g.configs) {
      let prev: PatchRow | null = null;
      for (const cpus of g.cpus) {
        const base = {
          config: cfg.label, protocol: cfg.protocol, nmi: cfg.nmi, cpus, opSet: set.label, ops: set.ops.length,
          sites: sitesOf(img, set.ops), patchMsPerDoubling: null, patchStepsPerDoubling: null,
        };
        if (seconds(t0) > g.gridBudget) {
          rows.push({ ...base, ms: NaN, patchMs: NaN, steps: 0, patchSteps: null, outcome: 'skipped', runs: 0, error: `skipped: the section's ${g.gridBudget} s budget is spent` });
          continue;
        }
        o.log(`${what}: ${set.label}, ${cfg.label}, ${cpus} CPUs`);
        const opts: RuntimePatchOptions = { ops: opChanges(set.ops), protocol: cfg.protocol, nmi: cfg.nmi, cpus };
        if (g.bootOps) opts.bootOps = [...g.bootOps];
        let row: PatchRow;
        try {
          const runOnce = async (): Promise<{ info: PatchRunInfo; sec: number; patchSec: number }> => {
            const tl = new Timeline(g.runBudget);
            const s0 = now();
            const result: unknown = await fn(img, { ...opts, onProgress: tl.onProgress });
            const sec = seconds(s0);
            const info = patchRunInfo(result);
            const patchSec = info.patchStart !== null && info.patchDone !== null ? tl.secondsBetween(info.patchStart, info.patchDone) : NaN;
            return { info, sec, patchSec };
          };
          for (let i = 0; i < g.warm; i++) await runOnce();
          const runs: { info: PatchRunInfo; sec: number; patchSec: number }[] = [];
          for (let i = 0; i < g.runs; i++) runs.push(await runOnce());
          const info = runs[runs.length - 1].info;
          row = {
            ...base, sites: info.planned ?? base.sites, ms: median(runs.map((r) => r.sec)) * 1e3, patchMs: median(runs.map((r) => r.patchSec)) * 1e3,
            steps: info.steps, patchSteps: info.patchSteps, outcome: info.outcome, runs: runs.length,
          };
        } catch (e) {
          const over = e instanceof BudgetExceeded || (e instanceof Error && e.name === 'BudgetExceeded');
          row = { ...base, ms: NaN, patchMs: NaN, steps: 0, patchSteps: null, outcome: over ? 'over budget' : 'failed', runs: 0, error: over ? `over the ${g.runBudget} s budget per run` : errorText(e) };
        }
        if (prev && !row.error && !prev.error) {
          row.patchMsPerDoubling = perDoubling(prev.cpus, prev.patchMs, cpus, row.patchMs);
          if (prev.patchSteps !== null && row.patchSteps !== null) row.patchStepsPerDoubling = perDoubling(prev.cpus, prev.patchSteps, cpus, row.patchSteps);
        }
        rows.push(row);
        prev = row;
      }
    }
  }
  return rows;
}

export interface FixturePatchingResults {
  image: string;
  sites: number;
  /** All five lock ops, CPUs 2..64, each protocol. */
  byCpus: PatchRow[];
  /** One op vs all lock ops, a few CPU counts, each protocol. */
  bySites: PatchRow[];
}

/** Patching time on the fixture kernel as CPUs grow, and as sites grow. */
export async function benchFixturePatching(img: KernelImage, o: BenchOptions): Promise<FixturePatchingResults> {
  const fn: PatchFn = runtimePatch;
  const byCpus = await patchGrid(
    fn,
    img,
    {
      configs: PATCH_CONFIGS,
      cpus: o.quick ? [2, 4] : [2, 4, 8, 16, 32, 64],
      opSets: [OP_SETS[1]],
      // Fixture runs take milliseconds: five timed runs per cell steady the medians.
      runs: o.quick ? 1 : 5,
      warm: 1,
      runBudget: 60,
      gridBudget: o.quick ? 30 : 120,
    },
    o,
    'patching (fixture)',
  );
  const bySites = await patchGrid(
    fn,
    img,
    { configs: PATCH_CONFIGS, cpus: o.quick ? [2] : [2, 8, 64], opSets: OP_SETS, runs: o.quick ? 1 : 5, warm: 1, runBudget: 60, gridBudget: o.quick ? 30 : 60 },
    o,
    'patching (fixture, sites)',
  );
  return { image: relative(repoRoot(), img.path), sites: img.sites.length, byCpus, bySites };
}
