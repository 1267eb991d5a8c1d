// apply_retpolines() and apply_returns(): the compiler's calls and jumps through
// retpoline thunks (.retpoline_sites) and its `jmp __x86_return_thunk` returns
// (.return_sites), rewritten for the CPU's mitigations before the alternatives run.
// Shared by the 6.1 (Debian's 6.1.176 carries the same ITS-era rules) and 6.12 boot
// patches; both tables also cover .altinstr_replacement, so the alternatives copy
// already-rewritten replacements. docs/notes/linux-6.12-patching.md cites the source.

import type { KernelImage } from '../image/kernel-image';
import { ImageError } from '../image/kernel-image';
import type { Vmlinux } from '../image/vmlinux';
import { RETPOLINE_THUNK_SIZE, STATIC_CALL_TRAMP_UD } from '../image/linux-6.12';
import { X86_NOPS_64 } from './nops';
import { TextOverlay, decodeInsn, optimizeNops612, INT3, JMP32, CALL, type Insn } from './alternatives-common';

export interface ThunkFeatures {
  retpoline: boolean;
  lfence: boolean;
  rethunk: boolean;
  /** Call-depth tracking: retpolines go to per-register call thunks chosen at run time. */
  callDepth: boolean;
}

/** Relative-offset tables (s32 each, relative to the entry's own address), by section name. */
export function relTable(vm: Vmlinux, section: string): bigint[] {
  const s = vm.elf.sections.find((x) => x.name === section);
  if (!s) return [];
  const b = vm.elf.readSection(s);
  const out: bigint[] = [];
  for (let o = 0; o + 4 <= b.length; o += 4) out.push(BigInt.asUintN(64, s.addr + BigInt(o) + BigInt(b.readInt32LE(o))));
  return out;
}

export interface PassCount {
  sites: number;
  /** Left alone because the running kernel decides (call-depth thunks, static calls). */
  runtime: number;
}

type Poke = (addr: bigint, bytes: Uint8Array) => void;

function need(img: KernelImage, n: string): bigint {
  const a = img.symbols.resolve(n);
  if (a === undefined) throw new ImageError(`${img.path}: no symbol ${n} (needed by the boot patching)`);
  return a;
}

/** apply_retpolines(): thunk calls become `call *%reg` (with LFENCE for RETPOLINE_LFENCE) unless retpolines stay. */
export function applyRetpolines(img: KernelImage, vm: Vmlinux, text: TextOverlay, f: ThunkFeatures, poke: Poke): PassCount {
  const thunks = need(img, '__x86_indirect_thunk_array');
  const n: PassCount = { sites: 0, runtime: 0 };
  for (const addr of relTable(vm, '.retpoline_sites')) {
    n.sites++;
    const insn = decodeInsn(text.readUpTo(addr, 16), addr);
    if (!insn || !insn.imm) continue;
    const isJcc32 = insn.op0 === 0x0f && (insn.op1 & 0xf0) === 0x80;
    if (insn.op0 !== CALL && insn.op0 !== JMP32 && !isJcc32) continue;
    const off = addr + BigInt(insn.len) + BigInt(insn.imm.value) - thunks;
    if (off < 0n || off % BigInt(RETPOLINE_THUNK_SIZE) !== 0n || off / BigInt(RETPOLINE_THUNK_SIZE) > 15n) continue;
    const reg = Number(off / BigInt(RETPOLINE_THUNK_SIZE));
    if (f.retpoline && !f.lfence) {
      if (f.callDepth) n.runtime++;
      continue;
    }
    const out: number[] = [];
    let op = insn.op0;
    if (isJcc32) {
      // Jcc.d32 to the thunk: the inverted Jcc.d8 jumps over an indirect jmp.
      out.push(0x70 + ((insn.op1 & 0xf) ^ 1), insn.len - 2);
      op = JMP32;
    }
    if (f.lfence) out.push(0x0f, 0xae, 0xe8);
    if (reg >= 8) out.push(0x41);
    out.push(0xff, (op === CALL ? 0x10 : 0x20) | 0xc0 | (reg & 7));
    if (op === JMP32 && out.length < insn.len) out.push(INT3);
    while (out.length < insn.len) out.push(0x90);
    if (out.length !== insn.len) continue;
    const bytes = Uint8Array.from(out);
    optimizeNops612(bytes, bytes.length, addr, X86_NOPS_64);
    poke(addr, bytes);
  }
  return n;
}

/** `jmp rel32` at the start of `b`, as decodeInsn describes it. */
function jmp32(b: Uint8Array): Insn {
  const value = new DataView(b.buffer, b.byteOffset + 1, 4).getInt32(0, true);
  return { len: 5, op0: JMP32, op1: b[1], prefix0: 0, imm: { offset: 1, size: 4, value }, ripDisp: null };
}

/**
 * apply_returns(): `jmp __x86_return_thunk` becomes `ret; int3…`, or a jump to
 * x86_return_thunk where the CPU wants one (with its_return_thunk, only in the lower
 * half of each 64-byte line). Returns inside static-call trampolines are left to
 * static_call (counted as decided at run time).
 */
export function applyReturns(img: KernelImage, vm: Vmlinux, text: TextOverlay, f: ThunkFeatures, returnThunkName: string, poke: Poke): PassCount {
  const retThunk = need(img, '__x86_return_thunk');
  const returnThunk = need(img, returnThunkName);
  const itsThunk = img.symbols.resolve('its_return_thunk');
  const n: PassCount = { sites: 0, runtime: 0 };
  for (const addr of relTable(vm, '.return_sites')) {
    n.sites++;
    const head = text.readUpTo(addr, 16);
    // Nearly every entry is the compiler's `jmp rel32` (e9): no need for the decoder there.
    const insn = head[0] === JMP32 && head.length >= 5 ? jmp32(head) : decodeInsn(head, addr);
    if (!insn) continue;
    const tail = text.readUpTo(addr + 5n, 3);
    if (tail.length === 3 && tail.every((b, i) => b === STATIC_CALL_TRAMP_UD[i])) {
      n.runtime++;
      continue;
    }
    const dest = insn.op0 === JMP32 && insn.imm ? addr + BigInt(insn.len) + BigInt(insn.imm.value) : undefined;
    if (dest !== retThunk) continue;
    const wants = f.rethunk && (returnThunk !== itsThunk || (addr & 0x20n) === 0n);
    const bytes = new Uint8Array(insn.len).fill(INT3);
    if (wants) {
      bytes[0] = JMP32;
      new DataView(bytes.buffer).setInt32(1, Number(BigInt.asIntN(32, returnThunk - (addr + 5n))), true);
    } else bytes[0] = 0xc3;
    poke(addr, bytes);
  }
  return n;
}
