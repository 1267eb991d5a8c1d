// Disassembly of byte ranges for reports and listings: iced-x86's formatter, with
// absolute addresses annotated by symbol (objdump style: "call 0x… <native_x+0x4>").

import { disassemble } from '../../emu/decode';
import type { SymbolTable } from '../../emu/symbols';

export interface ListedInsn {
  address: bigint;
  bytes: Uint8Array;
  text: string;
}

export function annotate(text: string, symbols: SymbolTable | null): string {
  if (!symbols) return text;
  return text.replace(/0x([0-9a-f]{9,16})\b/g, (whole, hex: string) => {
    const a = BigInt('0x' + hex);
    const name = symbols.format(a);
    return name.startsWith('0x') ? whole : `${whole} <${name}>`;
  });
}

/** Decodes every instruction in `bytes` (laid at `address`). */
export function listInsns(bytes: Uint8Array, address: bigint, symbols: SymbolTable | null, syntax: 'gas' | 'intel' = 'gas'): ListedInsn[] {
  const out: ListedInsn[] = [];
  let off = 0;
  while (off < bytes.length) {
    const d = disassemble(bytes.subarray(off), address + BigInt(off), syntax);
    const len = Math.min(d.len, bytes.length - off);
    out.push({ address: address + BigInt(off), bytes: bytes.slice(off, off + len), text: annotate(d.text, symbols) });
    off += Math.max(len, 1);
  }
  return out;
}

/** One line: the instructions of a short range joined with "; ". */
export function disasmInline(bytes: Uint8Array, address: bigint, symbols: SymbolTable | null): string {
  return listInsns(bytes, address, symbols).map((i) => i.text).join('; ');
}
