// The explorer on the fixture kernel, from a scenario that scripts no NMIs: it finds
// the series' lost acknowledgement (README finding 1) with no NMI and no preemption,
// and the replay file it writes reproduces the deadlock through `textpoke run --replay`.

import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { textpoke, ROOT } from '../cli/textpoke';
import { exploreScenario, runToStart } from '../../explore/scenario';
import { explore, stateHash } from '../../explore/search';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario } from '../../kernel-model/scenario/run';
import { PATCH_SYNC_0 } from '../../kernel-model/linux/kernel-layout';

const SCENARIO = join(ROOT, 'fixtures', 'scenarios', 'explore', 'deadlock-primary.json');

describe('textpoke explore', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'textpoke-explore-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the lost acknowledgement with no NMI (and, from the exact start, no preemption); run --replay reproduces it', () => {
    const r = textpoke(['explore', SCENARIO, '--preemptions', '1', '--max-depth', '60', '--json', '-o', dir]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { outcome: string; bugs: { kind: string; summary: string; nmis: number; preemptions: number; replay: string }[] };
    expect(out.outcome).toBe('bug');
    const lost = out.bugs.find((b) => b.summary.includes('acks for PATCH_SYNC'))!;
    // The start is the step where the state first changes: which CPU runs first from
    // there is free, and CPU1 running first already loses the ack.
    expect(lost).toMatchObject({ kind: 'deadlock', nmis: 0, preemptions: 0 });
    const run = textpoke(['run', SCENARIO, '--replay', lost.replay, '--json']);
    const rep = JSON.parse(run.stdout) as { outcome: string; cycle: number[] };
    expect(rep.outcome).toBe('deadlock');
    expect(rep.cycle).toEqual([0, 1]);
  });

  it('the fixed variant is clean to 0 NMIs and 0 preemptions, to the patch\'s end, exhausted', () => {
    const r = textpoke(['explore', join(ROOT, 'fixtures', 'scenarios', 'explore', 'fixed-2cpu.json'), '--preemptions', '0', '--json']);
    const out = JSON.parse(r.stdout) as { outcome: string; complete: boolean; bugs: unknown[] };
    expect(out.bugs).toEqual([]);
    expect(out.complete).toBe(true);
    expect(r.code).toBe(0);
  });

  it('finds README finding 2 (a site followed entirely from #BP is never acknowledged) with one NMI to the secondary', () => {
    const { result } = exploreScenario(SCENARIO, {
      from: { site: 'lock.queued_spin_unlock' }, nmis: 1, nmiCpus: [1], preemptions: 0, maxDepth: 220,
    });
    const bug = result.bugs.find((b) => b.summary.includes('acks for PATCH_SYNC_DONE'))!;
    expect(bug).toMatchObject({ kind: 'deadlock', nmis: 1, preemptions: 0 });
    expect(bug.summary).toContain('text_poke_state.state to leave PATCH_SYNC_DONE');
  }, 600_000);

  it("the seed's deadlock: once CPU1's NMI handler waits in #BP holding nmi_lock, one NMI to CPU0 completes it", () => {
    // The second half of result 1, cheap: CPU1 took the first NMI and ran until it
    // waits. The primary's handler then spins on nmi_lock; the spinning CPU blocks only
    // after a whole PAUSE iteration, so a state hash that saw two iterations as one
    // state (it once did) pruned the block and never reported this deadlock.
    const run = prepareScenario(loadScenario(SCENARIO), {}, SCENARIO);
    runToStart(run, { site: 'lock.queued_spin_unlock' });
    const m = run.m;
    // The start is where bp_desc is published; the primary goes on to write the int3
    // and publish PATCH_SYNC_0.
    for (let i = 0; i < 1000 && m.mem.readU32(run.k.L.tps.state) !== PATCH_SYNC_0; i++) m.take({ kind: 'step', cpu: 0 });
    m.take({ kind: 'nmi', cpu: 1 });
    for (let i = 0; i < 5000 && m.runnable(m.cpus[1]); i++) m.take({ kind: 'step', cpu: 1 });
    expect(m.cpus[1].blocked?.detail).toContain('PATCH_SYNC_0');
    const r = explore(m, { nmis: 1, nmiCpus: [0], preemptions: 0, maxDepth: 100 });
    const seed = r.bugs.find((b) => b.summary.includes('spinning with PAUSE on nmi_lock'))!;
    expect(seed).toMatchObject({ kind: 'deadlock', nmis: 1, preemptions: 0 });
    expect(seed.summary).toContain('text_poke_state.state to leave PATCH_SYNC_0');
  }, 600_000);

  it('the state hash tells a host routine waiting from one fed its wait\'s value (same generator step)', () => {
    // A wait re-read or satisfied does not advance the generator: only the frame's
    // pending wait and resume value differ. The hash once left them out, and a state
    // reached later matched the start (which covers every last CPU) and was pruned.
    const file = join(ROOT, 'fixtures', 'scenarios', 'explore', 'fixed-2cpu.json');
    const run = prepareScenario(loadScenario(file), {}, file);
    runToStart(run, 'patch');
    const m = run.m;
    const root = m.snapshot();
    for (let i = 0; i < 100 && m.runnable(m.cpus[0]); i++) m.take({ kind: 'step', cpu: 0 });
    const f = m.cpus[0].hostFrames.find((x) => x.pending !== null)!;
    expect(f).toBeDefined();
    const waiting = stateHash(m, root.mark);
    const w = f.pending;
    f.pending = null;
    f.resume = 1n;
    expect(stateHash(m, root.mark)).not.toBe(waiting);
    f.pending = w;
    f.resume = undefined;
    expect(stateHash(m, root.mark)).toBe(waiting);
  });

  it('bad input: one line, exit 2', () => {
    const bad = join(dir, 'bad-replay.json');
    writeFileSync(bad, '{"format": "textpoke-replay/1", "from": 3, "choices": [{"kind": "jump", "cpu": 0}]}');
    const r = textpoke(['run', SCENARIO, '--replay', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('choices[0]');
    const e = textpoke(['explore', SCENARIO, '--cpus-nmi', 'x']);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain('--cpus-nmi');
  });
});
