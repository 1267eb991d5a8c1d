// The NMI-safe scenarios under many seeded random schedules and NMI timings.
//
// The corrected protocol ('fixed') must complete under every one, with its
// invariants, in both fetch modes. The protocol exactly as the RFC wrote it ('rfc')
// does not: its poke_sync publishes the new state before clearing the ack map, so a
// secondary can see its stale ack bit and not acknowledge, or acknowledge and have it
// wiped; the primary then waits forever. This test keeps that finding: it finds a
// failing schedule, checks it is that race, and replays the seed to the same report.
//
// PROPERTY_SEEDS=n runs more schedules (default 40 per scenario and mode).

import { join } from 'path';
import { loadScenario, type Scenario } from '../../kernel-model/scenario/scenario-file';
import { runScenario, type RunReport } from '../../kernel-model/scenario/run';
import type { FetchMode } from '../../emu/machine';
import type { ProtocolVariant } from '../../kernel-model/linux/kernel-context';
import { Prng } from '../../emu/scheduler';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');
const SEEDS = Number(process.env.PROPERTY_SEEDS ?? 40);

/** The scenario with a random schedule and 0-3 extra NMIs at random steps, from `seed`. */
export function randomised(base: Scenario, seed: number): { s: Scenario; schedule: { kind: 'random'; seed: number; maxQuantum: number } } {
  const rng = new Prng(seed * 7919 + 1);
  const s: Scenario = { ...base, inject: [...base.inject] };
  const extra = rng.below(4);
  for (let i = 0; i < extra; i++) {
    // After boot (an NMI before a CPU has loaded its IDT would triple-fault it).
    s.inject.push({ action: { nmi: rng.below(s.cpus) }, when: { step: 10000 + rng.below(30000) }, times: 1 });
  }
  return { s, schedule: { kind: 'random', seed, maxQuantum: 1 + rng.below(8) } };
}

function runSeed(name: string, seed: number, variant: ProtocolVariant, fetchMode: FetchMode): RunReport {
  const { s, schedule } = randomised(loadScenario(join(DIR, `${name}.json`)), seed);
  return runScenario(s, { schedule, variant, fetchMode });
}

function failure(r: RunReport, seed: number, name: string, variant: string, mode: string): string {
  const bad = r.invariants.filter((i) => !i.ok).map((i) => `${i.name}: ${i.detail}`);
  return [
    `${name} (${variant}, ${mode}) seed ${seed}: ${r.outcome}`,
    ...r.cycleText,
    ...bad,
    `replay: randomised(${name}, ${seed}) with variant ${variant}, fetch mode ${mode}`,
  ].join('\n');
}

describe.each<FetchMode>(['coherent', 'stale'])('corrected protocol under random schedules and NMIs (%s fetch)', (mode) => {
  it.each(['nmi-safe-primary', 'nmi-safe-secondaries'])('%s completes under every seed', (name) => {
    const failures: string[] = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = runSeed(name, seed, 'fixed', mode);
      if (r.outcome !== 'completed' || !r.invariants.every((i) => i.ok)) failures.push(failure(r, seed, name, 'fixed', mode));
    }
    expect(failures).toEqual([]);
  });
});

describe('the batch protocol under random schedules and NMIs', () => {
  it('completes under every seed', () => {
    const failures: string[] = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = runSeed('batch-poke', seed, 'rfc', 'coherent');
      if (r.outcome !== 'completed' || !r.invariants.every((i) => i.ok)) failures.push(failure(r, seed, 'batch-poke', 'batch', 'coherent'));
    }
    expect(failures).toEqual([]);
  });
});

describe('the protocol as the RFC wrote it (a finding)', () => {
  it('deadlocks under some random schedule on the lost-ack race, and the seed replays it exactly', () => {
    let found: { seed: number; r: RunReport } | null = null;
    let deadlocks = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = runSeed('nmi-safe-primary', seed, 'rfc', 'coherent');
      if (r.outcome === 'deadlock') {
        deadlocks++;
        found ??= { seed, r };
      }
    }
    expect(found).not.toBeNull();
    const { seed, r } = found!;
    // The signature: the primary waits for acknowledgements of a step, and the other
    // CPU waits for the state to move on: each waits for the other, nobody holds a lock.
    const primary = r.cpus[0];
    expect(primary.waiting).toMatch(/acks for PATCH_SYNC_/);
    expect(r.cycle).toEqual([0, 1]);
    expect(r.cpus[1].waiting).toMatch(/text_poke_state\.state to leave/);
    expect(r.cpus.every((c) => c.holds.length === 0)).toBe(true);
    const again = runSeed('nmi-safe-primary', seed, 'rfc', 'coherent');
    expect(JSON.stringify(again, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).toBe(
      JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
    );
    // Reported for the closing note: how often, and which seed replays it.
    process.stdout.write(`rfc ordering: ${deadlocks}/${SEEDS} random schedules deadlock; first replay seed ${seed}\n`);
  });
});
