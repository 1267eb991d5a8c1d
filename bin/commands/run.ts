// `textpoke run <scenario.json>`: run any scenario and explain the outcome.

import type { Argv } from 'yargs';
import { existsSync } from 'fs';
import type { FetchMode } from '../../emu/machine';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, explain, vectorNamer, type RunOverrides } from '../../kernel-model/scenario/run';
import type { ProtocolVariant } from '../../kernel-model/linux/kernel-context';
import { formatRunReport } from '../../kernel-model/present/demo';
import { TraceProbe, TraceFile, formatTraceLine } from '../../kernel-model/scenario/trace';
import { checkInt, inputFile, outputFile, scheduleOverride } from '../args';
import { print, printJson, progressBar, styleFor } from '../output';
import { UserError } from '../errors';
import { readReplay, applyReplay } from '../../explore/scenario';

export interface RunArgs {
  scenario: string;
  seed?: number;
  schedule?: string;
  'max-steps'?: number;
  'fetch-mode'?: FetchMode;
  nmi?: boolean;
  variant?: ProtocolVariant;
  trace?: string;
  replay?: string;
  syntax: 'gas' | 'intel';
  sites: number;
  json: boolean;
  color?: boolean;
}

export function runCommand(y: Argv): Argv<RunArgs> {
  return y
    .positional('scenario', { type: 'string', demandOption: true, describe: 'scenario file (JSON)' })
    .option('seed', { type: 'number', describe: "random schedule with this seed (maxQuantum: the scenario's, or 4)" })
    .option('schedule', { type: 'string', describe: 'rr:<quantum>, random:<seed>[:<maxQuantum>], or a JSON schedule' })
    .option('max-steps', { type: 'number', describe: "step limit (default: the scenario's)" })
    .option('fetch-mode', { choices: ['coherent', 'stale'] as const, describe: "how other CPUs' code writes reach a CPU (default: the scenario's)" })
    .option('nmi', { type: 'boolean', describe: "override the scenario's patch.nmi (--nmi / --no-nmi)" })
    .option('variant', { choices: ['rfc', 'fixed'] as const, describe: 'protocol variant: the series as posted, or with the ack-ordering fix' })
    .option('trace', { type: 'string', describe: 'write one line per executed instruction or host-routine step to this file' })
    .option('replay', { type: 'string', describe: 'reproduce a counterexample written by textpoke explore -o' })
    .option('syntax', { choices: ['gas', 'intel'] as const, default: 'gas' as const, describe: 'disassembly syntax in the trace' })
    .option('sites', { type: 'number', default: 10, describe: 'changed sites to list in text output (0: all; --json has all)' })
    .option('json', { type: 'boolean', default: false, describe: 'print the run report as one JSON object' })
    .example('$0 run fixtures/scenarios/nmi-deadlock-primary.json', 'the seed deadlock: per-CPU report and wait-for cycle')
    .example('$0 run fixtures/scenarios/batch-poke.json --seed 7 --trace /tmp/t.txt', 'a random schedule, with an instruction trace')
    .example('$0 run s.json --schedule rr:50 --fetch-mode stale --json', 'override the schedule and fetch mode; machine-readable') as unknown as Argv<RunArgs>;
}

/** Exit status 1 when the scenario's `expect` is not met. */
export function runRun(a: RunArgs): number {
  const file = inputFile(a.scenario, 'scenario');
  const s = loadScenario(file);
  const o: RunOverrides = {
    schedule: scheduleOverride(a, s.schedule, s.cpus),
    maxSteps: checkInt(a['max-steps'], '--max-steps', 1, Number.MAX_SAFE_INTEGER),
    fetchMode: a['fetch-mode'],
    variant: a.variant,
    nmi: a.nmi,
  };
  if (a.nmi && s.patch && s.patch.protocol !== 'stop-machine') throw new UserError(`--nmi: ${file} uses the ${s.patch.protocol} protocol; NMI mode exists only for stop-machine`);
  const maxSites = checkInt(a.sites, '--sites', 0, Number.MAX_SAFE_INTEGER);
  if (a.trace !== undefined) {
    const inputs = [{ path: file, what: 'scenario file' }];
    if (existsSync(s.image)) inputs.push({ path: s.image, what: "scenario's image" });
    outputFile(a.trace, '--trace', inputs);
  }
  const run = prepareScenario(s, o, file);
  if (a.replay !== undefined) applyReplay(run, readReplay(inputFile(a.replay, '--replay')));
  let trace: TraceFile | null = null;
  if (a.trace !== undefined) {
    const tf = new TraceFile(a.trace);
    trace = tf;
    run.m.probe = new TraceProbe(run.m, vectorNamer(run.k), (l) => tf.write(formatTraceLine(l)), { syntax: a.syntax });
  }
  const bar = progressBar(s.name, run.maxSteps, a.json);
  let report;
  try {
    const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps, onProgress: bar ? (n) => bar.update(n) : undefined });
    report = explain(run, r);
    trace?.close();
  } catch (e) {
    trace?.abort();
    throw e;
  } finally {
    bar?.done();
  }
  if (a.json) printJson(report);
  else {
    print(formatRunReport(report, styleFor(a.color), { maxSites }));
    if (trace) print(`trace: ${trace.lines.toLocaleString('en-US')} lines in ${trace.path}`);
  }
  return report.expectation && !report.expectation.ok ? 1 : 0;
}
