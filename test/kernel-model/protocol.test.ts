// The protocols' steps on their own: poke_sync's order and acknowledgements, the #BP
// handler on a secondary and on the primary, the NMI_LOCAL chain order while NMI-mode
// patching runs, and the primary's self-NMI through the APIC ICR.

import { loadScenario, type Scenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, explain, type ScenarioRun } from '../../kernel-model/scenario/run';
import { nmiHandlers } from '../../kernel-model/linux/nmi-chain';
import type { Probe } from '../../emu/probe';
import type { Cpu } from '../../emu/cpu';
import type { Insn } from '../../emu/insn';
import { join } from 'path';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');
const LOCK_UNLOCK_ONLY = { ops: [{ op: 'lock.queued_spin_unlock', mode: 'native' as const }] };

/** Records host-routine steps (what each did) and delivered events, per CPU. */
class Recorder implements Probe {
  readonly host: { cpu: number; step: number; what: string }[] = [];
  readonly events: { cpu: number; vector: number; step: number; rip: bigint }[] = [];
  readonly executed: { cpu: number; address: bigint; name: string }[] = [];
  constructor(private readonly watch: bigint | null = null) {}
  onStep(cpu: Cpu, ins: Insn): void {
    const top = cpu.hostFrames[cpu.hostFrames.length - 1];
    if (top && ins.address === top.binding.address) {
      this.host.push({ cpu: cpu.id, step: cpu.machine.currentStep(cpu), what: top.last });
    }
    if (this.watch !== null && ins.address === this.watch) this.executed.push({ cpu: cpu.id, address: ins.address, name: ins.name });
  }
  onEvent(cpu: Cpu, vector: number): void {
    this.events.push({ cpu: cpu.id, vector, step: cpu.machine.currentStep(cpu), rip: cpu.rip });
  }
}

function scenario(base: string, edit: (s: Scenario) => void): Scenario {
  const s = loadScenario(join(DIR, `${base}.json`));
  edit(s);
  return s;
}

function runWith(s: Scenario, rec: Recorder, variant: 'rfc' | 'fixed' = 'rfc'): { run: ScenarioRun; report: ReturnType<typeof explain> } {
  const run = prepareScenario(s, { probe: rec, variant });
  const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
  return { run, report: explain(run, r) };
}

describe('poke_sync', () => {
  const plain = scenario('nmi-safe-primary', (s) => {
    s.patch = { ...s.patch!, ...LOCK_UNLOCK_ONLY, nmi: false };
    s.inject = [];
  });

  function primarySteps(variant: 'rfc' | 'fixed'): string[] {
    const rec = new Recorder();
    const { report } = runWith(plain, rec, variant);
    expect(report.outcome).toBe('completed');
    return rec.host.filter((h) => h.cpu === 0).map((h) => h.what);
  }

  it('rfc order: write the bytes, publish the state, clear the acks, serialize, ack and wait', () => {
    const steps = primarySteps('rfc');
    const i = steps.findIndex((w) => /state = PATCH_SYNC_1/.test(w));
    expect(i).toBeGreaterThan(0);
    expect(steps[i - 1]).toMatch(/PATCH_SYNC_1 bytes/); // the last tail byte
    expect(steps[i + 1]).toMatch(/cpumask_clear/);
    expect(steps[i + 2]).toMatch(/^read /); // in_nmi()
    expect(steps[i + 3]).toBe('sync_core');
    expect(steps[i + 4]).toMatch(/^lock or .*text_poke_state/);
  });

  it('fixed order: publish the state and count the step; nothing is cleared (an ack names its step)', () => {
    const steps = primarySteps('fixed');
    const i = steps.findIndex((w) => /state = PATCH_SYNC_1/.test(w));
    expect(steps[i - 1]).toMatch(/PATCH_SYNC_1 bytes/);
    expect(steps[i + 1]).toMatch(/^lock xadd text_poke_state\+0x14: /); // seq
    expect(steps.some((w) => /cpumask_clear/.test(w))).toBe(false);
  });

  it('every CPU acknowledges every step: each slot names the last step when the primary moves on', () => {
    const rec = new Recorder();
    const { run } = runWith(plain, rec, 'fixed');
    const acks = (cpu: number): string[] => rec.host.filter((h) => h.cpu === cpu && /^write text_poke_state\+0x\w+ = 0x\w+ \(acked\[/.test(h.what)).map((h) => h.what);
    // Rendezvous + 4 poke_syncs + PATCH_DONE are counted steps: 6 with the rendezvous
    // (PATCH_DONE is not acknowledged). The primary acknowledges each of the 5 it waits
    // for; CPU1 each of the same 5, exactly once.
    expect(acks(0)).toHaveLength(5);
    expect(acks(1)).toHaveLength(5);
    const seq = run.m.mem.readU32(run.k.L.tps.seq);
    expect(seq).toBe(6);
    expect(run.m.mem.readU32(run.k.L.tps.acked)).toBe(5);
    expect(run.m.mem.readU32(run.k.L.tps.acked + 4n)).toBe(5);
  });
});

describe('#BP on a site under patch', () => {
  it('a secondary waits in text_poke_sync_site, then re-runs the site, now the new instruction', () => {
    const s = scenario('nmi-deadlock-primary', (x) => {
      x.inject = [x.inject[0]]; // CPU1's NMI only: it hits the int3; nothing stops the primary
    });
    const img = prepareScenario(s).img;
    const site = img.sites.find((x) => x.op === 'lock.queued_spin_unlock')!.address;
    const rec = new Recorder(site);
    const { report } = runWith(s, rec, 'fixed');
    expect(report.outcome).toBe('completed');
    const bp = rec.events.filter((e) => e.cpu === 1 && e.vector === 3);
    expect(bp.length).toBe(1);
    const waited = rec.host.filter((h) => h.cpu === 1 && h.step > bp[0].step && /waiting: text_poke_state\.state/.test(h.what));
    expect(waited.length).toBeGreaterThan(0);
    // After the #BP, CPU1 executes the finished site: the new movb, not the int3 again.
    const after = rec.executed.filter((e) => e.cpu === 1 && rec.events.length && e.address === site);
    expect(after[after.length - 1].name).toBe('mov');
  });

  it('as the series wrote it, that secondary then never acknowledges the PATCH_SYNC_DONE step (a finding)', () => {
    // Its thread context waits for the state to leave PATCH_SYNC_DONE; the NMI saw the
    // whole site through, so the state is PATCH_SYNC_DONE again, for a step it missed.
    // So the NMI comes as the state becomes PATCH_SYNC_0, while CPU1 still waits in
    // text_poke_sync_finish (not yet in text_poke_sync_site, where the demo's comes).
    const s = scenario('nmi-deadlock-primary', (x) => {
      x.inject = [{ action: { nmi: 1 }, when: { state: 'PATCH_SYNC_0', site: 'lock.queued_spin_unlock' }, times: 1 }];
    });
    const { report } = runWith(s, new Recorder(), 'rfc');
    expect(report.outcome).toBe('deadlock');
    expect(report.cycle).toEqual([0, 1]);
    expect(report.cpus[0].waiting).toMatch(/acks for PATCH_SYNC_DONE/);
    expect(report.cpus[1].context).toEqual(['thread', 'stop_machine']);
    expect(report.cpus[1].waiting).toMatch(/leave PATCH_SYNC_DONE/);
    expect(report.cpus[1].holds).toEqual([]);
  });

  it('the primary that hits its own int3 (from an NMI) finishes the site itself and goes on', () => {
    const s = scenario('nmi-deadlock-primary', (x) => {
      x.inject = [{ action: { nmi: 0 }, when: { state: 'PATCH_SYNC_0', site: 'lock.queued_spin_unlock' }, times: 1 }];
    });
    const rec = new Recorder();
    const { report } = runWith(s, rec, 'fixed');
    expect(report.outcome).toBe('completed');
    expect(rec.events.some((e) => e.cpu === 0 && e.vector === 3)).toBe(true);
    const own = rec.host.filter((h) => h.cpu === 0 && /primary finishes its own site/.test(h.what));
    expect(own.length).toBeGreaterThan(0);
  });
});

describe('NMI mode', () => {
  it('registers text_poke_nmi first on NMI_LOCAL while patching, and removes it afterwards', () => {
    const s = loadScenario(join(DIR, 'nmi-safe-primary.json'));
    const run = prepareScenario(s);
    const L = run.k.L;
    const at = (n: string): bigint => run.img.symbols.resolve(n)!;
    let during: bigint[] = [];
    run.m.mem.watch(L.tps.state, 4, () => {
      if (run.m.mem.readU32(L.tps.state) === 4 && during.length === 0) during = nmiHandlers(run.k);
    });
    const before = nmiHandlers(run.k);
    run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
    expect(before).toEqual([at('nmi_lock_handler')]);
    expect(during).toEqual([at('text_poke_nmi'), at('nmi_lock_handler')]);
    expect(nmiHandlers(run.k)).toEqual([at('nmi_lock_handler')]);
  });

  it('the primary sends itself an NMI through the x2APIC ICR, by its own APIC ID, and does the work in it', () => {
    const s = scenario('nmi-safe-primary', (x) => {
      x.inject = [];
    });
    const rec = new Recorder();
    const { run, report } = runWith(s, rec, 'fixed');
    expect(report.outcome).toBe('completed');
    // Delivery mode NMI (4 << 8), no shorthand, destination APIC ID 0 in bits 63:32.
    const icr = rec.host.find((h) => h.cpu === 0 && h.what === 'wrmsr 0x830 = 0x400')!;
    expect(icr).toBeDefined();
    const nmi = rec.events.find((e) => e.cpu === 0 && e.vector === 2 && e.step >= icr.step)!;
    expect(nmi.step - icr.step).toBeLessThanOrEqual(1);
    const work = rec.host.filter((h) => h.cpu === 0 && /state = PATCH_SYNC_0/.test(h.what));
    expect(work.length).toBe(5); // one per site, all inside that NMI
    expect(work[0].step).toBeGreaterThan(nmi.step);
    expect(run.m.cpu(0).apic.icrLo & 0x700).toBe(0x400);
  });
});
