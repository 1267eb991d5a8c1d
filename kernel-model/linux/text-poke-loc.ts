// text_poke_loc_init() of Linux 6.1 (arch/x86/kernel/alternative.c): what
// text_poke_bp_batch() may write, decided by decoding the new instruction, and what
// poke_int3_handler() keeps to emulate it (int3_emulate_* in text-patching.h): the
// stored opcode, the target, the length. Accepted: INT3; RET, JMP rel32, JMP rel8
// (each may be padded with INT3 up to the length poked); CALL rel32; Jcc rel8; Jcc
// rel32 (kept as the rel8 opcode 0x70|cc, 6 bytes); the 2- and 5-byte NOPs (kept as
// JMP8 / JMP32 to the next instruction). Anything else is a BUG in the kernel: here a
// one-line error before the patch starts.

import { Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind } from 'iced-x86';
import { encodeAt } from './encode';

export const INT3 = 0xcc;
export const RET = 0xc3;
export const CALL32 = 0xe8;
export const JMP32 = 0xe9;
export const JMP8 = 0xeb;
/** Jcc rel8 opcodes 0x70..0x7f; the condition code is the low nibble. */
export const JCC8_BASE = 0x70;

/** What poke_int3_handler emulates for one site. */
export interface Int3Emulation {
  /** The stored opcode (6.1's tp->opcode). */
  opcode: number;
  /** Branch or call target (the next instruction for NOPs; unused for RET and INT3). */
  target: bigint;
  /** Bytes poked (the new instruction, with its INT3 padding). */
  len: number;
}

export class TextPokeLocError extends Error {}

const NOP2 = '6690';
const NOP5 = '0f1f440000';

/** text_poke_loc_init(): validate `bytes` (the new text at `addr`) and keep what the int3 handler needs. */
export function textPokeLocInit(addr: bigint, bytes: Uint8Array): Int3Emulation {
  const len = bytes.length;
  const hex = Buffer.from(bytes).toString('hex');
  const at = `0x${addr.toString(16)}`;
  if (hex === NOP2) return { opcode: JMP8, target: addr + 2n, len };
  if (hex === NOP5) return { opcode: JMP32, target: addr + 5n, len };
  const d = new Decoder(64, bytes, DecoderOptions.None);
  d.ip = addr;
  const insn = d.decode();
  if (insn.isInvalid) throw new TextPokeLocError(`text_poke_loc_init: ${at}: ${hex} does not decode`);
  const padded = (): void => {
    for (let i = insn.length; i < len; i++) {
      if (bytes[i] !== INT3) throw new TextPokeLocError(`text_poke_loc_init: ${at}: ${hex}: after the ${insn.length}-byte instruction only INT3 padding may follow`);
    }
  };
  const exact = (): void => {
    if (insn.length !== len) throw new TextPokeLocError(`text_poke_loc_init: ${at}: ${hex}: the instruction is ${insn.length} bytes, the poke ${len}`);
  };
  const target = (): bigint => (insn.op0Kind === OpKind.NearBranch64 ? insn.nearBranch64 : 0n);
  const first = bytes[0];
  if (first === INT3) {
    exact();
    return { opcode: INT3, target: 0n, len };
  }
  if (first === RET && insn.mnemonic === Mnemonic.Ret) {
    padded();
    return { opcode: RET, target: 0n, len };
  }
  if (first === CALL32) {
    exact();
    return { opcode: CALL32, target: target(), len };
  }
  if (first === JMP32 || first === JMP8) {
    padded();
    return { opcode: first, target: target(), len };
  }
  if (first >= 0x70 && first <= 0x7f) {
    exact();
    return { opcode: first, target: target(), len };
  }
  if (first === 0x0f && bytes[1] >= 0x80 && bytes[1] <= 0x8f) {
    exact();
    return { opcode: JCC8_BASE | (bytes[1] & 0xf), target: target(), len };
  }
  throw new TextPokeLocError(`text_poke_loc_init: ${at}: ${hex} (${insn.toString()}) is not an instruction poke_int3_handler can emulate`);
}

/** __emulate_cc(): does condition code `cc` hold for these RFLAGS? */
export function emulateCc(flags: bigint, cc: number): boolean {
  const f = (bit: number): boolean => ((flags >> BigInt(bit)) & 1n) === 1n;
  const CF = f(0), PF = f(2), ZF = f(6), SF = f(7), OF = f(11);
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = OF; break;
    case 1: r = CF; break;
    case 2: r = ZF; break;
    case 3: r = CF || ZF; break;
    case 4: r = SF; break;
    case 5: r = PF; break;
    case 6: r = SF !== OF; break;
    default: r = SF !== OF || ZF; break;
  }
  return (cc & 1) === 1 ? !r : r;
}

const CONDITIONS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];

/**
 * The instruction a poke request names, encoded at `at`: "ret", "int3", "call SYM",
 * "jmp32 SYM", "jmp8 SYM", "j<cc>8 SYM", "j<cc>32 SYM" (cc as in je, jne, jl, …),
 * padded with INT3 to `len` bytes when asked. `resolve` turns SYM into an address.
 */
export function encodePokeInsn(spec: string, at: bigint, len: number | undefined, resolve: (sym: string) => bigint): Uint8Array {
  const [op, sym] = spec.trim().split(/\s+/);
  const branch = (code: Code): Uint8Array => {
    if (!sym) throw new TextPokeLocError(`'${spec}': names no target`);
    return encodeAt(Instruction.createBranch(code, BigInt.asUintN(64, resolve(sym))), at);
  };
  let bytes: Uint8Array;
  const jcc = /^j([a-z]+)(8|32)$/.exec(op);
  if (op === 'ret') bytes = Uint8Array.of(RET);
  else if (op === 'int3') bytes = Uint8Array.of(INT3);
  else if (op === 'call') bytes = branch(Code.Call_rel32_64);
  else if (op === 'jmp32') bytes = branch(Code.Jmp_rel32_64);
  else if (op === 'jmp8') bytes = branch(Code.Jmp_rel8_64);
  else if (jcc && CONDITIONS.includes(jcc[1])) {
    const cc = CONDITIONS.indexOf(jcc[1]);
    const rel8 = [Code.Jo_rel8_64, Code.Jno_rel8_64, Code.Jb_rel8_64, Code.Jae_rel8_64, Code.Je_rel8_64, Code.Jne_rel8_64, Code.Jbe_rel8_64, Code.Ja_rel8_64,
      Code.Js_rel8_64, Code.Jns_rel8_64, Code.Jp_rel8_64, Code.Jnp_rel8_64, Code.Jl_rel8_64, Code.Jge_rel8_64, Code.Jle_rel8_64, Code.Jg_rel8_64];
    const rel32 = [Code.Jo_rel32_64, Code.Jno_rel32_64, Code.Jb_rel32_64, Code.Jae_rel32_64, Code.Je_rel32_64, Code.Jne_rel32_64, Code.Jbe_rel32_64, Code.Ja_rel32_64,
      Code.Js_rel32_64, Code.Jns_rel32_64, Code.Jp_rel32_64, Code.Jnp_rel32_64, Code.Jl_rel32_64, Code.Jge_rel32_64, Code.Jle_rel32_64, Code.Jg_rel32_64];
    bytes = branch(jcc[2] === '8' ? rel8[cc] : rel32[cc]);
  } else {
    throw new TextPokeLocError(`'${spec}': expected ret, int3, call SYM, jmp32 SYM, jmp8 SYM, j<cc>8 SYM or j<cc>32 SYM`);
  }
  if (len === undefined || len === bytes.length) return bytes;
  if (len < bytes.length) throw new TextPokeLocError(`'${spec}' is ${bytes.length} bytes, longer than len ${len}`);
  const out = new Uint8Array(len).fill(INT3);
  out.set(bytes, 0);
  return out;
}
