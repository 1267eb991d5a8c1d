// Running Debian 13's Linux 6.12 on the emulated machine: the vmlinux harness boots it
// by 6.12's own rules (return thunks, ALT_FLAG_DIRECT_CALL paravirt calls, the
// ALT_NOT(PVUNLOCK) inline stores) as a paravirt guest, switches its lock ops to
// native at run time with both protocols, and reaches the seed's deadlock on its own
// _raw_spin_unlock (and completes with the NMI-safe patch). The sites' final bytes are
// checked against the same kernel booted natively in QEMU: what 6.12 itself wrote there.

import { join } from 'path';
import { testKernel, FETCH_TIMEOUT_MS, expectSeedDeadlock, switchLockOpsToNative, LOCK_SWITCH_OPS } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { bootDump, bootDumpKernel, readDumpText } from '../../kernel-model/image/boot-dump';
import { withHarness, bootVmlinux } from '../../kernel-model/scenario/boot-vmlinux';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { runScenario } from '../../kernel-model/scenario/run';
import { PvOps } from '../../kernel-model/linux/pv-ops';
import type { OpChange, Protocol } from '../../kernel-model/linux/kernel-model';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const SCENARIOS = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios', 'kernel');
const GUEST_BOOT: OpChange[] = LOCK_SWITCH_OPS.map((op) => ({ op, mode: 'paravirt' }));

let img: VmlinuxImage;
/** .text of the same kernel booted natively in QEMU (-cpu qemu64): address -> its bytes there. */
let booted: (address: bigint, len: number) => string;

beforeAll(async () => {
  const k = await testKernel('6.12');
  img = loadVmlinuxImage(k.vmlinux, k.systemMap);
  const t = readDumpText(await bootDump(bootDumpKernel(k, img.vm), { cpu: 'qemu64' }));
  booted = (a, n) => hex(t.bytes.subarray(Number(a - t.address), Number(a - t.address) + n));
}, FETCH_TIMEOUT_MS);
afterAll(() => img?.vm.close());

const lockSites = (): { address: bigint; len: number; op: string }[] => img.sites.filter((s) => LOCK_SWITCH_OPS.includes(s.op) && s.address < img.vm.symbol('_etext'));

describe('the vmlinux harness boots 6.12 by its own rules', () => {
  it('as a paravirt guest: the lock sites are direct calls to the pv implementations; per_cpu_ptr reaches every CPU', () => {
    const k = withHarness(img);
    const pv = new PvOps(k);
    const slots = new Map(GUEST_BOOT.map((c) => [c.op, pv.target(c.op, c.mode)]));
    const m = bootVmlinux(k, { cpus: 3, work: [], bootSlots: slots });
    const unlock = img.vm.symbol('_raw_spin_unlock');
    // endbr64, then ftrace_init's NOP5 where `call __fentry__` was, then the site.
    expect(hex(m.mem.readBytes(unlock, 9))).toBe('f30f1efa0f1f440000');
    const site = img.sites.find((s) => s.address === unlock + 9n)!;
    expect(site.op).toBe('lock.queued_spin_unlock');
    const b = m.mem.readBytes(site.address, 6);
    expect(b[0]).toBe(0xe8);
    expect(k.symbols.format(site.address + 5n + BigInt(Buffer.from(b).readInt32LE(1)))).toBe('__raw_callee_save___pv_queued_spin_unlock');
    // No return left to the default thunk: since 6.9 that thunk is `jmp warn_thunk_thunk`.
    expect(hex(m.mem.readBytes(unlock + 0x18n, 2))).toBe('c3cc');
    // setup_per_cpu_areas(): the qspinlock's MCS queue reaches a predecessor's qnode through it.
    const off = img.vm.symbol('__per_cpu_offset');
    for (const c of m.cpus) expect(m.mem.readU64(off + 8n * BigInt(c.id))).toBe(k.percpuBase(c.id));
  });
});

describe('runtime switch of the lock ops on 6.12', () => {
  const cases: [number, Protocol, boolean][] = [
    [2, 'stop-machine', false],
    [2, 'stop-machine', true],
    [8, 'batch', false],
    [64, 'stop-machine', true],
  ];
  it.each(cases)('%i CPUs, %s, nmi=%s: every site of the ops patched, verified, and what 6.12 booted natively holds', (cpus, protocol, nmi) => {
    const r = switchLockOpsToNative(img, cpus, protocol, nmi);
    const sites = lockSites();
    expect(sites.length).toBeGreaterThan(40);
    if (protocol === 'stop-machine') {
      // text_poke_late writes what boot patching would: the inline native forms, byte for byte as QEMU's boot left them.
      for (const s of sites) expect(`${s.op}@${s.address.toString(16)}: ${hex(r.writes.get(s.address)!)}`).toBe(`${s.op}@${s.address.toString(16)}: ${booted(s.address, s.len)}`);
      expect(booted(img.vm.symbol('_raw_spin_unlock') + 9n, 6)).toBe('c607000f1f00');
    } else {
      // int3 emulation can only stand in for a call: the native thunks, called.
      for (const s of sites) expect(r.writes.get(s.address)![0]).toBe(0xe8);
    }
  });
});

describe("the seed's deadlock on 6.12's own spinlock code", () => {
  it('nmi=false: CPU1 waits in #BP at _raw_spin_unlock+9 holding a real qspinlock; CPU0 spins on it in NMI', () => {
    expectSeedDeadlock(runScenario(loadScenario(join(SCENARIOS, 'real-6.12-nmi-deadlock-primary.json')), { image: img }), '_raw_spin_unlock+0x9');
  });

  it('nmi=true: the same schedule and NMIs complete; every site verifies, counters exact', () => {
    const r = runScenario(loadScenario(join(SCENARIOS, 'real-6.12-nmi-safe-primary.json')), { image: img });
    expect(r.outcome).toBe('completed');
    expect(r.sites.length).toBeGreaterThan(40);
    for (const s of r.sites) expect(s.verified).toBe(true);
    for (const i of r.invariants) expect(`${i.name}: ${i.ok}`).toBe(`${i.name}: true`);
  });

  it('the batch protocol retargets the call sites while four CPUs contend for the kernel qspinlock', () => {
    const r = runScenario(loadScenario(join(SCENARIOS, 'real-6.12-batch-poke.json')), { image: img });
    expect(r.expectation?.detail).toBe('as expected');
  });
});
