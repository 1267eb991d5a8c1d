// Every committed scenario runs to its expected outcome, explained: the deadlocks with
// their wait-for cycles and what each CPU waits for, the completed patches with
// verified sites, exact counters and a clean XMC checker in both fetch modes.

import { readdirSync } from 'fs';
import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { runScenario, prepareScenario, explain, type RunReport } from '../../kernel-model/scenario/run';
import { requireSymbol } from '../../kernel-model/image/kernel-image';
import type { FetchMode } from '../../emu/machine';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');
const load = (name: string) => loadScenario(join(DIR, `${name}.json`));
const run = (name: string, fetchMode?: FetchMode): RunReport => runScenario(load(name), { fetchMode });

describe('scenarios', () => {
  it.each(readdirSync(DIR).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, '')))(
    '%s meets its expectation',
    (name) => {
      const r = run(name);
      expect(r.expectation).toEqual({ ok: true, detail: 'as expected' });
    },
  );

  it('nmi-deadlock-primary: CPU0 spins in NMI on nmi_lock held by CPU1; CPU1 waits in #BP for CPU0', () => {
    const r = run('nmi-deadlock-primary');
    expect(r.outcome).toBe('deadlock');
    expect(r.cycle).toEqual([0, 1]);
    const [c0, c1] = r.cpus;
    expect(c0.context).toEqual(['thread', 'stop_machine', 'NMI']);
    expect(c0.state).toBe('spinning');
    expect(c0.waiting).toMatch(/nmi_lock/);
    expect(c0.symbol).toMatch(/queued_spin_lock_slowpath/);
    expect(c1.context).toEqual(['thread', 'stop_machine', 'NMI', '#BP']);
    expect(c1.holds).toEqual(['nmi_lock']);
    expect(c1.symbol).toBe('poke_int3_handler');
    expect(c1.waiting).toMatch(/text_poke_state\.state to leave PATCH_SYNC_0/);
    expect(r.cycleText[0]).toMatch(/CPU0 .* waits for CPU1: .*\(CPU1 holds nmi_lock\)/);
    // The unlock site is caught half-way: the int3 is still in it.
    const unlock = r.sites.find((s) => s.op === 'lock.queued_spin_unlock')!;
    expect(unlock.new[0]).toBe(0xcc);
    expect(unlock.verified).toBe(false);
  });

  it('nmi-deadlock-secondaries: the primary waits for CPU2, which spins on nmi_lock held by CPU1, which waits for the primary', () => {
    const r = run('nmi-deadlock-secondaries');
    expect(r.cycle).toEqual([0, 2, 1]);
    expect(r.cpus[0].waiting).toMatch(/acks for PATCH_SYNC_0/);
    expect(r.cpus[0].context).toEqual(['thread', 'stop_machine']);
    expect(r.cpus[2].context).toEqual(['thread', 'stop_machine', 'NMI']);
    expect(r.cpus[1].context).toEqual(['thread', 'stop_machine', 'NMI', '#BP']);
  });

  describe.each<FetchMode>(['coherent', 'stale'])('completed runs in the %s fetch mode', (mode) => {
    it.each(['nmi-safe-primary', 'nmi-safe-secondaries', 'batch-poke'])('%s: verified sites, exact counters, clean XMC', (name) => {
      const r = run(name, mode);
      expect(r.outcome).toBe('completed');
      for (const i of r.invariants) expect(`${i.name}: ${i.ok ? 'ok' : i.detail}`).toBe(`${i.name}: ok`);
      expect(r.sites.length).toBe(5);
      expect(r.sites.every((s) => s.verified)).toBe(true);
    });
  });

  it('nmi-safe runs inline the native unlock: c6 07 00 0f 1f 00 (movb $0,(%rdi); nopl (%rax))', () => {
    const r = run('nmi-safe-primary');
    const unlock = r.sites.find((s) => s.op === 'lock.queued_spin_unlock')!;
    expect(Buffer.from(unlock.new).toString('hex')).toBe('c607000f1f00');
    expect(unlock.newAsm).toBe('movb $0,(%rdi); nopl (%rax)');
    expect(unlock.oldAsm).toMatch(/^call 0x[0-9a-f]+ <__pv_queued_spin_unlock>; nop$/);
  });

  it('naive-poke: the XMC checker names the CPU, the site and the bytes another CPU wrote', () => {
    const r = run('naive-poke');
    expect(r.outcome).toBe('xmc-violation');
    const v = r.xmc[0];
    expect(v.cpu).not.toBe(0);
    expect(v.bytes.every((b) => b.writer === 0 && b.offset >= 1)).toBe(true);
  });
});

describe('the unknown-NMI path (default_do_nmi, nmi_reason_lock)', () => {
  it('unknown-nmi-deadlock: no NMI_LOCAL handler at all; CPU1 holds nmi_reason_lock in #BP, CPU0 spins on it in NMI', () => {
    const r = run('unknown-nmi-deadlock');
    expect(r.outcome).toBe('deadlock');
    expect(r.cycle).toEqual([0, 1]);
    const [c0, c1] = r.cpus;
    expect(c0.context).toEqual(['thread', 'stop_machine', 'NMI']);
    expect(c0.symbol).toMatch(/^(raw_spin_trylock|default_do_nmi)/);
    expect(c0.waiting).toMatch(/nmi_reason_lock/);
    expect(c1.context).toEqual(['thread', 'stop_machine', 'NMI', '#BP']);
    expect(c1.holds).toEqual(['nmi_reason_lock']);
    expect(r.cycleText[0]).toMatch(/CPU1 holds nmi_reason_lock/);
    expect(r.injections.map((i) => i.trigger)).toEqual([
      expect.stringMatching(/PATCH_SYNC_0/),
      expect.stringMatching(/default_do_nmi_reason_unlock/),
    ]);
  });

  it('unknown-nmi-safe: the same NMIs with nmi=true complete, and both were unknown NMIs', () => {
    const s = load('unknown-nmi-safe');
    const run2 = prepareScenario(s);
    const res = run2.m.run({ schedule: run2.schedule, maxSteps: run2.maxSteps });
    const r = explain(run2, res);
    expect(r.outcome).toBe('completed');
    expect(run2.m.mem.readU64(requireSymbol(run2.img, 'unknown_nmis'))).toBeGreaterThanOrEqual(2n);
    expect(run2.m.mem.readU64(requireSymbol(run2.img, 'nmi_lock_count'))).toBe(0n);
    expect(r.invariants.find((i) => i.name === 'nmi_reason_lock balanced')!.ok).toBe(true);
  });
});

describe('the seed\'s drawing: where the NMIs arrive', () => {
  it.each(['rfc', 'fixed'] as const)('nmi-deadlock-primary (%s): CPU1 inside text_poke_sync_site, CPU0 in __text_do_poke', (variant) => {
    const r = runScenario(load('nmi-deadlock-primary'), { variant });
    expect(r.outcome).toBe('deadlock');
    expect(r.cycle).toEqual([0, 1]);
    expect(r.injections.map((i) => i.trigger)).toEqual([
      'CPU1 entered text_poke_sync_site at the lock.queued_spin_unlock site',
      'CPU0 entered __text_do_poke in PATCH_SYNC_0 at the lock.queued_spin_unlock site',
    ]);
    // The thread context of each CPU is still where the NMI found it.
    expect(r.cpus[0].kernel).toEqual(['patch_worker', 'paravirt_worker', 'text_poke_site', 'poke_sync', '__text_do_poke']);
    expect(r.cpus[1].kernel).toEqual(['patch_worker', 'text_poke_sync_finish', 'text_poke_sync_site', 'poke_int3_native', 'text_poke_sync_site']);
  });

  it.each(['rfc', 'fixed'] as const)('nmi-deadlock-secondaries (%s): CPU1 inside text_poke_sync_site, the primary in wait_for_acks', (variant) => {
    const r = runScenario(load('nmi-deadlock-secondaries'), { variant });
    expect(r.cycle).toEqual([0, 2, 1]);
    expect(r.injections[0].trigger).toBe('CPU1 entered text_poke_sync_site at the lock.queued_spin_unlock site');
    expect(r.cpus[0].kernel.slice(-1)).toEqual(['wait_for_acks']);
    expect(r.cpus[1].kernel.slice(-3)).toEqual(['text_poke_sync_site', 'poke_int3_native', 'text_poke_sync_site']);
  });
});
