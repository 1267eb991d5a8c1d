// Scenario throughput: every committed scenario (fixtures/scenarios/*.json) run as
// `textpoke run` does, timed in its three parts: setup (load the fixture, boot the
// CPUs, arm the patch request), the run itself, and the explanation (report, site
// verification, invariants). Steps per second count the run only.

import { existsSync, readdirSync } from 'fs';
import { join, relative } from 'path';
import { loadScenario, type Outcome } from '../kernel-model/scenario/scenario-file';
import { prepareScenario, explain, type RunReport } from '../kernel-model/scenario/run';
import { repoRoot } from '../kernel-model/image/download';
import type { Schedule } from '../emu/scheduler';
import { type BenchOptions, median, now, seconds } from './util';

export interface ScenarioFigure {
  name: string;
  file: string;
  cpus: number;
  schedule: string;
  steps: number;
  /** Medians over the runs, milliseconds. */
  setupMs: number;
  runMs: number;
  explainMs: number;
  totalMs: number;
  stepsPerSecond: number;
  outcome: Outcome;
  /** The scenario's own expectation held (null when it states none). */
  expected: boolean | null;
  runs: number;
}

export function scheduleText(s: Schedule): string {
  switch (s.kind) {
    case 'round-robin':
      return `rr q=${s.quantum}`;
    case 'random':
      return `random q≤${s.maxQuantum}`;
    case 'list':
      return `list(${s.slots.length}) then ${scheduleText(s.then)}`;
  }
}

/** Scenario files in fixtures/scenarios (or a subdirectory of it, e.g. 'kernel' for the real-kernel ones). */
export function scenarioFiles(sub?: string): string[] {
  const dir = join(repoRoot(), 'fixtures', 'scenarios', ...(sub ? [sub] : []));
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => join(dir, f));
}

function runOnce(file: string): { report: RunReport; setup: number; run: number; explain: number } {
  const s = loadScenario(file);
  const t0 = now();
  const run = prepareScenario(s, {}, file);
  const t1 = now();
  const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
  const t2 = now();
  const report = explain(run, r);
  const t3 = now();
  return { report, setup: seconds(t0, t1), run: seconds(t1, t2), explain: seconds(t2, t3) };
}

export function benchScenario(file: string, o: BenchOptions): ScenarioFigure {
  runOnce(file); // warm-up
  // Each scenario is a fixed workload of tens of milliseconds: repeat it at least
  // `trials` times and until a third of a trial's minimum time has passed, then take medians.
  const runs: ReturnType<typeof runOnce>[] = [];
  const t0 = now();
  while (runs.length < o.trials || seconds(t0) < o.minSeconds / 3) runs.push(runOnce(file));
  const last = runs[runs.length - 1].report;
  for (const r of runs) {
    if (r.report.steps !== last.steps || r.report.outcome !== last.outcome) {
      throw new Error(`${file}: runs differ (${r.report.steps} vs ${last.steps} steps): scenarios must be deterministic`);
    }
  }
  const runSec = median(runs.map((r) => r.run));
  const s = loadScenario(file);
  return {
    name: last.scenario,
    // Repo-relative: the figures are committed, and absolute paths say nothing elsewhere.
    file: relative(repoRoot(), file),
    cpus: s.cpus,
    schedule: scheduleText(last.schedule),
    steps: last.steps,
    setupMs: median(runs.map((r) => r.setup)) * 1e3,
    runMs: runSec * 1e3,
    explainMs: median(runs.map((r) => r.explain)) * 1e3,
    totalMs: median(runs.map((r) => r.setup + r.run + r.explain)) * 1e3,
    stepsPerSecond: last.steps / runSec,
    outcome: last.outcome,
    expected: last.expectation ? last.expectation.ok : null,
    runs: runs.length,
  };
}

export function benchScenarios(o: BenchOptions): ScenarioFigure[] {
  return scenarioFiles().map((f) => {
    o.log(`scenarios: ${f}`);
    return benchScenario(f, o);
  });
}
