// Patching Debian's 6.1 kernel: boot-time patching offline by the kernel's rules,
// runtime patching of its lock ops on 2 to 64 emulated CPUs with both protocols,
// and the seed's deadlock and its fix on the kernel's own spinlock code.

import { join } from 'path';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { testKernel, FETCH_TIMEOUT_MS, expectSeedDeadlock, switchLockOpsToNative } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { bootPatch61, bootPatchCounts, type BootPatch } from '../../kernel-model/linux/alternatives-6.1';
import { X86_NOPS } from '../../kernel-model/linux/nops';
import { runtimePatch } from '../../kernel-model/scenario/runtime-patch';
import { writePatchedImage } from '../../kernel-model/image/write';
import { bootPatchImage } from '../../kernel-model/linux/boot-patch';
import { verifyImage } from '../../kernel-model/linux/verify-image';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { runScenario } from '../../kernel-model/scenario/run';
import type { Protocol } from '../../kernel-model/linux/kernel-model';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const SCENARIOS = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios', 'kernel');

let img: VmlinuxImage;
let boot: BootPatch;

beforeAll(async () => {
  const k = await testKernel();
  img = loadVmlinuxImage(k.vmlinux, k.systemMap);
  boot = bootPatch61(img, { alternatives: img.vm.altinstructions() });
}, FETCH_TIMEOUT_MS);

function readU64(a: bigint): bigint {
  const b = img.read(a, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

describe('boot-time patching by Linux 6.1 rules', () => {
  it('accounts for every paravirt site', () => {
    expect(boot.sites.length).toBe(img.sites.length);
    const counts = bootPatchCounts(boot);
    expect(counts.byForm.call + counts.byForm.nop + counts.byForm.inline + counts.byForm.bug).toBe(img.sites.length);
    expect(counts.byForm.bug).toBe(0);
  });

  it('irq.irq_disable sites become fa plus a 5-byte NOP', () => {
    const s = boot.sites.filter((x) => x.site.op === 'irq.irq_disable');
    expect(s.length).toBeGreaterThan(100);
    for (const x of s) expect(hex(x.final)).toBe('fa' + hex(X86_NOPS[5]));
  });

  it('lock.queued_spin_unlock sites become c6 07 00 plus a 3-byte NOP', () => {
    const s = boot.sites.filter((x) => x.site.op === 'lock.queued_spin_unlock');
    expect(s.length).toBeGreaterThan(10);
    for (const x of s) expect(hex(x.final)).toBe('c60700' + hex(X86_NOPS[3]));
  });

  it('ops with no inline form become a direct call to the pv_ops target plus 90', () => {
    const s = boot.sites.filter((x) => x.site.op === 'cpu.read_msr' || x.site.op === 'lock.queued_spin_lock_slowpath');
    expect(s.length).toBeGreaterThan(100);
    for (const x of s) {
      expect(x.final[0]).toBe(0xe8);
      expect(x.final[5]).toBe(0x90);
      const rel = new DataView(x.final.buffer, x.final.byteOffset).getInt32(1, true);
      const target = BigInt.asUintN(64, x.site.address + 5n + BigInt(rel));
      expect(target).toBe(readU64(img.pvOps.address + 8n * BigInt(x.site.slot)));
    }
  });

  it('ops whose target is the paravirt no-op become a 6-byte NOP', () => {
    const s = boot.sites.filter((x) => x.site.op === 'lock.wait' || x.site.op === 'mmu.alloc_pte');
    expect(s.length).toBeGreaterThan(5);
    for (const x of s) expect(hex(x.final)).toBe(hex(X86_NOPS[6]));
  });

  it('a boot-patched image written to disk verifies; the original does not', () => {
    const dir = mkdtempSync(join(tmpdir(), 'textpoke-boot-'));
    try {
      checkBootPatchedCopy(join(dir, 'vmlinux.booted'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Writes a boot-patched copy of the kernel to `out`, reloads it and verifies it. */
function checkBootPatchedCopy(out: string): void {
  writePatchedImage(img, bootPatchImage(img).writes, out);
  const patched = loadVmlinuxImage(out, join(img.path, '..', 'System.map'));
  const v = verifyImage(patched, { against: img });
  expect(v.mismatches).toBe(0);
  expect(v.sites.every((s) => s.changed)).toBe(true);
  expect(verifyImage(img).ok).toBe(false);
  // Same layout: only site bytes changed.
  expect(readFileSync(out).length).toBe(readFileSync(img.path).length);
}

describe('runtime patching of the lock ops on the emulated machine', () => {
  const cases: [number, Protocol, boolean][] = [
    [2, 'stop-machine', false],
    [2, 'stop-machine', true],
    [2, 'batch', false],
    [8, 'stop-machine', true],
    [8, 'batch', false],
    [64, 'stop-machine', false],
    [64, 'stop-machine', true],
    [64, 'batch', false],
  ];
  it.each(cases)('%i CPUs, %s, nmi=%s: every site of the ops patched and verified', (cpus, protocol, nmi) => {
    switchLockOpsToNative(img, cpus, protocol, nmi);
  });

  it('the batch protocol refuses to replace inline code (it can only emulate a call or NOP)', () => {
    expect(() => runtimePatch(img, { ops: [{ op: 'lock.queued_spin_unlock', mode: 'paravirt' }], protocol: 'batch', cpus: 2 })).toThrow(
      /batch protocol cannot patch lock\.queued_spin_unlock .*movb \$0,\(%rdi\)/,
    );
  });
});

describe("the seed's deadlock on the kernel's own spinlock code", () => {
  it('nmi=false: CPU1 waits in #BP at _raw_spin_unlock+5 holding a real qspinlock; CPU0 spins on it in NMI', () => {
    expectSeedDeadlock(runScenario(loadScenario(join(SCENARIOS, 'real-nmi-deadlock-primary.json'))), '_raw_spin_unlock+0x5');
  });

  it('nmi=true: the same schedule and NMIs complete; every site verifies, counters exact', () => {
    const r = runScenario(loadScenario(join(SCENARIOS, 'real-nmi-safe-primary.json')));
    expect(r.outcome).toBe('completed');
    for (const i of r.invariants) expect(`${i.name}: ${i.ok}`).toBe(`${i.name}: true`);
  });

  it('the batch protocol retargets the call sites while four CPUs run the kernel code', () => {
    const r = runScenario(loadScenario(join(SCENARIOS, 'real-batch-poke.json')));
    expect(r.expectation?.ok).toBe(true);
  });
});
