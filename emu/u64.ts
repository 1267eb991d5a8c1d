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

/** Unsigned 64×64 → 128 multiply via 16-bit limbs; result as four 32-bit words (little-endian). */
export function mulU64(aLo: number, aHi: number, bLo: number, bHi: number, out: Int32Array): void {
  const a0 = aLo & 0xffff, a1 = aLo >>> 16, a2 = aHi & 0xffff, a3 = aHi >>> 16;
  const b0 = bLo & 0xffff, b1 = bLo >>> 16, b2 = bHi & 0xffff, b3 = bHi >>> 16;
  // Column sums of 16-bit partial products; each fits comfortably in a double.
  let c = 0;
  const cols = [0, 0, 0, 0, 0, 0, 0, 0];
  const a = [a0, a1, a2, a3];
  const b = [b0, b1, b2, b3];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) cols[i + j] += a[i] * b[j];
  }
  const limbs = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let k = 0; k < 8; k++) {
    const v = cols[k] + c;
    limbs[k] = v % 65536;
    c = Math.floor(v / 65536);
  }
  out[0] = (limbs[0] | (limbs[1] << 16)) | 0;
  out[1] = (limbs[2] | (limbs[3] << 16)) | 0;
  out[2] = (limbs[4] | (limbs[5] << 16)) | 0;
  out[3] = (limbs[6] | (limbs[7] << 16)) | 0;
}
