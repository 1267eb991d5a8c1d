// The BTF reader on a hand-made .BTF: ints, a typedef, a struct with an anonymous
// union of bitfields (the 6.12 struct alt_instr), a nested ops struct and a one-pointer
// wrapper (paravirt_patch_template's shape), arrays; and its errors.

import { BtfKind, parseBtf } from '../kernel-model/image/btf';
import { layoutsFromBtf, readField } from '../kernel-model/image/btf-layout';
import { LoadError } from '../kernel-model/image/elf';

/** Builds a .BTF section from type records (each a list of u32 words) and names. */
class BtfBuilder {
  private strs = [0];
  private words: number[] = [];
  private n = 0;
  str(s: string): number {
    const off = this.strs.length;
    this.strs.push(...Buffer.from(s, 'latin1'), 0);
    return off;
  }
  add(name: string, kind: BtfKind, vlen: number, sizeOrType: number, extra: number[] = [], kflag = false): number {
    this.words.push(name ? this.str(name) : 0, ((kflag ? 1 : 0) << 31) | (kind << 24) | vlen, sizeOrType, ...extra);
    return ++this.n;
  }
  int(name: string, size: number, signed: boolean): number {
    return this.add(name, BtfKind.Int, 0, size, [((signed ? 1 : 0) << 24) | (size * 8)]);
  }
  struct(name: string, size: number, members: [string, number, number, number?][], union = false): number {
    const kflag = members.some((m) => m[3] !== undefined);
    const extra = members.flatMap(([n, t, bit, width]) => [n ? this.str(n) : 0, t, kflag ? ((width ?? 0) << 24) | bit : bit]);
    return this.add(name, union ? BtfKind.Union : BtfKind.Struct, members.length, size, extra, kflag);
  }
  build(): Uint8Array {
    const types = Buffer.alloc(this.words.length * 4);
    this.words.forEach((w, i) => types.writeUInt32LE(w >>> 0, i * 4));
    const strs = Buffer.from(this.strs);
    const hdr = Buffer.alloc(24);
    hdr.writeUInt16LE(0xeb9f, 0);
    hdr[2] = 1;
    hdr.writeUInt32LE(24, 4);
    hdr.writeUInt32LE(0, 8);
    hdr.writeUInt32LE(types.length, 12);
    hdr.writeUInt32LE(types.length, 16);
    hdr.writeUInt32LE(strs.length, 20);
    return Buffer.concat([hdr, types, strs]);
  }
}

/** A kernel-shaped BTF: 6.12's alt_instr, a two-group paravirt_patch_template, cpuinfo_x86. */
function kernelLikeBtf(): Uint8Array {
  const b = new BtfBuilder();
  const s32 = b.int('int', 4, true);
  const u32 = b.int('unsigned int', 4, false);
  const u8 = b.int('unsigned char', 1, false);
  const u8t = b.add('u8', BtfKind.Typedef, 0, u8);
  const voidp = b.add('', BtfKind.Ptr, 0, 0);
  const bits = b.struct('', 4, [['cpuid', u32, 0, 16], ['flags', u32, 16, 16]]);
  const un = b.struct('', 4, [['', bits, 0], ['ft_flags', u32, 0]], true);
  b.struct('alt_instr', 14, [['instr_offset', s32, 0], ['repl_offset', s32, 32], ['', un, 64], ['instrlen', u8t, 96], ['replacementlen', u8t, 104]]);
  const callee = b.struct('paravirt_callee_save', 8, [['func', voidp, 0]]);
  const lazy = b.struct('pv_lazy_ops', 16, [['enter', voidp, 0], ['leave', voidp, 64]]);
  const cpu = b.struct('pv_cpu_ops', 16, [['io_delay', voidp, 0], ['cpuid', voidp, 64]]);
  const mmu = b.struct('pv_mmu_ops', 24, [['lazy_mode', lazy, 0], ['unlock', callee, 128]]);
  b.struct('paravirt_patch_template', 40, [['cpu', cpu, 0], ['mmu', mmu, 128]]);
  const idx = b.int('long unsigned int', 8, false);
  const arr = b.add('', BtfKind.Array, 0, 0, [u32, idx, 24]);
  const capun = b.struct('', 96, [['x86_capability', arr, 0], ['x86_capability_alignment', idx, 0]], true);
  b.struct('cpuinfo_x86', 104, [['x86', u8, 0], ['', capun, 64]]);
  return b.build();
}

describe('BTF reader', () => {
  it('reads struct layouts through typedefs, anonymous unions and bitfields', () => {
    const btf = parseBtf(kernelLikeBtf(), 'test');
    const f = btf.fields('alt_instr').map((x) => [x.path, x.offset, x.size, x.bitOffset, x.bitSize, x.signed]);
    expect(f).toEqual([
      ['instr_offset', 0, 4, 0, 0, true], ['repl_offset', 4, 4, 32, 0, true],
      ['cpuid', 8, 4, 64, 16, false], ['ft_flags', 8, 4, 64, 0, false], ['flags', 10, 4, 80, 16, false],
      ['instrlen', 12, 1, 96, 0, false], ['replacementlen', 13, 1, 104, 0, false],
    ]);
    expect(btf.arrayLength('cpuinfo_x86', 'x86_capability')).toBe(24);
    expect(btf.struct('nope')).toBeNull();
    expect(() => btf.requireStruct('nope')).toThrow(/^test: BTF has no struct nope$/);
  });

  it('derives the kernel layouts: alt_instr fields, pv_ops slot names flattened, no paravirt_patch_site', () => {
    const L = layoutsFromBtf(parseBtf(kernelLikeBtf(), 'test'));
    expect(L.altInstr.size).toBe(14);
    expect(L.paraSite).toBeNull();
    expect(L.pvOpsSlots).toEqual(['cpu.io_delay', 'cpu.cpuid', 'mmu.lazy_mode.enter', 'mmu.lazy_mode.leave', 'mmu.unlock']);
    expect(L.capabilityWords).toBe(24);
    // A 6.12 record: cpuid 0x75 (X86_FEATURE_*), flags DIRECT_CALL|NOT, lengths 6 and 5.
    const rec = Buffer.from([0xf0, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 0x75, 0, 3, 0, 6, 5]);
    const dv = new DataView(rec.buffer, rec.byteOffset, rec.length);
    expect(readField(dv, 0, L.altInstr.instrOffset)).toBe(-16);
    expect(readField(dv, 0, L.altInstr.cpuid)).toBe(0x75);
    expect(readField(dv, 0, L.altInstr.flags!)).toBe(3);
    expect(readField(dv, 0, L.altInstr.instrlen)).toBe(6);
    expect(readField(dv, 0, L.altInstr.replacementlen)).toBe(5);
  });

  it('bad input is one LoadError naming the byte', () => {
    const good = Buffer.from(kernelLikeBtf());
    const bad = Buffer.from(good);
    bad.writeUInt16LE(0x9feb, 0);
    expect(() => parseBtf(bad, 'k')).toThrow(/^k: \.BTF byte 0x0: magic 0x9feb, expected 0xeb9f/);
    const short = Buffer.from(good);
    short.writeUInt32LE(good.length, 12);
    expect(() => parseBtf(short, 'k')).toThrow(/^k: \.BTF byte 0xc: type section .* runs past the section's end$/);
    const kind = Buffer.from(good);
    kind.writeUInt32LE(30 << 24, 24 + 4);
    expect(() => parseBtf(kind, 'k')).toThrow(LoadError);
    expect(() => parseBtf(kind, 'k')).toThrow(/type 1: unknown BTF kind 30/);
  });
});
