// `textpoke demo`: the seed's deadlock scenario with nmi=false, then with nmi=true,
// on the embedded fixture, and a verdict a kernel developer can read.

import type { Argv } from 'yargs';
import { runDemo, formatDemo, type DemoPair } from '../../kernel-model/present/demo';
import { print, printJson, styleFor } from '../output';

export interface DemoArgs {
  case: DemoPair;
  json: boolean;
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
    .example('$0 demo', 'reproduce the deadlock, then show the NMI-safe patch completing')
    .example('$0 demo --case secondaries --json', 'the two-secondaries schedule, machine-readable') as unknown as Argv<DemoArgs>;
}

/** Exit status 1 when the demo does not show what it should (a regression). */
export function runDemoCommand(a: DemoArgs): number {
  const d = runDemo(a.case);
  if (a.json) printJson({ case: d.pair, scenario: d.scenarioFile, ok: d.ok, deadlock: d.deadlock, safe: d.safe });
  else print(formatDemo(d, styleFor(a.color)));
  return d.ok ? 0 : 1;
}
