// Running a scenario with its timeline recorded: the same run `runScenario` makes (a
// probe only observes), plus the record the Perfetto export and the SVG draw from.

import type { Scenario } from '../kernel-model/scenario/scenario-file';
import { prepareScenario, explain, type RunOverrides, type RunReport } from '../kernel-model/scenario/run';
import { TimelineRecorder, type Timeline } from './timeline';

export function recordScenario(s: Scenario, o: Omit<RunOverrides, 'probe'> = {}, file = s.name): { report: RunReport; timeline: Timeline } {
  const run = prepareScenario(s, o, file);
  const recorder = new TimelineRecorder(run);
  run.m.probe = recorder;
  const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
  const report = explain(run, r);
  return { report, timeline: recorder.finish(r.stop) };
}
