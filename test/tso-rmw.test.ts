// Split read-modify-write (machine option rmw 'split'): an unlocked `add` to memory is
// a load step and a store step, so CPUs interleaving between them lose updates, as
// real CPUs do; locked instructions stay atomic. Under the default 'atomic' nothing
// is lost. Seeded random schedules; every seed's result is a function of the seed.

import { guest } from './helpers/guest';
import type { RmwMode, MemoryModel } from '../emu/machine';
import { runSlice } from '../emu/run';

const N = 200;
const CPUS = 4;

function counter(insn: string, rmw: RmwMode, seed: number, memoryModel: MemoryModel = 'sc'): bigint {
  const g = guest(
    `
    _start:
      mov $${N}, %ecx
    1:
      ${insn}
      dec %ecx
      jnz 1b
      hlt
      .data
    counter: .quad 0
    `,
    { cpus: CPUS, rmw, memoryModel },
  );
  const r = g.m.run({ schedule: { kind: 'random', seed, maxQuantum: 3 }, maxSteps: 1_000_000 });
  expect(r.stop).toBe('halted');
  return g.m.mem.readU64(g.sym('counter'));
}

const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];

describe('split read-modify-write', () => {
  it('an unlocked add loses updates under seeded random schedules', () => {
    const totals = SEEDS.map((s) => counter('addq $1, counter(%rip)', 'split', s));
    for (const t of totals) expect(t).toBeLessThanOrEqual(BigInt(N * CPUS));
    expect(totals.some((t) => t < BigInt(N * CPUS))).toBe(true);
  });

  it('the same loop loses nothing when instructions are atomic (the default)', () => {
    for (const s of SEEDS) expect(counter('addq $1, counter(%rip)', 'atomic', s)).toBe(BigInt(N * CPUS));
  });

  it('lock add, lock xadd and lock inc (also under tso) never lose an update', () => {
    for (const s of SEEDS) {
      expect(counter('lock addq $1, counter(%rip)', 'split', s)).toBe(BigInt(N * CPUS));
      expect(counter('mov $1, %eax; lock xadd %rax, counter(%rip)', 'split', s)).toBe(BigInt(N * CPUS));
      expect(counter('lock incq counter(%rip)', 'split', s, 'tso')).toBe(BigInt(N * CPUS));
    }
  });

  it('an unlocked inc loses updates too, and an unlocked add under tso', () => {
    expect(SEEDS.some((s) => counter('incq counter(%rip)', 'split', s) < BigInt(N * CPUS))).toBe(true);
    expect(SEEDS.some((s) => counter('addq $1, counter(%rip)', 'split', s, 'tso') < BigInt(N * CPUS))).toBe(true);
  });

  it('the same seed gives the same total (determinism)', () => {
    expect(counter('addq $1, counter(%rip)', 'split', 3)).toBe(counter('addq $1, counter(%rip)', 'split', 3));
  });
});

describe('between the load and the store step', () => {
  it('an NMI waits for the store step: the RMW is not an instruction boundary', () => {
    const g = guest(
      `_start:
        addq $1, counter(%rip)
      after:
        hlt
      nmi:
        mov counter(%rip), %rax
        iretq
      .data
      counter: .quad 0`,
      { rmw: 'split', gates: { 2: ['nmi', 1] } },
    );
    const c = g.m.cpu(0);
    expect(runSlice(c, 1)).toBe(1); // load step
    expect(c.rmw).not.toBeNull();
    expect(g.m.mem.readU64(g.sym('counter'))).toBe(0n);
    g.m.nmi(0);
    expect(runSlice(c, 1)).toBe(1); // store step, not the NMI
    expect(g.m.mem.readU64(g.sym('counter'))).toBe(1n);
    expect(c.rip).toBe(g.sym('after'));
    expect(runSlice(c, 2)).toBe(2); // the NMI, its handler's two instructions
    expect(c.getReg(0)).toBe(1n);
    expect(c.rip).toBe(g.sym('after'));
  });
});
