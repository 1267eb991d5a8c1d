// The int3 side and the BUGs of the stop_machine protocol: references taken with
// atomic_inc_not_zero's compare-and-exchange loop, the series' descriptor published
// by pointer per site, and BUG() as an oops that stops the run.

import { join } from 'path';
import { loadScenario, type Scenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, explain } from '../../kernel-model/scenario/run';
import { requireSymbol } from '../../kernel-model/image/kernel-image';
import { textPokeSyncFinish } from '../../kernel-model/linux/text-poke-late';
import { PATCH_SYNC_1 } from '../../kernel-model/linux/kernel-layout';
import { write } from '../../kernel-model/linux/hostlib';
import type { Probe } from '../../emu/probe';
import type { Cpu } from '../../emu/cpu';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');

/** Every host-routine step of every CPU, as the trace describes it. */
function hostSteps(s: Scenario, variant: 'rfc' | 'fixed' = 'fixed'): { steps: { cpu: number; what: string }[]; outcome: string } {
  const steps: { cpu: number; what: string }[] = [];
  const probe: Probe = {
    onStep(cpu: Cpu): void {
      const top = cpu.hostFrames[cpu.hostFrames.length - 1];
      if (top && cpu.rip === top.binding.address) steps.push({ cpu: cpu.id, what: top.last });
    },
  };
  const run = prepareScenario(s, { probe, variant });
  const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
  return { steps, outcome: explain(run, r).outcome };
}

describe('poke_int3_handler', () => {
  it('the series: try_get_desc reads the bp_desc pointer, then takes a reference with lock cmpxchg (atomic_inc_not_zero)', () => {
    const s = loadScenario(join(DIR, 'nmi-deadlock-primary.json'));
    s.inject = [s.inject[0]];
    const { steps, outcome } = hostSteps(s);
    expect(outcome).toBe('completed');
    const cpu1 = steps.filter((x) => x.cpu === 1).map((x) => x.what);
    const ptr = cpu1.findIndex((w) => /^read .*bp_desc_ptr/.test(w));
    expect(ptr).toBeGreaterThanOrEqual(0);
    expect(cpu1.slice(ptr + 1, ptr + 3).map((w) => w.replace(/ .*/, ''))).toEqual(['read', 'cmpxchg']);
    expect(cpu1[ptr + 2]).toMatch(/bp_desc\+0xc/);
    // And the primary publishes and withdraws the pointer around every site.
    const cpu0 = steps.filter((x) => x.cpu === 0).map((x) => x.what);
    expect(cpu0.filter((w) => /bp_desc = &desc/.test(w)).length).toBe(5);
    expect(cpu0.filter((w) => /bp_desc = NULL/.test(w)).length).toBe(5);
  });

  it('6.1 batch: the one static bp_desc, referenced with lock cmpxchg', () => {
    const s = loadScenario(join(DIR, 'batch-poke.json'));
    const { steps, outcome } = hostSteps(s);
    expect(outcome).toBe('completed');
    const handler = steps.filter((x) => x.cpu !== 0 && /bp_refs/.test(x.what)).map((x) => x.what.replace(/ .*/, ''));
    expect(handler.length).toBeGreaterThan(0);
    expect(handler).toContain('cmpxchg');
  });
});

describe('BUG() in text_poke_sync_finish', () => {
  it('is an oops that stops the run: kernel BUG line, #UD at the ud2, the CPU stopped', () => {
    const s = loadScenario(join(DIR, 'nmi-safe-primary.json'));
    s.inject = [];
    const run = prepareScenario(s);
    const { m, k, img } = run;
    // A secondary's thread that finds PATCH_SYNC_1 without having seen PATCH_SYNC_0.
    m.bindHost(requireSymbol(img, 'textpoke_patch_request'), 'textpoke_patch_request', (ctx) =>
      (function* () {
        yield* write(k.L.tps.state, 4, BigInt(PATCH_SYNC_1));
        yield* textPokeSyncFinish(k, ctx.cpu);
      })(),
    );
    const r = m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
    expect(r.stop).toBe('stopped');
    const rep = explain(run, r);
    expect(rep.outcome).toBe('oops');
    const bug = rep.invariants.find((i) => i.name === 'no oops or BUG')!;
    expect(bug.detail).toMatch(/CPU0 oops: vector 6 at kernel_bug_ud2/);
    expect(bug.detail).toMatch(/kernel BUG at arch\/x86\/kernel\/alternative\.c:text_poke_sync_finish! unexpected state PATCH_SYNC_1 outside NMI/);
  });
});

describe('the order sites are patched in', () => {
  it('stop-machine: paravirt_worker walks the site table, whatever the order of the ops asked for', () => {
    const s = loadScenario(join(DIR, 'nmi-safe-primary.json'));
    s.patch = { ...s.patch!, ops: [...s.patch!.ops].reverse() };
    const run = prepareScenario(s);
    const plan = run.k.planSites(run.k.request!);
    const index = new Map(run.img.sites.map((x, i) => [x.address, i]));
    const seen = plan.map((p) => index.get(p.address)!);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(plan.map((p) => p.op)).not.toEqual(s.patch.ops.map((o) => o.op));
  });
});
