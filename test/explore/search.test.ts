// The explorer on small guest programs: the reduced search (visited states skipped)
// finds exactly the bugs the brute-force enumeration of the same bound finds, each
// with the fewest NMIs and preemptions; replaying a counterexample reproduces it; and
// the choice-point API steps the same machine run() does.

import { guest } from '../helpers/guest';
import { explore, replay, terminalBug, type ExploreOptions } from '../../explore/search';

/** CPU0 takes a then b, then c; CPU1 takes b then a; the NMI handler takes c. */
const LOCKS = `
  .text
  .globl cpu0
cpu0:
  lea lock_a(%rip), %rdi
  call take
  lea lock_b(%rip), %rdi
  call take
  movq $0, lock_b(%rip)
  movq $0, lock_a(%rip)
  lea lock_c(%rip), %rdi
  call take
  movq $0, lock_c(%rip)
  hlt
  .globl cpu1
cpu1:
  lea lock_b(%rip), %rdi
  call take
  lea lock_a(%rip), %rdi
  call take
  movq $0, lock_a(%rip)
  movq $0, lock_b(%rip)
  hlt
take:
1:
  mov $1, %eax
  xchg %rax, (%rdi)
  test %rax, %rax
  jz 2f
  pause
  jmp 1b
2:
  ret
nmi_handler:
  push %rdi
  push %rax
  lea lock_c(%rip), %rdi
  call take
  movq $0, lock_c(%rip)
  pop %rax
  pop %rdi
  iretq
  .data
lock_a: .quad 0
lock_b: .quad 0
lock_c: .quad 0
`;

function machine(): ReturnType<typeof guest> {
  const g = guest(LOCKS, { cpus: 2, entry: 'cpu0', gates: { 2: ['nmi_handler', 0] } });
  g.m.cpu(1).setRipBig(g.sym('cpu1'));
  return g;
}

function summary(r: ReturnType<typeof explore>): string[] {
  return r.bugs.map((b) => `${b.kind} ${b.signature} nmis=${b.nmis} preemptions=${b.preemptions}`).sort();
}

describe('explore', () => {
  const bound: ExploreOptions = { nmis: 1, nmiCpus: [0], preemptions: 1, maxDepth: 120 };

  let found: ReturnType<typeof explore> | null = null;
  const reducedRun = (): ReturnType<typeof explore> => (found ??= explore(machine().m, { ...bound, stateful: true }));

  it('finds the lock-order deadlock (1 preemption) and the NMI self-deadlock (1 NMI), as brute force does', () => {
    const reduced = reducedRun();
    const brute = explore(machine().m, { ...bound, stateful: false });
    expect(reduced.complete).toBe(true);
    expect(brute.complete).toBe(true);
    expect(summary(reduced)).toEqual(summary(brute));
    expect(reduced.bugs.map((b) => [b.nmis, b.preemptions])).toEqual([[0, 1], [1, 0]]);
    expect(reduced.states).toBeLessThan(brute.states);
  }, 600_000);

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
