// `textpoke run <scenario.json>`: run any scenario and explain the outcome.

import type { Argv } from 'yargs';
import { existsSync } from 'fs';
import { type FetchMode, type MemoryModel, type RmwMode, MEMORY_MODELS, RMW_MODES } from '../../emu/machine';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, explain, vectorNamer, type RunOverrides } from '../../kernel-model/scenario/run';
import type { ProtocolVariant } from '../../kernel-model/linux/kernel-context';
import { formatRunReport } from '../../kernel-model/present/demo';
import { TraceProbe, TraceFile, formatTraceLine } from '../../kernel-model/scenario/trace';
import { checkInt, inputFile, outputFile, scheduleOverride } from '../args';
import { print, printJson, progressBar, styleFor } from '../output';
import { UserError } from '../errors';
import { ProbeSet, type Probe } from '../../emu/probe';
import { TimelineRecorder } from '../../debug/timeline';
import { writePerfetto } from '../../debug/perfetto';
import { writeTimelineSvg } from '../../debug/timeline-svg';
import { readReplay, applyReplay } from '../../explore/scenario';

export interface RunArgs {
  scenario: string;
  seed?: number;
  schedule?: string;
  'max-steps'?: number;
  'fetch-mode'?: FetchMode;
  'memory-model'?: MemoryModel;
  rmw?: RmwMode;
  paging?: boolean;
  nmi?: boolean;
  variant?: ProtocolVariant;
  trace?: string;
  perfetto?: string;
  svg?: string;
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
    .option('memory-model', { choices: MEMORY_MODELS, describe: "sc, or tso for x86-TSO store buffers (default: the scenario's)" })
    .option('rmw', { choices: RMW_MODES, describe: "atomic, or split: an unlocked read-modify-write is a load step and a store step (default: the scenario's)" })
    .option('paging', { type: 'boolean', describe: "fixture kernels: boot with page tables and poke through poking_mm (--paging / --no-paging; default: the scenario's)" })
    .option('nmi', { type: 'boolean', describe: "override the scenario's patch.nmi (--nmi / --no-nmi)" })
    .option('variant', { choices: ['rfc', 'fixed'] as const, describe: 'protocol variant: the series as posted, or with the ack-ordering fix' })
    .option('trace', { type: 'string', describe: 'write one line per executed instruction or host-routine step to this file' })
    .option('perfetto', { type: 'string', describe: 'write the run as Trace Event JSON for ui.perfetto.dev / chrome://tracing' })
    .option('svg', { type: 'string', describe: "write a picture of the run's last stretch: a lane per CPU, contexts, waits, NMIs, the wait-for cycle" })
    .option('replay', { type: 'string', describe: 'reproduce a counterexample written by textpoke explore -o' })
    .option('syntax', { choices: ['gas', 'intel'] as const, default: 'gas' as const, describe: 'disassembly syntax in the trace' })
    .option('sites', { type: 'number', default: 10, describe: 'changed sites to list in text output (0: all; --json has all)' })
    .option('json', { type: 'boolean', default: false, describe: 'print the run report as one JSON object' })
    .example('$0 run fixtures/scenarios/nmi-deadlock-primary.json', 'the seed deadlock: per-CPU report and wait-for cycle')
    .example('$0 run fixtures/scenarios/batch-poke.json --seed 7 --trace /tmp/t.txt', 'a random schedule, with an instruction trace')
    .example('$0 run s.json --schedule rr:50 --fetch-mode stale --json', 'override the schedule and fetch mode; machine-readable')
    .example('$0 run s.json --seed 3 --memory-model tso --rmw split', 'x86-TSO store buffers and split read-modify-writes under a random schedule') as unknown as Argv<RunArgs>;
}

/** Exit status 1 when the scenario's `expect` is not met. */
export function runRun(a: RunArgs): number {
  const file = inputFile(a.scenario, 'scenario');
  const s = loadScenario(file);
  const o: RunOverrides = {
    schedule: scheduleOverride(a, s.schedule, s.cpus),
    maxSteps: checkInt(a['max-steps'], '--max-steps', 1, Number.MAX_SAFE_INTEGER),
    fetchMode: a['fetch-mode'],
    memoryModel: a['memory-model'],
    rmw: a.rmw,
    paging: a.paging,
    variant: a.variant,
    nmi: a.nmi,
  };
  if (a.nmi && s.patch && s.patch.protocol !== 'stop-machine') throw new UserError(`--nmi: ${file} uses the ${s.patch.protocol} protocol; NMI mode exists only for stop-machine`);
  const maxSites = checkInt(a.sites, '--sites', 0, Number.MAX_SAFE_INTEGER);
  const inputs = [{ path: file, what: 'scenario file' }];
  const images = typeof s.image === 'string' ? [s.image] : [s.image.vmlinux, s.image.systemMap];
  for (const im of images) if (existsSync(im)) inputs.push({ path: im, what: "scenario's image" });
  if (a.trace !== undefined) outputFile(a.trace, '--trace', inputs);
  if (a.perfetto !== undefined) outputFile(a.perfetto, '--perfetto', inputs);
  if (a.svg !== undefined) outputFile(a.svg, '--svg', inputs);
  const run = prepareScenario(s, o, file);
  if (a.replay !== undefined) applyReplay(run, readReplay(inputFile(a.replay, '--replay')));
  let trace: TraceFile | null = null;
  const probes: Probe[] = [];
  if (a.trace !== undefined) {
    const tf = new TraceFile(a.trace);
    trace = tf;
    probes.push(new TraceProbe(run.m, vectorNamer(run.k), (l) => tf.write(formatTraceLine(l)), { syntax: a.syntax }));
  }
  const recorder = a.perfetto !== undefined || a.svg !== undefined ? new TimelineRecorder(run) : null;
  if (recorder) probes.push(recorder);
  if (probes.length) run.m.probe = probes.length === 1 ? probes[0] : new ProbeSet(probes);
  const bar = progressBar(s.name, run.maxSteps, a.json);
  let report;
  try {
    const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps, onProgress: bar ? (n) => bar.update(n) : undefined });
    report = explain(run, r);
    trace?.close();
    const timeline = recorder?.finish(r.stop);
    if (timeline && a.perfetto !== undefined) writePerfetto(a.perfetto, timeline);
    if (timeline && a.svg !== undefined) writeTimelineSvg(a.svg, timeline);
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
    if (a.perfetto !== undefined) print(`perfetto: ${a.perfetto} (open it in ui.perfetto.dev or chrome://tracing; 1 us = 1 machine step)`);
    if (a.svg !== undefined) print(`timeline: ${a.svg}`);
  }
  return report.expectation && !report.expectation.ok ? 1 : 0;
}
