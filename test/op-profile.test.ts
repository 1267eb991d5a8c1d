// The measured op profile: the counting probe counts exactly the instructions executed
// (host-routine steps apart), the same run counts the same, and the committed profile
// (emu/op-profile.ts, from npm run profile-ops) adds up. A mnemonic without a row can
// appear: a faulting step counts too, and naive-poke executes torn bytes (#UD).

import { prepareExec } from '../emu/exec';
import { OpCounter, formatProfileTable } from '../emu/op-count';
import { OP_PROFILE, OP_PROFILE_TOTAL, OP_PROFILE_WORKLOADS } from '../emu/op-profile';
import { OP_ROWS, measuredShare } from '../emu/optable';
import { MNEMONIC_NAMES } from '../emu/decode';
import { Mnemonic } from 'iced-x86';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));

function countLoop(): OpCounter {
  // mov ecx,5; L: inc eax; dec ecx; jne L; hlt
  const m = prepareExec({ code: hex('b905000000 ffc0 ffc9 75fa f4'), regs: {} });
  const c = new OpCounter();
  m.probe = c;
  m.run({ schedule: { kind: 'round-robin', quantum: 1000 }, maxSteps: 1000, stopOnHlt: true });
  return c;
}

describe('op profile', () => {
  it('counts each executed instruction under its mnemonic', () => {
    const p = countLoop().profile([{ name: 'loop', instructions: 0 }]);
    const counts = Object.fromEntries(p.counts);
    expect(counts).toMatchObject({ mov: 1, inc: 5, dec: 5, jne: 5 });
    expect(p.total).toBe(p.counts.reduce((n, [, k]) => n + k, 0));
    expect(p.hostSteps).toBe(0);
    expect(countLoop().profile([])).toEqual(countLoop().profile([]));
    expect(formatProfileTable(p, 2)).toMatch(/\| 1 \| `(inc|dec|jne)` \| 5 \|/);
  });

  it('the committed profile adds up, and its most executed mnemonics all have rows', () => {
    expect(OP_PROFILE_WORKLOADS.length).toBeGreaterThan(0);
    expect(Object.values(OP_PROFILE).reduce((a, b) => a + b, 0)).toBe(OP_PROFILE_TOTAL);
    const names = new Set(OP_ROWS.map((r) => MNEMONIC_NAMES[r.mnemonic]));
    for (const name of Object.keys(OP_PROFILE).slice(0, 20)) expect(names.has(name) ? name : `${name} (no row)`).toBe(name);
    const mov = OP_ROWS.find((r) => r.mnemonic === Mnemonic.Mov)!;
    expect(measuredShare(mov)).toBeGreaterThan(0.05);
  });
});
