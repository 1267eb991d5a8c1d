// Where a CPU joins stop_machine: by a switch to its stopper thread at a preemption
// point of the scenario's preemption model (fixtures/include/sched.inc), never nested
// in an interrupt: the stopper's preempt count carries no HARDIRQ_OFFSET.

import { join } from 'path';
import { loadScenario, type Preemption } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, explain } from '../../kernel-model/scenario/run';
import { requireSymbol } from '../../kernel-model/image/kernel-image';
import { RSP } from '../../emu/regs';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');

function joins(preemption: Preemption, work: string): { points: Set<string>; counts: bigint[]; outcome: string } {
  const s = loadScenario(join(DIR, 'nmi-safe-primary.json'));
  s.inject = [];
  s.preemption = preemption;
  s.patch = { ...s.patch!, variant: 'fixed' };
  s.cpus = 3;
  s.work = [{ entry: 'workload_patcher', arg: 64n }, { entry: work, arg: 64n }, { entry: work, arg: 64n }];
  const run = prepareScenario(s);
  const { m, img, k } = run;
  const points = new Set<string>();
  const counts: bigint[] = [];
  m.addHook(requireSymbol(img, 'schedule_stopper'), (cpu) => {
    const ret = m.mem.readU64(cpu.getReg(RSP));
    points.add(m.symbolize(ret).replace(/\+.*$/, ''));
    return 'continue';
  });
  m.addHook(requireSymbol(img, 'cpu_stopper_thread'), (cpu) => {
    counts.push(BigInt(m.mem.readU32(k.L.pcpu(cpu.id, k.L.percpu.preempt))));
    return 'continue';
  });
  const r = m.run({ schedule: { kind: 'random', seed: 5, maxQuantum: 30 }, maxSteps: run.maxSteps });
  return { points, counts, outcome: explain(run, r).outcome };
}

describe('joining stop_machine by preemption model', () => {
  it.each<[Preemption, string[]]>([
    ['none', ['cond_resched']],
    ['voluntary', ['might_resched', 'cond_resched']],
    ['full', ['preempt_schedule', 'preempt_schedule_irq']],
  ])('%s: busy CPUs join only at %j', (model, allowed) => {
    const { points, counts, outcome } = joins(model, 'workload_locker');
    expect(outcome).toBe('completed');
    expect(points.size).toBeGreaterThan(0);
    for (const p of points) expect(allowed).toContain(p);
    expect(counts.length).toBe(2);
    for (const c of counts) expect(c).toBe(0n);
  });

  it('idle CPUs join from the idle loop (schedule()) in every model', () => {
    for (const model of ['none', 'voluntary', 'full'] as Preemption[]) {
      const { points, outcome } = joins(model, 'workload_idle');
      expect(outcome).toBe('completed');
      expect([...points]).toEqual(['idle_loop']);
    }
  });
});
