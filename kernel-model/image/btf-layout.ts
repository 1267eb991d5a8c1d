// The kernel layouts textpoke needs, read from the image's own BTF instead of a
// per-version table: the .altinstructions record (struct alt_instr), the
// .parainstructions record (struct paravirt_patch_site, gone since 6.8), the pv_ops
// slot names in order (struct paravirt_patch_template, its nested ops structs
// flattened) and the number of capability words (cpuinfo_x86.x86_capability).

import { BtfKind, type Btf, type BtfField, type BtfType } from './btf';
import { LoadError } from './elf';

/** Where one field of a record is: byte offset and size, or a bitfield within it. */
export interface RecordField {
  offset: number;
  size: number;
  /** Bit position from the record's start and width, for bitfields; width 0 otherwise. */
  bitOffset: number;
  bitSize: number;
  signed: boolean;
}

export interface AltInstrLayout {
  size: number;
  instrOffset: RecordField;
  replOffset: RecordField;
  cpuid: RecordField;
  /** 6.1 has no flags field: bit 15 of cpuid inverts the test (ALTINSTR_FLAG_INV). */
  flags: RecordField | null;
  instrlen: RecordField;
  replacementlen: RecordField;
}

export interface ParaSiteLayout {
  size: number;
  instr: RecordField;
  type: RecordField;
  len: RecordField;
}

export interface BtfLayouts {
  altInstr: AltInstrLayout;
  /** null where the kernel has no .parainstructions (6.8 and later). */
  paraSite: ParaSiteLayout | null;
  /** pv_ops slot names in slot order ("cpu.io_delay", "mmu.lazy_mode.enter" …). */
  pvOpsSlots: string[];
  /** NCAPINTS + NBUGINTS: 32-bit words of feature and bug bits. */
  capabilityWords: number;
}

function recordField(f: BtfField): RecordField {
  return { offset: f.offset, size: f.size, bitOffset: f.bitOffset, bitSize: f.bitSize, signed: f.signed };
}

/** Reads a field of the record at `at` in `dv` as an unsigned (or, when signed, signed) number. */
export function readField(dv: DataView, at: number, f: RecordField): number {
  if (f.bitSize > 0) {
    let v = 0n;
    const first = Math.floor(f.bitOffset / 8);
    const last = Math.floor((f.bitOffset + f.bitSize - 1) / 8);
    for (let b = last; b >= first; b--) v = (v << 8n) | BigInt(dv.getUint8(at + b));
    return Number((v >> BigInt(f.bitOffset - first * 8)) & ((1n << BigInt(f.bitSize)) - 1n));
  }
  switch (f.size) {
    case 1: return f.signed ? dv.getInt8(at + f.offset) : dv.getUint8(at + f.offset);
    case 2: return f.signed ? dv.getInt16(at + f.offset, true) : dv.getUint16(at + f.offset, true);
    case 4: return f.signed ? dv.getInt32(at + f.offset, true) : dv.getUint32(at + f.offset, true);
    default: return Number(dv.getBigUint64(at + f.offset, true));
  }
}

/** A struct that stands for one pv_ops slot: a pointer, or a one-pointer wrapper such as paravirt_callee_save. */
function isSlotStruct(t: BtfType): boolean {
  return t.size === 8 && t.members.length === 1;
}

export function layoutsFromBtf(btf: Btf): BtfLayouts {
  const alt = btf.fields('alt_instr');
  const altField = (name: string, optional = false): RecordField | null => {
    const f = alt.find((x) => x.path === name);
    if (!f && !optional) throw new LoadError(`${btf.label}: BTF struct alt_instr has no field ${name}`);
    return f ? recordField(f) : null;
  };
  const altInstr: AltInstrLayout = {
    size: btf.requireStruct('alt_instr').size,
    instrOffset: altField('instr_offset')!,
    replOffset: altField('repl_offset')!,
    cpuid: altField('cpuid')!,
    flags: altField('flags', true),
    instrlen: altField('instrlen')!,
    replacementlen: altField('replacementlen')!,
  };

  let paraSite: ParaSiteLayout | null = null;
  if (btf.struct('paravirt_patch_site')) {
    const f = (n: string): RecordField => recordField(btf.field('paravirt_patch_site', n));
    paraSite = { size: btf.requireStruct('paravirt_patch_site').size, instr: f('instr'), type: f('type'), len: f('len') };
  }

  const tmpl = btf.requireStruct('paravirt_patch_template');
  const slots = btf.fields('paravirt_patch_template', isSlotStruct);
  const pvOpsSlots: string[] = new Array<string>(tmpl.size / 8).fill('');
  for (const s of slots) {
    if (s.size !== 8 || s.offset % 8 !== 0 || (s.kind !== BtfKind.Ptr && s.kind !== BtfKind.Struct)) {
      throw new LoadError(`${btf.label}: BTF struct paravirt_patch_template: ${s.path} at byte ${s.offset} is not a pointer slot`);
    }
    pvOpsSlots[s.offset / 8] = s.path.replace(/\.func$/, '');
  }

  return { altInstr, paraSite, pvOpsSlots, capabilityWords: btf.arrayLength('cpuinfo_x86', 'x86_capability') };
}
