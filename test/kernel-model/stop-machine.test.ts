// stop_machine as Linux 6.1 runs it (kernel/stop_machine.c, multi_cpu_stop): the
// function runs only once every CPU has interrupts off, no CPU leaves before every CPU
// has finished it; and text_poke_late run twice (the series' patch 23) with the
// series' sync_ack_map, never cleared between runs, against the corrected variant.

import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, runScenario } from '../../kernel-model/scenario/run';
import { stopMachine, SM_STATE, MULTI_STOP_EXIT } from '../../kernel-model/linux/stop-machine';
import { requireSymbol } from '../../kernel-model/image/kernel-image';
import { type Step, note } from '../../kernel-model/linux/hostlib';
import type { Probe } from '../../emu/probe';
import type { Cpu } from '../../emu/cpu';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');

describe('multi_cpu_stop', () => {
  it.each([2, 3, 4])('on %i CPUs: the function starts after every CPU disabled interrupts; nobody leaves before all finished', (ncpus) => {
    const s = loadScenario(join(DIR, 'nmi-safe-primary.json'));
    s.cpus = ncpus;
    s.work = [{ entry: 'workload_patcher', arg: 40n }, ...Array.from({ length: ncpus - 1 }, () => ({ entry: 'workload_locker', arg: 40n }))];
    s.inject = [];
    s.patch = null;
    const run = prepareScenario(s);
    const { m, k } = run;
    const ifAtStart: boolean[][] = [];
    const finished: number[] = [];
    function* fn(cpu: number): Step {
      ifAtStart.push(m.cpus.map((c) => (c.flags & 0x200) !== 0));
      yield* note(`fn on CPU${cpu}`);
      yield* note(`fn on CPU${cpu} again`);
      finished.push(m.currentStep(m.cpu(cpu)));
    }
    m.bindHost(requireSymbol(run.img, 'textpoke_patch_request'), 'textpoke_patch_request', (ctx) =>
      (function* () {
        ctx.label = 'stop_machine';
        yield* stopMachine(k, ctx.cpu, fn);
      })(),
    );
    // The step at which each CPU first runs outside stop_machine after being in it.
    const left: number[] = [];
    const wasIn: boolean[] = [];
    const probe: Probe = {
      onStep(cpu: Cpu): void {
        const inStop = cpu.hostFrames.some((f) => f.ctx.label === 'stop_machine');
        if (inStop) wasIn[cpu.id] = true;
        else if (wasIn[cpu.id] && left[cpu.id] === undefined) left[cpu.id] = m.currentStep(cpu);
      },
    };
    m.probe = probe;
    const r = m.run({ schedule: { kind: 'random', seed: 3, maxQuantum: 20 }, maxSteps: run.maxSteps });
    expect(r.stop).not.toBe('deadlock');
    expect(ifAtStart.length).toBe(ncpus);
    for (const flags of ifAtStart) expect(flags).toEqual(Array(ncpus).fill(false));
    expect(left.filter((x) => x !== undefined).length).toBe(ncpus);
    expect(Math.max(...finished)).toBeLessThan(Math.min(...left));
    // The last CPU to acknowledge MULTI_STOP_EXIT moves the state one past it, as Linux's ack_state does.
    expect(m.mem.readU32(k.L.stopMachine + SM_STATE)).toBe(MULTI_STOP_EXIT + 1);
  });
});

describe('text_poke_late twice (patch-twice)', () => {
  const s = loadScenario(join(DIR, 'patch-twice.json'));
  const tally = (variant: 'rfc' | 'fixed'): Record<string, number> => {
    const t: Record<string, number> = {};
    for (let seed = 1; seed <= 12; seed++) {
      const r = runScenario(s, { variant, schedule: { kind: 'random', seed, maxQuantum: 50 } });
      const key = `${r.outcome} after ${r.events.filter((e) => e.kind === 'patch-done').length}`;
      t[key] = (t[key] ?? 0) + 1;
    }
    return t;
  };

  it('fixed: both runs complete under every schedule tried', () => {
    expect(tally('fixed')).toEqual({ 'completed after 2': 12 });
  });

  it('rfc: the second run starts with the first run\'s acks and loses one (deadlock in the second run)', () => {
    const t = tally('rfc');
    expect(t['deadlock after 1']).toBeGreaterThan(0);
  });

  it('rfc: the second rendezvous passes at once, the map still full from the first run', () => {
    const run = prepareScenario(s, { variant: 'rfc' });
    const { m, k } = run;
    const seen: bigint[] = [];
    let runs = 0;
    m.mem.watch(k.L.tps.state, 4, () => {
      if (m.mem.readU32(k.L.tps.state) === 7 && k.log.events.filter((e) => e.kind === 'patch-start').length === 2 && runs++ === 0) seen.push(m.mem.readU64(k.L.tps.ackMap));
    });
    m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
    expect(seen).toEqual([3n]);
  });
});
