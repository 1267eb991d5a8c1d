// The explorer on small guest programs: the reduced search (partial-order reduction:
// NMIs fused with their CPU's step, private steps run on; and visited states skipped)
// finds exactly the bugs the brute-force enumeration of the same bound finds, each
// with the fewest NMIs and preemptions; replaying a counterexample reproduces it; and
// the choice-point API steps the same machine run() does.

import { lockOrderMachine as machine, xmcTwiceMachine, twoNmisMachine, ipiLandsMachine } from '../helpers/explore-guests';
import { explore, replay, terminalBug, type ExploreOptions } from '../../explore/search';
import type { Machine } from '../../emu/machine';

function summary(r: ReturnType<typeof explore>): string[] {
  return r.bugs.map((b) => `${b.kind} ${b.signature} nmis=${b.nmis} preemptions=${b.preemptions}`).sort();
}

/** Brute force finds a deadlock at 1 preemption on `machine`, and the reduced search finds exactly what brute force finds. */
function deadlockAtOnePreemptionAsBruteForce(machine: () => { m: Machine }): void {
  const b: ExploreOptions = { nmis: 0, preemptions: 1, maxDepth: 60 };
  const brute = explore(machine().m, { ...b, stateful: false, reduce: false });
  expect(brute.complete).toBe(true);
  expect(brute.bugs.map((x) => [x.kind, x.preemptions])).toEqual([['deadlock', 1]]);
  const reduced = explore(machine().m, { ...b, stateful: true, reduce: true });
  expect(reduced.complete).toBe(true);
  expect(summary(reduced)).toEqual(summary(brute));
}

describe('explore', () => {
  const bound: ExploreOptions = { nmis: 1, nmiCpus: [0], preemptions: 1, maxDepth: 120 };
  // Brute force is only affordable one budget at a time: compare at each.
  const noNmi: ExploreOptions = { ...bound, nmis: 0 };
  const noPreemption: ExploreOptions = { ...bound, preemptions: 0 };

  it.each([
    ['1 preemption, no NMI: the lock-order deadlock', noNmi, [[0, 1]]],
    ['1 NMI, no preemption: the NMI self-deadlock', noPreemption, [[1, 0]]],
  ] as const)('%s, exactly as brute force', (_name, b, expected) => {
    const brute = explore(machine().m, { ...b, stateful: false, reduce: false });
    expect(brute.complete).toBe(true);
    // Each reduction on its own, and both: the same bugs, fewer states.
    for (const o of [{ stateful: true, reduce: false }, { stateful: false, reduce: true }, { stateful: true, reduce: true }]) {
      const reduced = explore(machine().m, { ...b, ...o });
      expect(reduced.complete).toBe(true);
      expect(summary(reduced)).toEqual(summary(brute));
      expect(reduced.bugs.map((x) => [x.nmis, x.preemptions])).toEqual(expected);
      expect(reduced.states).toBeLessThan(brute.states);
    }
  }, 600_000);

  it('cross-modifying code: a step that fetches bytes another CPU later writes is no private step (as brute force)', () => {
    // Without the fetch in the footprint, CPU1's register-only steps ran on as private
    // and the switch between its two runs of the rewritten jmp was never tried.
    deadlockAtOnePreemptionAsBruteForce(xmcTwiceMachine);
  }, 600_000);

  it('an interrupt another CPU sends lands between private steps (as brute force)', () => {
    // Without the pending-event word in the footprint, CPU1's register-only steps ran
    // on as private and CPU0's NMI by ICR could only land where CPU1 halts: no bug.
    deadlockAtOnePreemptionAsBruteForce(ipiLandsMachine);
  });

  it('two NMIs, the second arriving while the first handler runs: found exactly as brute force', () => {
    // The reduction sends no NMI to a CPU inside its NMI handler (the latch is read
    // only at the iret); the deadlock needs count == 2, so a search that lost the
    // second NMI's arrivals (or let it arrive nowhere after the first) misses it.
    const b: ExploreOptions = { nmis: 2, nmiCpus: [0], preemptions: 0, maxDepth: 80 };
    const brute = explore(twoNmisMachine().m, { ...b, stateful: false, reduce: false });
    expect(brute.complete).toBe(true);
    expect(brute.bugs.map((x) => [x.kind, x.nmis, x.preemptions])).toEqual([['deadlock', 2, 0]]);
    // nmisFirst changes the order only: the same bugs, at the same bounds.
    for (const o of [{ stateful: false, reduce: true }, { stateful: true, reduce: true }, { stateful: true, reduce: true, nmisFirst: true }]) {
      const reduced = explore(twoNmisMachine().m, { ...b, ...o });
      expect(reduced.complete).toBe(true);
      expect(summary(reduced)).toEqual(summary(brute));
      expect(reduced.states).toBeLessThan(brute.states);
    }
  }, 600_000);

  it('NMIs per CPU: a cap of one hides the bug that needs two on the same CPU, exactly as brute force', () => {
    // TWO_NMIS deadlocks only when CPU0's handler has run twice.
    const b: ExploreOptions = { nmis: 2, nmiCpus: [0], preemptions: 0, maxDepth: 80 };
    for (const [perCpu, bugs] of [[1, 0], [2, 1]] as const) {
      const brute = explore(twoNmisMachine().m, { ...b, nmisPerCpu: perCpu, stateful: false, reduce: false });
      expect(brute.complete).toBe(true);
      expect(brute.bugs.filter((x) => x.nmis === 2 && x.kind === 'deadlock')).toHaveLength(bugs);
      const reduced = explore(twoNmisMachine().m, { ...b, nmisPerCpu: perCpu });
      expect(reduced.complete).toBe(true);
      expect(summary(reduced)).toEqual(summary(brute));
    }
    // With both CPUs as targets the visited table must tell the per-CPU counts apart.
    const both: ExploreOptions = { ...b, nmiCpus: [0, 1], nmisPerCpu: 1 };
    const brute = explore(twoNmisMachine().m, { ...both, stateful: false, reduce: false });
    const reduced = explore(twoNmisMachine().m, both);
    expect(reduced.complete).toBe(true);
    expect(summary(reduced)).toEqual(summary(brute));
  }, 600_000);

  it('one search over both budgets (visited states kept across passes) reports what brute force at that bound reports', () => {
    // The visited table is shared by the passes (a state searched in a smaller bound
    // covers one reached later with no more budget left): the bugs and their minimal
    // bounds must be those of an enumeration with no table and no reduction.
    const b: ExploreOptions = { nmis: 1, nmiCpus: [0], preemptions: 1, maxDepth: 80 };
    const brute = explore(twoNmisMachine().m, { ...b, nmis: 2, stateful: false, reduce: false });
    const reduced = explore(twoNmisMachine().m, { ...b, nmis: 2 });
    expect(reduced.complete).toBe(true);
    expect(summary(reduced)).toEqual(summary(brute));
    expect(reduced.passes.map((p) => p.complete)).toEqual(brute.passes.map((p) => p.complete));
  }, 600_000);

  it('depth: left out of visited states unless schedules end at maxDepth; a pass with a cut is never complete', () => {
    // Brute force at each depth bound; the reduced search with exactDepth finds what it
    // finds (a state first met deep, its subtree cut, is searched again when met with
    // more steps left). Without exactDepth, a pass is complete only if nothing was cut,
    // and then it must agree with brute force at that depth. What can fail here: a cut
    // pass reported complete, or either search disagreeing with brute force. (On this
    // program exactDepth itself makes no difference: no state is met first deep, cut,
    // then again with more steps left; a search that ignored exactDepth passes too.)
    const depths = [20, 30, 40, 60];
    let sawCut = false;
    for (const maxDepth of depths) {
      const b: ExploreOptions = { nmis: 0, preemptions: 1, maxDepth };
      const brute = explore(machine().m, { ...b, stateful: false, reduce: false });
      const exact = explore(machine().m, { ...b, exactDepth: true });
      expect(summary(exact)).toEqual(summary(brute));
      expect(exact.complete).toBe(brute.complete);
      const loose = explore(machine().m, b);
      if (loose.cut > 0) sawCut = true;
      expect(loose.complete).toBe(loose.cut === 0 && brute.complete);
      if (loose.complete) expect(summary(loose)).toEqual(summary(brute));
    }
    expect(sawCut).toBe(true);
  }, 600_000);

  let found: ReturnType<typeof explore> | null = null;
  const reducedRun = (): ReturnType<typeof explore> => (found ??= explore(machine().m, { ...bound, stateful: true }));

  it('with both budgets it reports both bugs, each at its minimal bound', () => {
    expect(reducedRun().bugs.map((x) => [x.nmis, x.preemptions])).toEqual([[0, 1], [1, 0]]);
  }, 600_000);

  it('a full visited table stops the search as a limit, never as exhausted', () => {
    const r = explore(machine().m, { ...bound, maxVisited: 50 });
    expect(r.complete).toBe(false);
    expect(r.passes.some((p) => !p.complete)).toBe(true);
    expect(r.states).toBeLessThan(200);
  });

  it('with no NMIs and no preemptions the program is clean to that bound', () => {
    const r = explore(machine().m, { nmis: 0, preemptions: 0, maxDepth: 120 });
    expect(r.outcome).toBe('clean');
    expect(r.complete).toBe(true);
  });

  it('a counterexample replays to the same deadlock', () => {
    const r = reducedRun();
    for (const bug of r.bugs) {
      const fresh = machine().m;
      replay(fresh, bug.choices);
      expect(fresh.enabled().filter((c) => c.kind === 'step')).toEqual([]);
      expect(terminalBug(fresh)?.signature).toBe(bug.signature);
    }
  });

  it('take() of the choices run() would make gives the same machine', () => {
    const a = machine().m;
    const b = machine().m;
    a.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 60, livelockSteps: 0 });
    let last = 1;
    while (b.steps < 60) {
      const steps = b.enabled().filter((c) => c.kind === 'step');
      if (steps.length === 0) break;
      const next = steps.find((c) => c.cpu > last) ?? steps[0];
      b.take(next);
      last = next.cpu;
    }
    expect(b.cpus.map((c) => [c.rip, Array.from(c.r)])).toEqual(a.cpus.map((c) => [c.rip, Array.from(c.r)]));
  });
});
