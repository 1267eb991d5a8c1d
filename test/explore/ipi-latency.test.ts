// IPI delivery latency on a scenario (docs/notes/ipi-latency.md), through the CLI: the
// explorer finds the seeded bug no-wait-nmi-work when the scenario sets ipiLatency
// (each IPI's arrival a choice), its replay file reproduces the deadlock through `run
// --replay`; `run` itself with latency and a random schedule shows it for some seed;
// replaying under another memory model is refused; a bad ipiLatency is one line, exit 2.

import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { textpoke, ROOT } from '../cli/textpoke';

const MUTANT = join(ROOT, 'fixtures', 'scenarios', 'explore', 'mutants', 'no-wait-nmi-work.json');

interface Out {
  outcome: string;
  complete: boolean;
  bugs: { kind: string; summary: string; nmis: number; preemptions: number; replay: string }[];
}

describe('IPI latency on a scenario', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'textpoke-ipi-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('explore finds no-wait-nmi-work with no NMI and no preemption; run --replay reproduces the deadlock', () => {
    const r = textpoke(['explore', MUTANT, '--preemptions', '0', '--json', '-o', dir]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as Out;
    expect(out.complete).toBe(true);
    // The self-NMI arrives after the thread wrote PATCH_DONE: its worker leaves the state
    // at PATCH_SYNC_DONE, where the secondary waits for ever (or, in another schedule,
    // waits for acks of a secondary that has left).
    const dl = out.bugs.find((b) => b.kind === 'deadlock')!;
    expect(dl).toMatchObject({ nmis: 0, preemptions: 0 });
    // The patch can also return before the NMI came: the site then holds its old bytes.
    expect(out.bugs.map((b) => b.kind)).toContain('invariant');
    const f = JSON.parse(readFileSync(dl.replay, 'utf8')) as { ipiChoice?: boolean; choices: { kind: string }[] };
    expect(f.ipiChoice).toBe(true);
    expect(f.choices.some((c) => c.kind === 'ipi')).toBe(true);
    const run = textpoke(['run', MUTANT, '--replay', dl.replay, '--json']);
    const rep = JSON.parse(run.stdout) as { outcome: string; cycle: number[] };
    expect(rep.outcome).toBe('deadlock');
    // A replay found under one memory model does not run under another.
    const tso = textpoke(['run', MUTANT, '--replay', dl.replay, '--memory-model', 'tso']);
    expect(tso.code).toBe(2);
    expect(tso.stderr).toContain('memoryModel');
  });

  it('without latency the same mutant is clean to that bound (the arrival at the ICR write hides it)', () => {
    const s = JSON.parse(readFileSync(MUTANT, 'utf8')) as Record<string, unknown>;
    delete s.ipiLatency;
    const f = join(dir, 'no-latency.json');
    writeFileSync(f, JSON.stringify(s));
    const out = JSON.parse(textpoke(['explore', f, '--preemptions', '0', '--json']).stdout) as Out;
    expect(out.bugs).toEqual([]);
    expect(out.complete).toBe(true);
    // --ipi-latency turns the choices on without the scenario field.
    expect((JSON.parse(textpoke(['explore', f, '--preemptions', '0', '--ipi-latency', '--json']).stdout) as Out).outcome).toBe('bug');
  });

  it('run with the scenario\'s seeded latency: a random schedule deadlocks, deterministically', () => {
    const a = textpoke(['run', MUTANT, '--seed', '2', '--json']);
    const b = textpoke(['run', MUTANT, '--seed', '2', '--json']);
    const ra = JSON.parse(a.stdout) as { outcome: string; steps: number };
    expect(ra.outcome).toBe('deadlock');
    expect((JSON.parse(b.stdout) as { steps: number }).steps).toBe(ra.steps);
  });

  it('bad ipiLatency: one line naming the field, exit 2', () => {
    const s = JSON.parse(readFileSync(MUTANT, 'utf8')) as Record<string, unknown>;
    const f = join(dir, 'bad.json');
    writeFileSync(f, JSON.stringify({ ...s, ipiLatency: { min: 5, max: 2 } }));
    const r = textpoke(['run', f]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('ipiLatency.max');
    writeFileSync(f, JSON.stringify({ ...s, ipiLatency: { max: -1 } }));
    expect(textpoke(['run', f]).stderr).toContain('ipiLatency');
  });
});
