// The patching protocols under x86-TSO store buffers and split read-modify-writes:
// the corrected NMI-safe protocol and the batch protocol must still complete, with
// their invariants, under seeded random schedules with extra NMIs (the same
// randomisation as test/kernel-model/property.test.ts). TSO_SEEDS=n runs more.

import { join } from 'path';
import { loadScenario } from '../kernel-model/scenario/scenario-file';
import { runScenario } from '../kernel-model/scenario/run';
import { Prng } from '../emu/scheduler';
import type { MemoryModel, RmwMode } from '../emu/machine';
import type { ProtocolVariant } from '../kernel-model/linux/kernel-context';

const DIR = join(__dirname, '..', '..', 'fixtures', 'scenarios');
const SEEDS = Number(process.env.TSO_SEEDS ?? 10);

function run(name: string, seed: number, variant: ProtocolVariant, memoryModel: MemoryModel, rmw: RmwMode): string | null {
  const base = loadScenario(join(DIR, `${name}.json`));
  const rng = new Prng(seed * 7919 + 1);
  const s = { ...base, inject: [...base.inject] };
  for (let i = rng.below(4); i > 0; i--) {
    s.inject.push({ action: { nmi: rng.below(s.cpus) }, when: { step: 10000 + rng.below(30000) }, times: 1 });
  }
  const r = runScenario(s, { schedule: { kind: 'random', seed, maxQuantum: 1 + rng.below(8) }, variant, memoryModel, rmw });
  if (r.outcome === 'completed' && r.invariants.every((i) => i.ok)) return null;
  return [`${name} (${variant}, ${memoryModel}, ${rmw}) seed ${seed}: ${r.outcome}`, ...r.cycleText, ...r.invariants.filter((i) => !i.ok).map((i) => `${i.name}: ${i.detail}`)].join('\n');
}

describe.each<[MemoryModel, RmwMode]>([
  ['tso', 'atomic'],
  ['tso', 'split'],
])('under %s with %s read-modify-writes', (mm, rmw) => {
  it.each<[string, ProtocolVariant]>([
    ['nmi-safe-primary', 'fixed'],
    ['nmi-safe-secondaries', 'fixed'],
    ['batch-poke', 'rfc'],
  ])('%s (%s) completes under every seed', (name, variant) => {
    const failures: string[] = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const f = run(name, seed, variant, mm, rmw);
      if (f) failures.push(f);
    }
    expect(failures).toEqual([]);
  });
});
