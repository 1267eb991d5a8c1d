// fixtures/scenarios/torn-poke.json: one scenario whose outcome is decided by the
// fetch mode. Coherent: a CPU decodes a half-written lock site, takes #UD and halts in
// the oops handler holding shared_lock, so the others spin forever (deadlock). Stale:
// every CPU keeps running the whole instruction it decoded before the stores, so no
// torn instruction runs and the workers finish; the XMC checker still reports the
// cross-modification (xmc-violation).

import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { runScenario } from '../../kernel-model/scenario/run';
import { FIXTURES_DIR } from '../../kernel-model/image/fixture-image';

const FILE = join(FIXTURES_DIR, 'scenarios', 'torn-poke.json');

describe('torn-poke: the fetch mode decides the outcome', () => {
  it('coherent (the file\'s mode): a torn instruction, #UD with shared_lock held, the others spin on it', () => {
    const s = loadScenario(FILE);
    expect(s.fetchMode).toBe('coherent');
    const r = runScenario(s, {}, FILE);
    expect(r.outcome).toBe('deadlock');
    expect(r.expectation?.ok).toBe(true);
    const victim = r.cpus.find((c) => c.context.includes('#UD'))!;
    expect(victim).toBeDefined();
    expect(victim.state).toBe('halted');
    expect(victim.holds).toEqual(['shared_lock']);
    const others = r.cpus.filter((c) => c !== victim);
    for (const c of others) {
      expect(c.state).toBe('spinning');
      expect(c.waitsFor).toEqual([victim.cpu]);
    }
  });

  it('stale: no torn instruction runs, every worker finishes, and the XMC checker reports the stores', () => {
    const r = runScenario(loadScenario(FILE), { fetchMode: 'stale' }, FILE);
    expect(r.outcome).toBe('xmc-violation');
    expect(r.cpus.every((c) => c.state === 'halted' && !c.context.includes('#UD'))).toBe(true);
    expect(r.xmc.length).toBeGreaterThan(0);
    // What ran is the old, whole instruction: a call, never a torn decode.
    expect(r.xmc.every((x) => x.mnemonic === 'call')).toBe(true);
    expect(r.expectation?.ok).toBe(false);
  });
});
