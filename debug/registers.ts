// The x86-64 register file as GDB sees it: the target description served through
// qXfer:features:read (GDB manual, "Target Descriptions" and "i386 Features"), and one
// accessor per register in the description's order, which is the order of the `g`
// packet and the numbering of `p`/`P`.
//
// The layout follows QEMU's system-mode i386-64bit description (one
// org.gnu.gdb.i386.core feature: GPRs, rip, eflags, selectors, fs_base/gs_base/
// k_gs_base, cr0/cr2/cr3/cr4/cr8, efer, then x87), written here in our own words.
// GDB's amd64 architecture insists that the core feature holds st0-st7 and the eight
// x87 control registers; textpoke models no x87 state, so they read as the state
// FNINIT leaves (fctrl 0x37f, everything else 0) and writes to them are ignored.
// There is no SSE feature: textpoke does not model XMM registers, and GDB accepts a
// description without them.

import type { Cpu } from '../emu/cpu';
import { RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15 } from '../emu/regs';
import { readFlags, writeFlags } from '../emu/flags';
import { toBig } from '../emu/u64';
import { splitAddr } from '../emu/memory';
import { leBytes, fromLe } from './rsp';

export interface RegisterDef {
  name: string;
  bits: number;
  type: string;
  group?: string;
  read(cpu: Cpu): bigint;
  /** Absent: writes are accepted and ignored (unmodelled state). */
  write?(cpu: Cpu, v: bigint): void;
}

const gpr = (name: string, i: number, type = 'int64'): RegisterDef => ({
  name,
  bits: 64,
  type,
  read: (c) => c.getReg(i),
  write: (c, v) => c.setReg(i, v),
});

const pair = (name: string, get: (c: Cpu) => [number, number], set: (c: Cpu, lo: number, hi: number) => void): RegisterDef => ({
  name,
  bits: 64,
  type: 'int64',
  read: (c) => toBig(...get(c)),
  write: (c, v) => set(c, ...splitAddr(v)),
});

const selector = (name: string, get: (c: Cpu) => number, set: (c: Cpu, v: number) => void): RegisterDef => ({
  name,
  bits: 32,
  type: 'int32',
  read: (c) => BigInt(get(c) & 0xffff),
  write: (c, v) => set(c, Number(v & 0xffffn)),
});

const x87 = (name: string, bits: number, reset = 0n): RegisterDef => ({
  name,
  bits,
  type: bits === 80 ? 'i387_ext' : 'int',
  group: bits === 80 ? undefined : 'float',
  read: () => reset,
});

/** Every register, in the description's (and the `g` packet's) order. */
export const REGISTERS: readonly RegisterDef[] = [
  gpr('rax', RAX), gpr('rbx', RBX), gpr('rcx', RCX), gpr('rdx', RDX),
  gpr('rsi', RSI), gpr('rdi', RDI), gpr('rbp', RBP, 'data_ptr'), gpr('rsp', RSP, 'data_ptr'),
  gpr('r8', R8), gpr('r9', R9), gpr('r10', R10), gpr('r11', R11),
  gpr('r12', R12), gpr('r13', R13), gpr('r14', R14), gpr('r15', R15),
  { name: 'rip', bits: 64, type: 'code_ptr', read: (c) => c.rip, write: (c, v) => c.setRipBig(v) },
  { name: 'eflags', bits: 32, type: 'x64_eflags', read: (c) => BigInt(readFlags(c) >>> 0), write: (c, v) => writeFlags(c, Number(v & 0xffffffffn)) },
  selector('cs', (c) => c.cs, (c, v) => (c.cs = v)),
  selector('ss', (c) => c.ss, (c, v) => (c.ss = v)),
  selector('ds', (c) => c.ds, (c, v) => (c.ds = v)),
  selector('es', (c) => c.es, (c, v) => (c.es = v)),
  selector('fs', (c) => c.fsSel, (c, v) => (c.fsSel = v)),
  selector('gs', (c) => c.gsSel, (c, v) => (c.gsSel = v)),
  pair('fs_base', (c) => [c.fsLo, c.fsHi], (c, lo, hi) => ((c.fsLo = lo), (c.fsHi = hi))),
  pair('gs_base', (c) => [c.gsLo, c.gsHi], (c, lo, hi) => ((c.gsLo = lo), (c.gsHi = hi))),
  pair('k_gs_base', (c) => [c.kgsLo, c.kgsHi], (c, lo, hi) => ((c.kgsLo = lo), (c.kgsHi = hi))),
  { name: 'cr0', bits: 64, type: 'int64', read: (c) => BigInt(c.cr0 >>> 0), write: (c, v) => (c.cr0 = Number(v & 0xffffffffn) | 0) },
  pair('cr2', (c) => [c.cr2Lo, c.cr2Hi], (c, lo, hi) => ((c.cr2Lo = lo), (c.cr2Hi = hi))),
  pair('cr3', (c) => [c.cr3Lo, c.cr3Hi], (c, lo, hi) => ((c.cr3Lo = lo), (c.cr3Hi = hi))),
  { name: 'cr4', bits: 64, type: 'int64', read: (c) => BigInt(c.cr4 >>> 0), write: (c, v) => (c.cr4 = Number(v & 0xffffffffn) | 0) },
  { name: 'cr8', bits: 64, type: 'int64', read: (c) => BigInt(c.apic.cr8), write: (c, v) => (c.apic.cr8 = Number(v & 0xfn)) },
  { name: 'efer', bits: 64, type: 'int64', read: (c) => BigInt(c.efer >>> 0), write: (c, v) => (c.efer = Number(v & 0xffffffffn) | 0) },
  ...['st0', 'st1', 'st2', 'st3', 'st4', 'st5', 'st6', 'st7'].map((n) => x87(n, 80)),
  x87('fctrl', 32, 0x37fn),
  ...['fstat', 'ftag', 'fiseg', 'fioff', 'foseg', 'fooff', 'fop'].map((n) => x87(n, 32)),
];

export const REG_PC = REGISTERS.findIndex((r) => r.name === 'rip');

/** Bytes of register `i` of `cpu`, little-endian, as the `g` and `p` packets carry them. */
export function registerBytes(cpu: Cpu, i: number): Uint8Array {
  const r = REGISTERS[i];
  return leBytes(r.read(cpu), r.bits / 8);
}

export function setRegisterBytes(cpu: Cpu, i: number, b: Uint8Array): void {
  REGISTERS[i].write?.(cpu, fromLe(b));
}

/** Total bytes of the `g` packet's register block. */
export const REGISTER_BLOCK_BYTES = REGISTERS.reduce((s, r) => s + r.bits / 8, 0);

const EFLAGS_FIELDS: [string, number, number][] = [
  ['CF', 0, 0], ['', 1, 1], ['PF', 2, 2], ['AF', 4, 4], ['ZF', 6, 6], ['SF', 7, 7], ['TF', 8, 8], ['IF', 9, 9],
  ['DF', 10, 10], ['OF', 11, 11], ['IOPL', 12, 13], ['NT', 14, 14], ['RF', 16, 16], ['VM', 17, 17], ['AC', 18, 18],
  ['VIF', 19, 19], ['VIP', 20, 20], ['ID', 21, 21],
];

/** The target description: architecture, OS ABI left out (this is a bare machine), one core feature. */
export function targetXml(): string {
  const flags = EFLAGS_FIELDS.map(([n, s, e]) => `    <field name="${n}" start="${s}" end="${e}"/>`).join('\n');
  const regs = REGISTERS.map((r) => `  <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}"${r.group ? ` group="${r.group}"` : ''}/>`).join('\n');
  return [
    '<?xml version="1.0"?>',
    '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
    '<target version="1.0">',
    '<architecture>i386:x86-64</architecture>',
    '<feature name="org.gnu.gdb.i386.core">',
    '  <flags id="x64_eflags" size="4">',
    flags,
    '  </flags>',
    regs,
    '</feature>',
    '</target>',
    '',
  ].join('\n');
}
