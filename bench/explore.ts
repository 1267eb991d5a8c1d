// Explorer speed: schedules and states per second (wall and CPU) of the bounded search
// on small guest programs (test/helpers/explore-guests.ts: a lock-order deadlock and an
// NMI self-deadlock; a deadlock that needs two NMIs), reduced and brute force; and on
// the fixture kernel, the corrected protocol from the patch's start to its end
// (fixtures/scenarios/explore/), every schedule within the bound.

import { join } from 'path';
import { explore } from '../explore/search';
import { exploreScenario, type ScenarioExploreOptions } from '../explore/scenario';
import { lockOrderMachine, twoNmisMachine } from '../test/helpers/explore-guests';
import type { BenchOptions } from './util';

export interface ExploreFigure {
  label: string;
  stateful: boolean;
  nmis: number;
  preemptions: number;
  schedules: number;
  states: number;
  seconds: number;
  /** CPU time of the search (user + system): on a shared host, wall seconds are several times more. */
  cpuSeconds: number;
  statesPerSecond: number;
  /** States per CPU second: the figure that compares across host loads. */
  statesPerCpuSecond: number;
  schedulesPerSecond: number;
  schedulesPerCpuSecond: number;
  bugs: number;
}

export function benchExplore(o: BenchOptions): ExploreFigure[] {
  const bounds = o.quick ? [{ nmis: 0, preemptions: 1 }] : [{ nmis: 0, preemptions: 1 }, { nmis: 1, preemptions: 1 }];
  const out: ExploreFigure[] = [];
  const guests: [string, typeof lockOrderMachine, number][] = [['lock order + NMI', lockOrderMachine, 120], ...(o.quick ? [] : [['two NMIs needed', twoNmisMachine, 80] as [string, typeof lockOrderMachine, number]])];
  for (const [name, machine, maxDepth] of guests) for (const b of name === 'two NMIs needed' ? [{ nmis: 2, preemptions: 1 }] : bounds) {
    for (const stateful of [true, false]) {
      // Brute force: no visited states and no reduction.
      const r = explore(machine().m, { ...b, nmiCpus: [0], maxDepth, stateful, reduce: stateful });
      out.push({
        label: `${name}, ${b.nmis} NMI(s), ${b.preemptions} preemption(s), ${stateful ? 'reduced' : 'brute force'}`,
        stateful, ...b, schedules: r.schedules, states: r.states, seconds: r.seconds, cpuSeconds: r.cpuSeconds,
        statesPerSecond: r.states / r.seconds, statesPerCpuSecond: r.states / Math.max(r.cpuSeconds, 1e-3), schedulesPerSecond: r.schedules / r.seconds, schedulesPerCpuSecond: r.schedules / Math.max(r.cpuSeconds, 1e-3), bugs: r.bugs.length,
      });
      o.log(`explore: ${out[out.length - 1].label}: ${r.states} states in ${r.seconds} s`);
    }
  }
  const root = join(__dirname, '..', '..', 'fixtures', 'scenarios', 'explore');
  const kernel: [string, string, Omit<ScenarioExploreOptions, 'maxDepth'>][] = [
    ['fixed-2cpu', 'fixed variant, nmi=false, 2 CPUs, 0 NMIs, 1 preemption', { nmis: 0, preemptions: 1 }],
    ...(o.quick ? [] : [['fixed-nmi-2cpu', 'fixed variant, nmi=true, 2 CPUs, 1 NMI to CPU1, 0 preemptions', { nmis: 1, nmiCpus: [1], preemptions: 0 }] as [string, string, Omit<ScenarioExploreOptions, 'maxDepth'>]]),
    // The explorer's own speed figure (issue 9, result 6): the bound whose profile guides
    // the work on states per CPU second (explore/README.md).
    ['fixed-2cpu', 'fixed-2cpu, 1 NMI to CPU1, 0 preemptions', { nmis: 1, nmiCpus: [1], preemptions: 0 }],
    ...(o.quick ? [] : [['fixed-2cpu', 'fixed-2cpu, 1 NMI to CPU1, 1 preemption', { nmis: 1, nmiCpus: [1], preemptions: 1 }] as [string, string, Omit<ScenarioExploreOptions, 'maxDepth'>]]),
  ];
  for (const [file, label, b] of kernel) {
    const { result: r } = exploreScenario(join(root, `${file}.json`), { ...b, maxDepth: 4000 });
    out.push({
      label: `fixture kernel, ${label}`, stateful: true, nmis: b.nmis, preemptions: b.preemptions,
      schedules: r.schedules, states: r.states, seconds: r.seconds, cpuSeconds: r.cpuSeconds,
      statesPerSecond: r.states / r.seconds, statesPerCpuSecond: r.states / Math.max(r.cpuSeconds, 1e-3), schedulesPerSecond: r.schedules / r.seconds, schedulesPerCpuSecond: r.schedules / Math.max(r.cpuSeconds, 1e-3), bugs: r.bugs.length,
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
    `  ${'figure'.padEnd(74)} ${'states'.padStart(8)} ${'schedules'.padStart(9)} ${'seconds'.padStart(8)} ${'CPU s'.padStart(7)} ${'states/s'.padStart(9)} ${'st/CPU-s'.padStart(9)} ${'sched/s'.padStart(8)} ${'sc/CPU-s'.padStart(8)} ${'bugs'.padStart(4)}`,
    ...f.map(
      (x) =>
        `  ${x.label.padEnd(74)} ${String(x.states).padStart(8)} ${String(x.schedules).padStart(9)} ${x.seconds.toFixed(2).padStart(8)} ${(x.cpuSeconds ?? 0).toFixed(2).padStart(7)} ` +
        `${x.statesPerSecond.toFixed(0).padStart(9)} ${(x.statesPerCpuSecond ?? 0).toFixed(0).padStart(9)} ${x.schedulesPerSecond.toFixed(0).padStart(8)} ${(x.schedulesPerCpuSecond ?? 0).toFixed(0).padStart(8)} ${String(x.bugs).padStart(4)}`,
    ),
  ].join('\n');
}
