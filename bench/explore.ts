// Explorer speed: schedules and states per second of the bounded search on a small
// guest program with a lock-order deadlock and an NMI self-deadlock
// (test/helpers/explore-guests.ts), with and without visited-state skipping; and on
// the fixture kernel, the corrected protocol from the patch's start to its end
// (fixtures/scenarios/explore/), every schedule within the bound.

import { join } from 'path';
import { explore } from '../explore/search';
import { exploreScenario, type ScenarioExploreOptions } from '../explore/scenario';
import { lockOrderMachine } from '../test/helpers/explore-guests';
import type { BenchOptions } from './util';

export interface ExploreFigure {
  label: string;
  stateful: boolean;
  nmis: number;
  preemptions: number;
  schedules: number;
  states: number;
  seconds: number;
  statesPerSecond: number;
  schedulesPerSecond: number;
  bugs: number;
}

export function benchExplore(o: BenchOptions): ExploreFigure[] {
  const bounds = o.quick ? [{ nmis: 0, preemptions: 1 }] : [{ nmis: 0, preemptions: 1 }, { nmis: 1, preemptions: 1 }];
  const out: ExploreFigure[] = [];
  for (const b of bounds) {
    for (const stateful of [true, false]) {
      const r = explore(lockOrderMachine().m, { ...b, nmiCpus: [0], maxDepth: 120, stateful });
      out.push({
        label: `lock order + NMI, ${b.nmis} NMI(s), ${b.preemptions} preemption(s), ${stateful ? 'visited states skipped' : 'brute force'}`,
        stateful, ...b, schedules: r.schedules, states: r.states, seconds: r.seconds,
        statesPerSecond: r.states / r.seconds, schedulesPerSecond: r.schedules / r.seconds, bugs: r.bugs.length,
      });
      o.log(`explore: ${out[out.length - 1].label}: ${r.states} states in ${r.seconds} s`);
    }
  }
  const root = join(__dirname, '..', '..', 'fixtures', 'scenarios', 'explore');
  const kernel: [string, string, Omit<ScenarioExploreOptions, 'maxDepth'>][] = [
    ['fixed-2cpu', 'fixed variant, nmi=false, 2 CPUs, 0 NMIs, 1 preemption', { nmis: 0, preemptions: 1 }],
    ...(o.quick ? [] : [['fixed-nmi-2cpu', 'fixed variant, nmi=true, 2 CPUs, 1 NMI to CPU1, 0 preemptions', { nmis: 1, nmiCpus: [1], preemptions: 0 }] as [string, string, Omit<ScenarioExploreOptions, 'maxDepth'>]]),
  ];
  for (const [file, label, b] of kernel) {
    const { result: r } = exploreScenario(join(root, `${file}.json`), { ...b, maxDepth: 4000 });
    out.push({
      label: `fixture kernel, ${label}`, stateful: true, nmis: b.nmis, preemptions: b.preemptions,
      schedules: r.schedules, states: r.states, seconds: r.seconds,
      statesPerSecond: r.states / r.seconds, schedulesPerSecond: r.schedules / r.seconds, bugs: r.bugs.length,
    });
    o.log(`explore: ${out[out.length - 1].label}: ${r.states} states in ${r.seconds} s`);
  }
  return out;
}

export function formatExplore(f: ExploreFigure[]): string {
  return [
    '',
    'Explorer (bounded DFS over choice points, one machine step per choice)',
    '=======================================================================',
    `  ${'figure'.padEnd(74)} ${'states'.padStart(8)} ${'schedules'.padStart(9)} ${'seconds'.padStart(8)} ${'states/s'.padStart(9)} ${'sched/s'.padStart(8)} ${'bugs'.padStart(4)}`,
    ...f.map(
      (x) =>
        `  ${x.label.padEnd(74)} ${String(x.states).padStart(8)} ${String(x.schedules).padStart(9)} ${x.seconds.toFixed(2).padStart(8)} ` +
        `${x.statesPerSecond.toFixed(0).padStart(9)} ${x.schedulesPerSecond.toFixed(0).padStart(8)} ${String(x.bugs).padStart(4)}`,
    ),
  ].join('\n');
}
