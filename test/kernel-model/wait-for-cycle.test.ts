// The wait-for cycle in reports (kernel-model/scenario/report.ts findCycle): which CPUs
// form it, which edges count (only waiting or spinning CPUs have out-edges), where it
// starts (the lowest CPU on it), and that a chain into a cycle is not part of it.
// The scenario tests see one cycle each; these are the edges they do not reach.

import { findCycle, type CpuReport } from '../../kernel-model/scenario/report';

function cpu(id: number, state: CpuReport['state'], waitsFor: number[] = []): CpuReport {
  return { cpu: id, context: ['thread'], rip: 0n, symbol: '', state, status: '', holds: [], waiting: '', waitsFor, kernel: [] };
}

describe('findCycle', () => {
  it('no CPU waits: no cycle', () => {
    expect(findCycle([cpu(0, 'running'), cpu(1, 'halted')])).toBeNull();
  });

  it('a chain that ends at a running CPU is no cycle', () => {
    expect(findCycle([cpu(0, 'waiting', [1]), cpu(1, 'spinning', [2]), cpu(2, 'running')])).toBeNull();
  });

  it('an edge from a CPU that is not waiting does not count, even if its waitsFor is stale', () => {
    // CPU1 stopped waiting (running again) but its last wait-for list was kept.
    expect(findCycle([cpu(0, 'waiting', [1]), cpu(1, 'running', [0])])).toBeNull();
    expect(findCycle([cpu(0, 'waiting', [1]), cpu(1, 'halted', [0])])).toBeNull();
  });

  it('two CPUs waiting on each other, waiting or spinning alike', () => {
    expect(findCycle([cpu(0, 'spinning', [1]), cpu(1, 'waiting', [0])])).toEqual([0, 1]);
  });

  it('a CPU waiting on itself is a cycle of one', () => {
    expect(findCycle([cpu(0, 'running'), cpu(1, 'spinning', [1])])).toEqual([1]);
  });

  it('starts at the lowest CPU on the cycle, in the direction of the edges', () => {
    expect(findCycle([cpu(0, 'running'), cpu(1, 'waiting', [3]), cpu(2, 'waiting', [1]), cpu(3, 'waiting', [2])])).toEqual([1, 3, 2]);
  });

  it('a CPU whose chain leads into a cycle is not on it', () => {
    // CPU0 waits for CPU1; CPU1 and CPU2 wait for each other.
    expect(findCycle([cpu(0, 'waiting', [1]), cpu(1, 'waiting', [2]), cpu(2, 'spinning', [1])])).toEqual([1, 2]);
  });

  it('of several edges out of a CPU, follows them lowest first; a dead end is backed out of', () => {
    // CPU0 waits for CPU1 (a dead end: running) and CPU2; CPU2 waits for CPU0.
    expect(findCycle([cpu(0, 'waiting', [2, 1]), cpu(1, 'running'), cpu(2, 'waiting', [0])])).toEqual([0, 2]);
  });

  it('two disjoint cycles: the one through the lowest CPU', () => {
    expect(findCycle([cpu(0, 'waiting', [1]), cpu(1, 'waiting', [0]), cpu(2, 'waiting', [3]), cpu(3, 'waiting', [2])])).toEqual([0, 1]);
    expect(findCycle([cpu(0, 'running'), cpu(1, 'running'), cpu(2, 'waiting', [3]), cpu(3, 'waiting', [2])])).toEqual([2, 3]);
  });
});
