// Debian 13's Linux 6.12 (the pinned ABI): loads without a per-version table (layouts
// from its BTF), its paravirt sites are the ALT_FLAG_DIRECT_CALL alternatives, and the
// offline boot patch follows 6.12's rules for each --cpu profile. The 6.1 layout facts
// cross-check the BTF reader on Debian 12's kernel.

import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { layoutsFromBtf } from '../../kernel-model/image/btf-layout';
import { LAYOUTS_6_1, PV_OPS_6_1 } from '../../kernel-model/image/linux-6.1';
import { loadCpuProfile } from '../../kernel-model/image/cpu-profile';
import { bootPatchImage, type BootPatchResult } from '../../kernel-model/linux/boot-patch';
import { X86_NOPS_64 } from '../../kernel-model/linux/nops';
import { bootPatch612 } from '../../kernel-model/linux/alternatives-6.12';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const rel32 = (b: Uint8Array, at: bigint): bigint => at + 5n + BigInt(Buffer.from(b).readInt32LE(1));

describe('Linux 6.1 layouts from BTF', () => {
  let img: VmlinuxImage;
  beforeAll(async () => {
    const k = await testKernel('6.1');
    img = loadVmlinuxImage(k.vmlinux, k.systemMap);
  }, FETCH_TIMEOUT_MS);
  afterAll(() => img?.vm.close());

  it('match the 6.1 facts: alt_instr, paravirt_patch_site, the 84 pv_ops slot names, 24 capability words', () => {
    const L = layoutsFromBtf(img.vm.btf());
    expect(L.altInstr).toEqual(LAYOUTS_6_1.altInstr);
    expect(L.paraSite).toEqual(LAYOUTS_6_1.paraSite);
    expect(L.pvOpsSlots).toEqual([...PV_OPS_6_1]);
    expect(L.capabilityWords).toBe(24);
    expect(img.vm.release()).toBe('6.1');
    expect(img.siteSource).toBe('parainstructions');
  });

  it('boot patch applies every alternative, not only those at paravirt sites, for the --cpu profile', () => {
    const q = bootPatchImage(img, { cpu: 'qemu64' });
    const m = bootPatchImage(img, { cpu: 'max' });
    const clac = img.vm.altinstructions().find((a) => a.feature === 9 * 32 + 20 && hex(img.read(a.repl, 3)) === '0f01ca')!;
    expect(img.sites.some((s) => s.address < clac.instr + 3n && s.address + BigInt(s.len) > clac.instr)).toBe(false);
    expect(hex(q.read(clac.instr, 3))).toBe(hex(X86_NOPS_64[3]));
    expect(hex(m.read(clac.instr, 3))).toBe('0f01ca');
    expect(q.kinds!.alternative.sites).toBe(img.vm.altinstructions().length);
    expect(q.kinds!.fentry.changed).toBe(q.kinds!.fentry.sites);
    expect(q.runtime!.jump_label).toBeGreaterThan(1000);
  });
});

describe('Debian 6.12 vmlinux', () => {
  let img: VmlinuxImage;
  const boots = new Map<string, BootPatchResult>();
  const boot = (cpu: string): BootPatchResult => {
    let b = boots.get(cpu);
    if (!b) boots.set(cpu, (b = bootPatchImage(img, { cpu })));
    return b;
  };

  beforeAll(async () => {
    const k = await testKernel('6.12');
    expect(k.version).toBe('6.12.117+deb13-cloud-amd64');
    img = loadVmlinuxImage(k.vmlinux, k.systemMap);
  }, FETCH_TIMEOUT_MS);
  afterAll(() => img?.vm.close());

  it('reads its layouts from BTF: a 14-byte alt_instr with flags, no paravirt_patch_site, 83 pv_ops slots', () => {
    const L = img.vm.layouts();
    expect(img.vm.release()).toBe('6.12');
    expect(L.altInstr.size).toBe(14);
    expect(L.altInstr.flags).toMatchObject({ bitOffset: 80, bitSize: 16 });
    expect(L.paraSite).toBeNull();
    expect(img.pvOps.slots.length).toBe(83);
    // activate_mm and dup_mmap gave way to enter_mmap: every slot from mmu.pgd_alloc on moved by one.
    expect(img.pvOps.slots.indexOf('mmu.pgd_alloc')).toBe(PV_OPS_6_1.indexOf('mmu.pgd_alloc') - 1);
    expect(img.pvOps.slots.slice(-5)).toEqual(PV_OPS_6_1.slice(-5));
    expect(img.vm.capFlagNames()[4 * 32 + 31]).toBe('hypervisor');
    expect(() => img.vm.parainstructions()).toThrow(/no \.parainstructions \(since Linux 6\.8 paravirt call sites are alternatives with ALT_FLAG_DIRECT_CALL\)/);
  });

  it('finds its paravirt sites among the alternatives: one per DIRECT_CALL address, each `call *pv_ops[slot](%rip)`', () => {
    expect(img.siteSource).toBe('altinstructions');
    const direct = img.vm.altinstructions().filter((a) => a.directCall);
    expect(new Set(direct.map((a) => a.instr)).size).toBe(img.sites.length);
    expect(img.sites.length).toBeGreaterThan(3000);
    const unlock = img.symbols.resolve('_raw_spin_unlock')!;
    const s = img.sites.find((x) => x.address > unlock && x.address < unlock + 32n)!;
    expect(s.op).toBe('lock.queued_spin_unlock');
    const b = img.read(s.address, 6);
    expect(b[0] === 0xff && b[1] === 0x15).toBe(true);
    expect(BigInt.asUintN(64, s.address + 6n + BigInt(Buffer.from(b).readInt32LE(2)))).toBe(img.pvOps.address + 8n * BigInt(s.slot));
  });

  it('boot patch: DIRECT_CALL sites become `e8 rel32` + 0x90 to the slot, NOP6 for nop_func, native code where ALT_NOT(XENPV)', () => {
    const b = boot('qemu64');
    expect(b.rules).toBe('linux-6.12');
    const nop = img.symbols.resolve('nop_func')!;
    let calls = 0;
    let nops = 0;
    for (const s of b.sites) {
      const target = img.vm.readAt(img.pvOps.address + 8n * BigInt(s.site.slot), 8).readBigUInt64LE(0);
      if (s.form === 'call') {
        calls++;
        expect(s.final[0]).toBe(0xe8);
        expect(s.final[5]).toBe(0x90);
        expect(rel32(s.final, s.site.address)).toBe(target);
      } else if (s.form === 'nop') {
        nops++;
        expect(target).toBe(nop);
        expect(hex(s.final)).toBe(hex(X86_NOPS_64[6]));
      }
    }
    expect(calls).toBeGreaterThan(1000);
    expect(nops).toBeGreaterThan(10);
    const save = b.sites.find((s) => s.site.op === 'irq.save_fl')!;
    expect(hex(save.final)).toBe('9c58' + hex(X86_NOPS_64[4]));
  });

  it('an empty pv_ops slot calls BUG_func', () => {
    const b = bootPatchImage(img, { cpu: 'qemu64' });
    const site = b.sites.find((s) => s.form === 'call')!;
    const bug = img.symbols.resolve('BUG_func')!;
    // The same image with that slot emptied: through the 6.12 engine's slotValue.
    const p = loadCpuProfile('qemu64', '6.12');
    const e = bootPatch612(img, img.vm, { features: p.features, returnThunk: p.returnThunk, slotValue: (op) => (op === site.site.op ? 0n : undefined) });
    const got = e.sites.find((s) => s.site.address === site.site.address)!;
    expect(got.form).toBe('bug');
    expect(rel32(got.final, got.site.address)).toBe(bug);
  });

  it('follows the CPU: SMAP alternatives (clac) only where the profile has smap; every table counted', () => {
    const q = boot('qemu64');
    const m = boot('max');
    const clac = img.vm.altinstructions().find((a) => a.feature === 9 * 32 + 20 && hex(img.read(a.repl, 3)) === '0f01ca')!;
    expect(hex(q.read(clac.instr, 3))).toBe(hex(X86_NOPS_64[3]));
    expect(hex(m.read(clac.instr, 3))).toBe('0f01ca');
    for (const k of [q, m]) {
      expect(k.kinds!.fentry.changed).toBe(k.kinds!.fentry.sites);
      expect(k.kinds!.fentry.sites).toBeGreaterThan(40000);
      expect(k.kinds!.endbr.changed).toBe(k.kinds!.endbr.sites);
      expect(k.runtime!.jump_label).toBeGreaterThan(1000);
      expect(k.runtime!.static_call).toBeGreaterThan(1000);
    }
  });

  it('return thunks: ret + int3 without RETHUNK; its_return_thunk in the lower half of each cache line on Skylake', () => {
    const q = boot('qemu64');
    const s = boot('Skylake-Client');
    const its = img.symbols.resolve('its_return_thunk')!;
    const fn = img.symbols.resolve('_raw_spin_unlock')!;
    // _raw_spin_unlock ends in `jmp __x86_return_thunk` (a return site) at +0x18 and +0x22.
    for (const off of [0x18n, 0x22n]) {
      const at = fn + off;
      expect(hex(q.read(at, 5))).toBe('c3cccccccc');
      const sk = s.read(at, 5);
      if ((at & 0x20n) === 0n) expect(rel32(sk, at)).toBe(its);
      else expect(hex(sk)).toBe('c3cccccccc');
    }
    // An alternative copies its replacement after apply_returns patched it (__memmove's
    // `rep movsb; ret` for FSRM, which qemu64 lacks and max and Skylake have).
    const mm = img.symbols.resolve('__memmove')! + 0x1bn;
    expect(hex(boot('max').read(mm, 20)).endsWith('f3a4c3cccccccc')).toBe(true);
    expect(rel32(s.read(mm + 15n, 5), mm + 15n)).toBe(its);
    expect(hex(q.read(mm + 10n, 10))).toBe(hex(X86_NOPS_64[10]));
  });
});
