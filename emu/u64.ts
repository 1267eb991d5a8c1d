// 64-bit values in the emulator's hot path are pairs of int32 (lo, hi): V8 keeps
// them as small integers, where BigInt would allocate on every operation. These
// helpers are for the cold paths (API, tracing, decoding) and for the few
// instructions whose arithmetic does not fit in doubles.

export const TWO32 = 4294967296;

/** A 64-bit value as two signed 32-bit halves; what the API hands out. */
export interface U64 {
  lo: number;
  hi: number;
}

export function toBig(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function loOf(v: bigint): number {
  return Number(BigInt.asUintN(32, v)) | 0;
}

export function hiOf(v: bigint): number {
  return Number(BigInt.asUintN(32, v >> 32n)) | 0;
}

export function hex64(lo: number, hi: number): string {
  return '0x' + toBig(lo, hi).toString(16);
}

/** Fixed-width 16-digit hex, as objdump prints addresses. */
export function hex64Padded(lo: number, hi: number): string {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}

/** Parses "0x…" hex or decimal into a 64-bit bigint; returns undefined if malformed. */
export function parseU64(text: string): bigint | undefined {
  const t = text.trim();
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(t)) return undefined;
  const v = BigInt(t);
  if (v >= 1n << 64n) return undefined;
  return v;
}

/** Page key for a 64-bit address: the 52-bit page number, exact in a double. */
export function pageKey(lo: number, hi: number): number {
  return (hi >>> 0) * 1048576 + (lo >>> 12);
}

/** (lo,hi) + signed 32-bit delta, for address arithmetic. Returns lo; hi via out. */
export function addSigned32(lo: number, hi: number, delta: number, out: U64): void {
  const s = (lo >>> 0) + delta;
  const carry = Math.floor(s / TWO32);
  out.lo = s | 0;
  out.hi = (hi + carry) | 0;
}
