// What every kernel version's boot patching shares: a copy-on-write view of the
// image's text, one instruction decoded the way the kernel's insn decoder sees it
// (length, opcode bytes after the prefixes, where the immediate or branch offset and
// the displacement sit), and the 6.12 building blocks that 6.1 lacks: add_nop()'s
// jump-over padding, optimize_nops() over any NOP run, and the relocation of
// branches and RIP-relative operands copied out of .altinstr_replacement.
// docs/notes/linux-6.12-patching.md cites the kernel source of each rule.

import { Decoder, DecoderOptions, Register } from 'iced-x86';
import type { KernelImage } from '../image/kernel-image';
import { ImageError } from '../image/kernel-image';

/**
 * An image's bytes in pieces of at most 64 KiB (one 64 KiB-aligned chunk clipped to
 * one section), shared by every overlay on it: images are read-only views of their
 * files, and a boot patch reads most of .text and all of .altinstr_replacement
 * (re-reading them from the file for each patch cost a third of 6.12's patch time).
 */
interface Piece {
  start: bigint;
  end: bigint;
  bytes: Uint8Array;
}
const IMAGE_PIECES = new WeakMap<KernelImage, Map<number, Piece[]>>();

/**
 * A copy-on-write view of the image's bytes, for patching without touching the file.
 * Written bytes live in 4 KiB pages with a mask of which bytes were written, so a
 * boot patch of ~200,000 ranges stays cheap.
 */
export class TextOverlay {
  private readonly pages = new Map<number, { bytes: Uint8Array; mask: Uint8Array }>();
  private readonly pieces: Map<number, Piece[]>;
  constructor(private readonly img: KernelImage) {
    let c = IMAGE_PIECES.get(img);
    if (!c) IMAGE_PIECES.set(img, (c = new Map()));
    this.pieces = c;
  }
  private imageBytes(addr: bigint, len: number): Uint8Array {
    const end = addr + BigInt(len);
    const c = Number(addr >> 16n);
    let list = this.pieces.get(c);
    let p = list?.find((x) => x.start <= addr && end <= x.end);
    if (!p && len > 0) {
      const sec = this.img.sections.find((x) => x.loaded && x.address <= addr && addr < x.address + BigInt(x.size));
      if (sec) {
        const lo = BigInt(c) << 16n;
        const start = sec.address > lo ? sec.address : lo;
        const secEnd = sec.address + BigInt(sec.size);
        const stop = secEnd < lo + 0x10000n ? secEnd : lo + 0x10000n;
        p = { start, end: stop, bytes: this.img.read(start, Number(stop - start)) };
        if (!list) this.pieces.set(c, (list = []));
        list.push(p);
        if (end > stop) p = undefined;
      }
    }
    if (p) {
      const off = Number(addr - p.start);
      return p.bytes.slice(off, off + len);
    }
    return this.img.read(addr, len);
  }
  read(addr: bigint, len: number): Uint8Array {
    const b = this.imageBytes(addr, len);
    if (this.pages.size === 0 || len === 0) return b;
    const first = Number(addr >> 12n);
    const last = Number((addr + BigInt(len) - 1n) >> 12n);
    for (let p = first; p <= last; p++) {
      const pg = this.pages.get(p);
      if (!pg) continue;
      const pageStart = BigInt(p) << 12n;
      const from = pageStart > addr ? Number(pageStart - addr) : 0;
      const to = Math.min(len, Number(pageStart + 4096n - addr));
      const off = Number(addr + BigInt(from) - pageStart);
      for (let i = from, j = off; i < to; i++, j++) if (pg.mask[j]) b[i] = pg.bytes[j];
    }
    return b;
  }
  /** Up to `max` bytes at `addr`, fewer where the section ends sooner (for decoding one instruction). */
  readUpTo(addr: bigint, max: number): Uint8Array {
    for (let n = max; n > 0; n--) {
      try {
        return this.read(addr, n);
      } catch {
        // Past the section's end: try fewer bytes.
      }
    }
    return new Uint8Array(0);
  }
  write(addr: bigint, b: Uint8Array): void {
    for (let i = 0; i < b.length; ) {
      const at = addr + BigInt(i);
      const p = Number(at >> 12n);
      let pg = this.pages.get(p);
      if (!pg) this.pages.set(p, (pg = { bytes: new Uint8Array(4096), mask: new Uint8Array(4096) }));
      const off = Number(at & 0xfffn);
      const n = Math.min(b.length - i, 4096 - off);
      pg.bytes.set(b.subarray(i, i + n), off);
      pg.mask.fill(1, off, off + n);
      i += n;
    }
  }
}

/** An instruction as the kernel's insn decoder describes it, enough for the patching rules. */
export interface Insn {
  len: number;
  /** First opcode byte after legacy prefixes and REX, and the one after it (0x0f escapes). */
  op0: number;
  op1: number;
  /** The first legacy prefix byte (0 when none): `f3 90` is PAUSE, not a NOP. */
  prefix0: number;
  /** Immediate or relative branch offset: byte offset in the instruction, size, signed value. */
  imm: { offset: number; size: number; value: number } | null;
  /** Displacement of a RIP-relative memory operand. */
  ripDisp: { offset: number; size: number; value: number } | null;
}

const LEGACY_PREFIXES = new Set([0x66, 0x67, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0xf0, 0xf2, 0xf3]);

function readSigned(b: Uint8Array, at: number, size: number): number {
  const dv = new DataView(b.buffer, b.byteOffset + at, size);
  return size === 1 ? dv.getInt8(0) : size === 2 ? dv.getInt16(0, true) : size === 4 ? dv.getInt32(0, true) : Number(dv.getBigInt64(0, true));
}

/** Decodes the instruction at the start of `bytes` (placed at `ip`); null when it is not one. */
export function decodeInsn(bytes: Uint8Array, ip: bigint): Insn | null {
  if (bytes.length === 0) return null;
  const d = new Decoder(64, bytes, DecoderOptions.None);
  d.ip = BigInt.asUintN(64, ip);
  const i = d.decode();
  try {
    if (i.isInvalid || i.length > bytes.length) return null;
    const co = d.getConstantOffsets(i);
    try {
      let p = 0;
      const prefix0 = LEGACY_PREFIXES.has(bytes[0]) ? bytes[0] : 0;
      while (p < i.length && LEGACY_PREFIXES.has(bytes[p])) p++;
      if (p < i.length && (bytes[p] & 0xf0) === 0x40) p++;
      const ripRel = i.memoryBase === Register.RIP && co.displacementSize > 0;
      return {
        len: i.length, op0: bytes[p], op1: bytes[p + 1] ?? 0, prefix0,
        imm: co.immediateSize > 0 ? { offset: co.immediateOffset, size: co.immediateSize, value: readSigned(bytes, co.immediateOffset, co.immediateSize) } : null,
        ripDisp: ripRel ? { offset: co.displacementOffset, size: co.displacementSize, value: readSigned(bytes, co.displacementOffset, co.displacementSize) } : null,
      };
    } finally {
      co.free();
    }
  } finally {
    i.free();
    d.free();
  }
}

/** insn_is_nop(): NOP (0x90 without a leading REP) and NOPL (0f 1f), no other NOPs. */
export function insnIsNop(i: Insn): boolean {
  return (i.op0 === 0x90 && i.prefix0 !== 0xf3) || (i.op0 === 0x0f && i.op1 === 0x1f);
}

/** Writes a signed `size`-byte value; false when it does not fit (the kernel BUGs there). */
function writeSigned(b: Uint8Array, at: number, size: number, v: number): boolean {
  const dv = new DataView(b.buffer, b.byteOffset + at, size);
  if (size === 1) {
    if (v < -128 || v > 127) return false;
    dv.setInt8(0, v);
  } else if (size === 2) {
    if (v < -32768 || v > 32767) return false;
    dv.setInt16(0, v, true);
  } else if (size === 4) {
    if (v < -0x80000000 || v > 0x7fffffff) return false;
    dv.setInt32(0, v, true);
  } else return false;
  return true;
}

export const INT3 = 0xcc;
export const JMP8 = 0xeb;
export const JMP32 = 0xe9;
export const CALL = 0xe8;

/**
 * 6.12's add_nop(): the longest single NOP for runs up to `nops.length - 1` bytes
 * (ASM_NOP_MAX, 11 on x86-64), else a jump over the run (jmp8 under 128 bytes,
 * jmp32 beyond) padded with int3.
 */
export function addNop612(buf: Uint8Array, at: number, len: number, nops: readonly Uint8Array[]): void {
  if (len <= 0) return;
  if (len < nops.length) {
    buf.set(nops[len], at);
    return;
  }
  let p = at;
  if (len < 128) {
    buf[p] = JMP8;
    buf[p + 1] = len - 2;
    p += 2;
  } else {
    buf[p] = JMP32;
    new DataView(buf.buffer, buf.byteOffset + p + 1, 4).setInt32(0, len - 5, true);
    p += 5;
  }
  buf.fill(INT3, p, at + len);
}

/**
 * 6.12's optimize_nops() on a buffer of `len` bytes: every run of NOP/NOPL
 * instructions becomes one add_nop(); a NOP that already ends the buffer stops the
 * scan (it was optimized before); undecodable bytes stop it too.
 */
export function optimizeNops612(buf: Uint8Array, len: number, ip: bigint, nops: readonly Uint8Array[]): void {
  for (let i = 0, next = 0; i < len; i = next) {
    const insn = decodeInsn(buf.subarray(i, len), ip + BigInt(i));
    if (!insn) return;
    next = i + insn.len;
    if (!insnIsNop(insn)) continue;
    if (next === len) return;
    while (next < len) {
      const n = decodeInsn(buf.subarray(next, len), ip + BigInt(next));
      if (!n || !insnIsNop(n)) break;
      next += n.len;
    }
    addNop612(buf, i, next - i, nops);
  }
}

/**
 * apply_relocation() for bytes copied from `repl` (replLen long) to `instr`: rel8/rel32
 * branches and calls, Jcc, and RIP-relative displacements whose target lies outside
 * the replacement get the distance between the two places added; a `jmp rel32` that
 * then fits in 8 bits becomes `eb rel8` + int3 padding. Then optimize_nops().
 */
export function applyRelocation612(buf: Uint8Array, instr: bigint, instrlen: number, repl: bigint, replLen: number, nops: readonly Uint8Array[]): void {
  const delta = Number(repl - instr);
  const outside = (targetOff: number): boolean => targetOff < 0 || targetOff > replLen;
  for (let i = 0, next = 0; i < instrlen; i = next) {
    const insn = decodeInsn(buf.subarray(i, instrlen), instr + BigInt(i));
    if (!insn) {
      throw new ImageError(`alternative at 0x${instr.toString(16)}: byte ${i} of the replacement does not decode`);
    }
    next = i + insn.len;
    const isBranch =
      (insn.op0 === 0x0f && insn.op1 >= 0x80 && insn.op1 <= 0x8f) ||
      (insn.op0 >= 0x70 && insn.op0 <= 0x7f) || insn.op0 === JMP8 || insn.op0 === JMP32 || insn.op0 === CALL;
    if (isBranch && insn.imm) {
      if (outside(next + insn.imm.value)) {
        if (!writeSigned(buf, i + insn.imm.offset, insn.imm.size, insn.imm.value + delta)) {
          throw new ImageError(`alternative at 0x${instr.toString(16)}: relocated branch at byte ${i} does not fit in ${insn.imm.size} byte(s)`);
        }
      }
      if (insn.op0 === JMP32) {
        const imm = insn.imm.value + delta + (5 - 2);
        if (imm >= -128 && imm <= 127) {
          buf[i] = JMP8;
          buf[i + 1] = imm & 0xff;
          buf.fill(INT3, i + 2, i + insn.len);
        }
      }
    }
    if (insn.ripDisp && outside(next + insn.ripDisp.value)) {
      writeSigned(buf, i + insn.ripDisp.offset, insn.ripDisp.size, insn.ripDisp.value + delta);
    }
  }
  optimizeNops612(buf, instrlen, instr, nops);
}

/** Reads a little-endian u64 from the image. */
export function readU64(img: KernelImage, addr: bigint): bigint {
  const b = img.read(addr, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

/** `e8 rel32` from `at` to `target`. */
export function callBytes(at: bigint, target: bigint): Uint8Array {
  const b = new Uint8Array(5);
  b[0] = CALL;
  new DataView(b.buffer).setInt32(1, Number(BigInt.asIntN(32, target - (at + 5n))), true);
  return b;
}
