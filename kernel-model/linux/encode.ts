// Encoding single instructions with iced-x86's Encoder: patch bytes are produced
// from instruction descriptions, never typed in as hex.

import { Encoder, Instruction } from 'iced-x86';

/** Encodes `ins` at `rip` and frees it. */
export function encodeAt(ins: Instruction, rip: bigint): Uint8Array {
  const enc = new Encoder(64);
  try {
    enc.encode(ins, BigInt.asUintN(64, rip));
    return enc.takeBuffer();
  } finally {
    enc.free();
    ins.free();
  }
}
