// x86-TSO litmus tests on the emulator, every interleaving enumerated (enumerate.ts):
// under memoryModel 'tso' the set of final outcomes equals the x86-TSO abstract
// machine's (spec.ts), under 'sc' the SC machine's; and the outcome each test is about
// is allowed or forbidden as the paper says.

import { LITMUS, matches } from './tests';
import { specOutcomes } from './spec';
import { enumerate } from './enumerate';

const sorted = (s: Set<string>): string[] => [...s].sort();

describe.each(LITMUS.map((t) => [t.name, t] as const))('%s', (_name, t) => {
  it.each(['tso', 'sc'] as const)('under %s: outcomes equal the abstract machine\'s; the named outcome as the paper says', (model) => {
    const spec = specOutcomes(t, model);
    const emu = enumerate(t, model);
    expect(sorted(emu.outcomes)).toEqual(sorted(spec));
    const want = model === 'tso' ? t.tso : t.sc;
    const seen = [...emu.outcomes].some((o) => matches(o, t.outcome));
    expect(seen).toBe(want === 'allowed');
  });
});
