// `textpoke demo`: the seed's deadlock scenario with nmi=false, then with nmi=true,
// on the embedded fixture, and a verdict a kernel developer can read.

import type { Argv } from 'yargs';
import { tmpdir } from 'os';
import { join } from 'path';
import { runDemo, formatDemo, type DemoPair } from '../../kernel-model/present/demo';
import { recordScenario } from '../../debug/record-run';
import { writeTimelineSvg } from '../../debug/timeline-svg';
import { print, printJson, styleFor } from '../output';
import { outputFile } from '../args';

export interface DemoArgs {
  case: DemoPair;
  json: boolean;
  svg: string;
  color?: boolean;
}

export function demoCommand(y: Argv): Argv<DemoArgs> {
  return y
    .option('case', {
      choices: ['primary', 'secondaries'] as const,
      default: 'primary' as DemoPair,
      describe: "which of the seed's schedules: primary + secondary, or two secondaries",
    })
    .option('json', { type: 'boolean', default: false, describe: 'print both run reports as one JSON object' })
    .option('svg', { type: 'string', default: '', describe: "where to write the deadlock's timeline picture (default: textpoke-demo-<case>.svg in the temporary directory)" })
    .example('$0 demo', 'reproduce the deadlock, then show the NMI-safe patch completing')
    .example('$0 demo --case secondaries --json', 'the two-secondaries schedule, machine-readable') as unknown as Argv<DemoArgs>;
}

/** Exit status 1 when the demo does not show what it should (a regression). */
export function runDemoCommand(a: DemoArgs): number {
  const svg = outputFile(a.svg || join(tmpdir(), `textpoke-demo-${a.case}.svg`), '--svg');
  const d = runDemo(a.case);
  // The deadlock once more with its timeline recorded: the same run, step for step.
  const rec = recordScenario(d.scenario, { nmi: false }, d.scenarioFile);
  const same = rec.report.steps === d.deadlock.steps && rec.report.outcome === d.deadlock.outcome;
  writeTimelineSvg(svg, rec.timeline);
  if (a.json) printJson({ case: d.pair, scenario: d.scenarioFile, ok: d.ok && same, deadlock: d.deadlock, safe: d.safe, svg });
  else {
    print(formatDemo(d, styleFor(a.color), svg));
  }
  return d.ok && same ? 0 : 1;
}
