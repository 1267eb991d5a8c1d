// Shared setup for tests on the real Debian kernels: makes sure the release's pinned
// kernel is in .cache/kernel (downloading it on a fresh machine, a quick manifest
// check otherwise) and returns its files. Call from beforeAll with a long timeout.
// Also what every release's lock-op switch and seed's deadlock must show.

import { downloadKernel, type KernelFiles } from '../../kernel-model/image/download';
import type { ReleaseName } from '../../kernel-model/image/releases';
import type { RunReport } from '../../kernel-model/scenario/run';
import type { KernelImage } from '../../kernel-model/image/kernel-image';
import { runtimePatch, type RuntimePatchResult } from '../../kernel-model/scenario/runtime-patch';
import type { OpChange, Protocol } from '../../kernel-model/linux/kernel-model';

const pending = new Map<ReleaseName, Promise<KernelFiles>>();

export function testKernel(release: ReleaseName = '6.1'): Promise<KernelFiles> {
  let p = pending.get(release);
  if (!p) {
    p = downloadKernel({ release, log: (s) => process.stderr.write(`test kernel ${release}: ${s}\n`) });
    pending.set(release, p);
  }
  return p;
}

/** Timeout for a beforeAll that may download ~350 MB. */
export const FETCH_TIMEOUT_MS = 30 * 60 * 1000;

/**
 * The seed's deadlock on a real kernel: CPU1 waits in #BP at `site` (the unlock's
 * paravirt site) inside its NMI holding nmi_lock, and CPU0, in NMI inside stop_machine,
 * spins on that qspinlock in the kernel's own slow path.
 */
export function expectSeedDeadlock(r: RunReport, site: string): void {
  expect(r.expectation?.ok).toBe(true);
  expect(r.cycle).toEqual([0, 1]);
  expect(r.cpus[1].context).toEqual(['thread', 'stop_machine', 'NMI', '#BP']);
  expect(r.cpus[1].status).toBe(`#BP at ${site}`);
  expect(r.cpus[1].holds).toEqual(['nmi_lock']);
  expect(r.cpus[0].context).toEqual(['thread', 'stop_machine', 'NMI']);
  expect(r.cpus[0].symbol).toMatch(/^native_queued_spin_lock_slowpath\+0x/);
}

/** The lock ops a paravirt guest boots with their pv implementations, and switches to native. */
export const LOCK_SWITCH_OPS = ['lock.queued_spin_unlock', 'lock.vcpu_is_preempted'];

/**
 * Boots `img` as a paravirt guest for LOCK_SWITCH_OPS, switches them to native at run
 * time on `cpus` CPUs, and checks the run completed with every site of those ops
 * patched and verified and every invariant holding.
 */
export function switchLockOpsToNative(img: KernelImage, cpus: number, protocol: Protocol, nmi: boolean): RuntimePatchResult {
  const ops: OpChange[] = LOCK_SWITCH_OPS.map((op) => ({ op, mode: 'native' }));
  const bootOps: OpChange[] = LOCK_SWITCH_OPS.map((op) => ({ op, mode: 'paravirt' }));
  const r = runtimePatch(img, { ops, protocol, nmi, cpus, bootOps, iterations: 6, variant: 'fixed' });
  expect(r.report.outcome).toBe('completed');
  expect(r.report.sites.length).toBe(img.sites.filter((s) => LOCK_SWITCH_OPS.includes(s.op)).length);
  for (const s of r.report.sites) expect(`${s.op}@${s.address.toString(16)}: ${s.verified}`).toBe(`${s.op}@${s.address.toString(16)}: true`);
  for (const i of r.report.invariants) expect(`${i.name}: ${i.ok}`).toBe(`${i.name}: true`);
  return r;
}
