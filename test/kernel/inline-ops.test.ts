// The bytes Linux 6.1 boot patching leaves at every site of the 19 pv ops it inlines
// on bare metal, pinned from the kernel's own sources and not from textpoke's code:
// each op's ALTERNATIVE replacement string in arch/x86/include/asm/paravirt.h,
// assembled here by hand from the SDM's encodings, padded the way 6.1's
// optimize_nops() pads (a run of two or more 0x90 becomes the x86_nops of
// arch/x86/include/asm/nops.h; a single 0x90 stays). Sources and the encodings:
// docs/notes/linux-6.1-inline-ops.md.
//
// A boot patch that kept the call for any of these ops (irq.save_fl has 446 sites),
// or padded with other NOPs, fails here. Until a QEMU boot of the same kernel gives
// ground truth, this is the independent check.

import { join } from 'path';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { bootPatchImage } from '../../kernel-model/linux/boot-patch';
import { writePatchedImage } from '../../kernel-model/image/write';

/** The replacement of each op's ALTERNATIVE(…, ALT_NOT(feature)) in 6.1, as bytes. */
const INLINE_6_1: Record<string, { asm: string; bytes: string }> = {
  'cpu.wbinvd': { asm: 'wbinvd', bytes: '0f 09' },
  'irq.save_fl': { asm: 'pushf; pop %rax', bytes: '9c 58' },
  'irq.irq_disable': { asm: 'cli', bytes: 'fa' },
  'irq.irq_enable': { asm: 'sti', bytes: 'fb' },
  'mmu.read_cr2': { asm: 'mov %cr2, %rax', bytes: '0f 20 d0' },
  'mmu.read_cr3': { asm: 'mov %cr3, %rax', bytes: '0f 20 d8' },
  'mmu.write_cr3': { asm: 'mov %rdi, %cr3', bytes: '0f 22 df' },
  'mmu.pte_val': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.make_pte': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.pgd_val': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.make_pgd': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.pmd_val': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.make_pmd': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.pud_val': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.make_pud': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.p4d_val': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'mmu.make_p4d': { asm: 'mov %rdi, %rax', bytes: '48 89 f8' },
  'lock.queued_spin_unlock': { asm: 'movb $0, (%rdi)', bytes: 'c6 07 00' },
  'lock.vcpu_is_preempted': { asm: 'xor %rax, %rax', bytes: '48 31 c0' },
};

/** x86_nops[n] for 64-bit, arch/x86/include/asm/nops.h (BYTES_NOP1 … BYTES_NOP8). */
const NOPS = ['', '90', '66 90', '0f 1f 00', '0f 1f 40 00', '0f 1f 44 00 00', '66 0f 1f 44 00 00', '0f 1f 80 00 00 00 00', '0f 1f 84 00 00 00 00 00'];

/** optimize_nops(): a single trailing 0x90 stays; a longer run is add_nops() (longest first). */
function padding(n: number): string[] {
  if (n <= 1) return n === 1 ? ['90'] : [];
  const out: string[] = [];
  for (let left = n; left > 0; left -= Math.min(left, 8)) out.push(NOPS[Math.min(left, 8)]);
  return out;
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

let img: VmlinuxImage;
let booted: VmlinuxImage;
let dir: string;

beforeAll(async () => {
  const k = await testKernel();
  img = loadVmlinuxImage(k.vmlinux, k.systemMap);
  // Through the whole path a user takes: boot-patch, write the ELF, read it back.
  dir = mkdtempSync(join(tmpdir(), 'textpoke-inline-'));
  const out = join(dir, 'vmlinux.booted');
  writePatchedImage(img, bootPatchImage(img).writes, out);
  booted = loadVmlinuxImage(out, k.systemMap);
}, FETCH_TIMEOUT_MS);

afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

describe('Linux 6.1 boot patching inlines 19 pv ops on bare metal, byte for byte', () => {
  it('the table names 19 ops, each with sites in the kernel', () => {
    expect(Object.keys(INLINE_6_1)).toHaveLength(19);
    for (const op of Object.keys(INLINE_6_1)) expect(`${op}: ${img.sites.filter((s) => s.op === op).length > 0}`).toBe(`${op}: true`);
  });

  it.each(Object.keys(INLINE_6_1))('%s: every site holds the replacement, then the kernel NOPs', (op) => {
    const sites = img.sites.filter((s) => s.op === op);
    const want = INLINE_6_1[op].bytes.split(' ').length;
    const wrong: string[] = [];
    for (const s of sites) {
      const expected = [INLINE_6_1[op].bytes, ...padding(s.len - want)].join(' ');
      const got = hex(booted.read(s.address, s.len));
      if (got !== expected) wrong.push(`0x${s.address.toString(16)}: ${got} (want ${expected})`);
    }
    expect(wrong.slice(0, 5)).toEqual([]);
    // The original held the indirect call through pv_ops (ff 15 rel32): the bytes changed.
    for (const s of sites.slice(0, 3)) expect(hex(img.read(s.address, 2))).toBe('ff 15');
  });

  it('padding follows optimize_nops(): one 0x90 stays, longer runs become x86_nops', () => {
    expect(padding(1)).toEqual(['90']);
    expect(padding(3)).toEqual(['0f 1f 00']);
    expect(padding(5)).toEqual(['0f 1f 44 00 00']);
    expect(padding(11)).toEqual(['0f 1f 84 00 00 00 00 00', '0f 1f 00']);
  });
});
