// Seeded protocol bugs (kernel-model/linux/mutations.ts): the explorer finds each one
// from its scenario in fixtures/scenarios/explore/mutants/, within a small bound; the
// same scenario without the mutation is clean to that bound (so the mutation is what
// the explorer found); `explore --list-mutations` lists every mutation. Bounds are the
// smallest that find each bug, so CI stays fast; README.md (explore/) has the table.

import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { textpoke, ROOT } from '../cli/textpoke';
import { exploreScenario, type ScenarioExploreOptions } from '../../explore/scenario';
import { MUTATION_NAMES } from '../../kernel-model/linux/mutations';
import type { BugKind } from '../../explore/search';

const DIR = join(ROOT, 'fixtures', 'scenarios', 'explore', 'mutants');

/**
 * Each mutation: the bound that finds it, the kind of bug found, and whether the
 * unmutated control is searched here too (not for the three costliest bounds, to keep
 * CI fast: their controls are the clean passes of results 4 and 5, explore/README.md).
 */
const CASES: [string, Partial<ScenarioExploreOptions>, BugKind, boolean][] = [
  ['batch-no-sync-1', { preemptions: 1 }, 'xmc', true],
  ['batch-no-sync-2', { preemptions: 2 }, 'xmc', false],
  ['batch-no-sync-3', { preemptions: 0 }, 'invariant', true],
  ['first-byte-first', { preemptions: 2 }, 'xmc', false],
  ['publish-before-clear', { preemptions: 0 }, 'deadlock', true],
  ['ack-without-serialize', { preemptions: 0 }, 'xmc', true],
  ['bp-no-rewind', { nmis: 1, nmiCpus: [1], preemptions: 0, from: { site: 'lock.queued_spin_unlock' } }, 'assertion', false],
  ['num-acks-short', { preemptions: 0 }, 'xmc', true],
  // With IPI latency (the scenario's ipiLatency: each arrival a choice): the primary's
  // self-NMI arrives after it wrote PATCH_DONE, its worker waits for acks of secondaries
  // that have left. The control (same latency, no mutation) is clean.
  ['no-wait-nmi-work', { preemptions: 0 }, 'deadlock', true],
  // Three CPUs, CPU1's NMI scripted when the int3 is published: one explorer NMI to CPU2
  // closes the cycle primary -> CPU2 (spins on nmi_lock) -> CPU1 (holds it, in #BP) ->
  // primary. Schedules cut at 240 steps (the bug is at 206) keep CI short; the control,
  // exhausted to the patch's end, is in explore/README.md.
  ['nmi-handler-last', { nmis: 1, nmiCpus: [2], preemptions: 0, from: { site: 'lock.queued_spin_unlock' }, to: 'depth', maxDepth: 240 }, 'deadlock', false],
  ['wait-on-state', { preemptions: 1, from: { site: 'lock.queued_spin_unlock' } }, 'deadlock', true],
  ['bitmap-acks', { preemptions: 2, from: { site: 'lock.queued_spin_unlock' } }, 'assertion', true],
];

/** Mutations the model cannot show (explore/README.md says why): listed, not found. None since IPI latency. */
const NOT_OBSERVABLE: string[] = [];

describe('seeded protocol bugs', () => {
  let tmp = '';
  // Several mutants share a base scenario and bound: search each control once.
  const controls = new Map<string, ReturnType<typeof exploreScenario>['result']>();
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'textpoke-mutants-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.each(CASES)('%s: found; with its control, the unmutated scenario is clean to the same bound', (name, bound, kind, withControl) => {
    const file = join(DIR, `${name}.json`);
    const o: ScenarioExploreOptions = { nmis: 0, preemptions: 0, maxDepth: 4000, ...bound };
    const { result } = exploreScenario(file, o);
    expect(result.bugs.map((b) => b.kind)).toContain(kind);
    if (!withControl) return;
    // The control: the same file without "mutate".
    const plain = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    delete plain.mutate;
    const control = join(tmp, `${name}.json`);
    writeFileSync(control, JSON.stringify(plain));
    const key = JSON.stringify([{ ...plain, name: '', description: '' }, o]);
    const clean = controls.get(key) ?? exploreScenario(control, o).result;
    controls.set(key, clean);
    expect(clean.bugs).toEqual([]);
    expect(clean.complete).toBe(true);
  }, 600_000);

  it('every mutation has a case here, and --list-mutations lists each on one line', () => {
    expect(CASES.map((c) => c[0]).sort()).toEqual(MUTATION_NAMES.filter((n) => !NOT_OBSERVABLE.includes(n)).sort());
    const r = textpoke(['explore', '--list-mutations']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(MUTATION_NAMES);
  });

  it('a mutation the scenario cannot carry: one line naming the field, exit 2', () => {
    const bad = join(tmp, 'bad-mutate.json');
    const s = JSON.parse(readFileSync(join(DIR, 'batch-no-sync-1.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(bad, JSON.stringify({ ...s, mutate: 'publish-before-clear' }));
    const r = textpoke(['explore', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('mutate');
    writeFileSync(bad, JSON.stringify({ ...s, mutate: 'no-such-bug' }));
    expect(textpoke(['explore', bad]).stderr).toContain('mutate');
  });
});
