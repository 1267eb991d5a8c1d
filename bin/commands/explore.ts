// `textpoke explore <scenario.json>`: every schedule and NMI placement within a bound,
// from the scenario's start point; minimal counterexamples as replay files. Thin: the
// work is explore/scenario.ts.

import type { Argv } from 'yargs';
import { exploreScenario, writeReplays, type StartPoint } from '../../explore/scenario';
import { checkInt, checkPositive, inputFile } from '../args';
import { print, printJson } from '../output';
import { UserError } from '../errors';
import { MUTATIONS, MUTATION_NAMES, type Mutation } from '../../kernel-model/linux/mutations';
import { type MemoryModel, type RmwMode, MEMORY_MODELS, RMW_MODES } from '../../emu/machine';

export interface ExploreArgs {
  scenario?: string;
  'list-mutations': boolean;
  nmis: number;
  preemptions: number;
  'cpus-nmi'?: string;
  'nmis-per-cpu'?: number;
  'max-depth': number;
  from: string;
  to: string;
  'max-schedules'?: number;
  'time-limit'?: number;
  'visited-gib'?: number;
  json: boolean;
  reduce: boolean;
  'nmis-first': boolean;
  'memory-model'?: MemoryModel;
  rmw?: RmwMode;
  'ipi-latency'?: boolean;
  o?: string;
}

export function exploreCommand(y: Argv): Argv<ExploreArgs> {
  return y
    .positional('scenario', { type: 'string', describe: 'scenario file (JSON)' })
    .option('list-mutations', { type: 'boolean', default: false, describe: 'list the seeded protocol bugs a scenario can name in "mutate", one a line, and exit' })
    .option('nmis', { type: 'number', default: 0, describe: 'at most this many explorer NMIs per schedule' })
    .option('preemptions', { type: 'number', default: 1, describe: 'at most this many preemptions per schedule' })
    .option('cpus-nmi', { type: 'string', describe: 'comma-separated CPUs the NMIs may go to (default: all)' })
    .option('nmis-per-cpu', { type: 'number', describe: 'at most this many of the NMIs to any one CPU (at most 8 CPUs)' })
    .option('max-depth', { type: 'number', default: 10000, describe: 'machine steps per schedule from the start point (a schedule cut there makes the search not exhaustive)' })
    .option('from', { type: 'string', default: 'patch', describe: "start point: 'patch' (text_poke_state first changes), 'site:<op>' (bp_desc first holds a site of op), or a step number" })
    .option('to', { type: 'string', default: 'patch-end', choices: ['patch-end', 'depth'], describe: "where a schedule ends: 'patch-end' (the patch request returned, every CPU back in its thread; sites checked) or only at --max-depth" })
    .option('max-schedules', { type: 'number', describe: 'stop after this many schedules' })
    .option('time-limit', { type: 'number', describe: 'stop after this many seconds' })
    .option('visited-gib', { type: 'number', describe: 'memory for the visited-state table, in GiB (default 2.5, about 50 M states); a search that fills it stops as not exhausted' })
    .option('reduce', { type: 'boolean', default: true, describe: 'partial-order reduction (--no-reduce: every interleaving, for comparison)' })
    .option('nmis-first', { type: 'boolean', default: false, describe: 'search order: at each state the NMI to the CPU that ran last before its step (early NMIs first; the same schedules are searched)' })
    .option('memory-model', { choices: MEMORY_MODELS, describe: "sc, or tso: x86-TSO store buffers, each drain a choice (default: the scenario's)" })
    .option('rmw', { choices: RMW_MODES, describe: "atomic, or split: an unlocked read-modify-write is a load step and a store step (default: the scenario's)" })
    .option('ipi-latency', { type: 'boolean', describe: "every IPI stays in flight until the search delivers it, a choice of its own (default: on when the scenario sets ipiLatency)" })
    .option('json', { type: 'boolean', default: false, describe: 'one JSON object: outcome, complete, schedules, states, seconds, bugs' })
    .option('o', { type: 'string', describe: 'write one replay file per bug into this directory' })
    .example('$0 explore fixtures/scenarios/explore/deadlock-primary.json --nmis 1 --cpus-nmi 0 -o /tmp/bugs', 'search, write replays')
    .example('$0 explore --list-mutations', 'the seeded protocol bugs')
    .example('$0 run fixtures/scenarios/explore/deadlock-primary.json --replay /tmp/bugs/bug-1-deadlock.json', 'reproduce one') as unknown as Argv<ExploreArgs>;
}

/** --visited-gib in bytes: at least 1/64 GiB, and no more than the 16 GiB a table's arrays can address here. */
function visitedBytes(gib: number | undefined): number | undefined {
  const g = checkPositive(gib, '--visited-gib');
  if (g === undefined) return undefined;
  if (g < 1 / 64 || g > 16) throw new UserError(`--visited-gib: expected a size from 0.015625 to 16 (GiB), got ${gib}`);
  return g * 2 ** 30;
}

/** Exit 0 clean, 1 bug, 2 bad input. */
export function runExplore(a: ExploreArgs): number {
  if (a['list-mutations']) {
    const w = Math.max(...MUTATION_NAMES.map((n) => n.length));
    for (const n of MUTATION_NAMES) {
      const mu: Mutation = MUTATIONS[n];
      print(`${n.padEnd(w)}  ${mu.protocol}${mu.nmi !== undefined ? ` (nmi=${mu.nmi})` : ''}: ${mu.summary}`);
    }
    return 0;
  }
  if (a.scenario === undefined) throw new UserError('explore: expected a scenario file (or --list-mutations)');
  const file = inputFile(a.scenario, 'scenario');
  const nmis = checkInt(a.nmis, '--nmis', 0, 16)!;
  const preemptions = checkInt(a.preemptions, '--preemptions', 0, 16)!;
  const maxDepth = checkInt(a['max-depth'], '--max-depth', 1, 10_000_000)!;
  let from: StartPoint = 'patch';
  if (a.from.startsWith('site:')) from = { site: a.from.slice(5) };
  else if (a.from !== 'patch') {
    if (!/^\d+$/.test(a.from)) throw new UserError(`--from: expected 'patch', 'site:<op>' or a step number, got '${a.from}'`);
    from = { step: Number(a.from) };
  }
  let nmiCpus: number[] | undefined;
  if (a['cpus-nmi'] !== undefined) {
    nmiCpus = a['cpus-nmi'].split(',').map((x) => {
      if (!/^\d+$/.test(x.trim())) throw new UserError(`--cpus-nmi: expected a comma-separated list of CPU numbers, got '${a['cpus-nmi']}'`);
      return Number(x.trim());
    });
  }
  const { result, from: at, ipiChoice, machine } = exploreScenario(file, {
    nmis, preemptions, nmiCpus, nmisPerCpu: checkInt(a['nmis-per-cpu'], '--nmis-per-cpu', 0, 15), maxDepth, from, to: a.to === 'depth' ? 'depth' : 'patch-end', maxSchedules: checkInt(a['max-schedules'], '--max-schedules', 1, Number.MAX_SAFE_INTEGER), timeLimitSeconds: checkPositive(a['time-limit'], '--time-limit'), visitedBytes: visitedBytes(a['visited-gib']), reduce: a.reduce, nmisFirst: a['nmis-first'],
    overrides: { memoryModel: a['memory-model'], rmw: a.rmw }, ipiLatency: a['ipi-latency'],
  });
  const replays = a.o ? writeReplays(a.o, file, at, result, ipiChoice, machine) : [];
  const out = {
    outcome: result.outcome, complete: result.complete, schedules: result.schedules, states: result.states, restarts: result.restarts, seconds: result.seconds, cpuSeconds: result.cpuSeconds, passes: result.passes,
    bugs: result.bugs.map((b, i) => ({ kind: b.kind, summary: b.summary, nmis: b.nmis, preemptions: b.preemptions, steps: b.steps, seconds: b.seconds, cpuSeconds: b.cpuSeconds, replay: replays[i] ?? null })),
  };
  if (a.json) printJson(out);
  else {
    const bound = `${nmis} NMI(s)${nmiCpus ? ` to CPU ${nmiCpus.join(',')}` : ''}, ${preemptions} preemption(s), ${maxDepth} steps from step ${at}`;
    if (result.outcome === 'clean' && result.complete) print(`clean to bound: ${bound}; ${result.schedules} schedules, ${result.states} states, ${result.seconds} s`);
    else if (result.outcome !== 'bug') {
      // A pass is every schedule within its bound: print the largest ones exhausted.
      const done = result.passes.filter((p) => p.complete);
      const top = done.filter((p) => !done.some((q) => q !== p && q.nmis >= p.nmis && q.preemptions >= p.preemptions));
      for (const p of top) print(`clean to bound: ${p.nmis} NMI(s), ${p.preemptions} preemption(s) (exhausted: ${p.schedules} schedules, ${p.states} states, ${p.seconds} s)`);
      print(`no bug found, but the bound was not exhausted (${result.cut} schedules cut at the depth limit${result.outcome === 'limit' ? ', a schedule or time limit stopped the search' : ''}): ${bound}; ${result.schedules} schedules, ${result.states} states`);
    }
    for (const b of out.bugs) print(`${b.kind}: ${b.summary}\n  ${b.nmis} NMI(s), ${b.preemptions} preemption(s), ${b.steps} steps, found after ${b.seconds} s (${b.cpuSeconds} s CPU)${b.replay ? `; replay: ${b.replay}` : ''}`);
  }
  return result.outcome === 'bug' ? 1 : 0;
}
