// LZ4 decompression for the "legacy" frame that the Linux build uses for an LZ4
// bzImage payload (`lz4 -l`). Written here rather than taken from a package so the
// loader has no native or third-party dependency.
//
// Legacy frame: the 4-byte little-endian magic 0x184C2102 (bytes 02 21 4c 18), then
// blocks, each a u32 LE compressed length followed by that many bytes of an LZ4 block
// that expands to at most 8 MiB and references nothing outside itself. The frame has
// no end mark: input ends, a new magic starts another frame, or (kernel payloads) the
// build appends the 4-byte uncompressed size, which we recognise as a final u32 with
// nothing after it.
//
// LZ4 block: sequences of {token; literal-length extension; literals; u16 LE match
// offset; match-length extension}. The token's high nibble is the literal count and
// its low nibble the match length minus 4; a nibble of 15 continues with bytes added
// while they are 255. The last sequence has literals only.

import { LoadError } from './elf';

export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Uncompressed size of every legacy block but the last. */
export const LZ4_LEGACY_BLOCK_SIZE = 8 << 20;
/** Largest compressed size of an 8 MiB block (LZ4's worst-case bound). */
export const LZ4_LEGACY_MAX_COMPRESSED = LZ4_LEGACY_BLOCK_SIZE + Math.floor(LZ4_LEGACY_BLOCK_SIZE / 255) + 16;

function hex(n: number): string {
  return '0x' + n.toString(16);
}

/**
 * Decompresses one LZ4 block `src[start, end)` into `dst` from offset 0 and returns
 * the number of bytes produced. `file` and `fileBase` (the file offset of `src[0]`)
 * only serve error messages.
 */
export function lz4DecompressBlock(src: Uint8Array, start: number, end: number, dst: Uint8Array, file = 'lz4', fileBase = 0): number {
  let ip = start;
  let op = 0;
  const cap = dst.length;
  const fail = (what: string): never => {
    throw new LoadError(`${file}: byte ${hex(fileBase + ip)}: ${what}`);
  };
  while (ip < end) {
    const token = src[ip++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= end) fail('LZ4 literal length runs past the end of the block');
        b = src[ip++];
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > end) fail(`LZ4 literals (${lit} bytes) run past the end of the block`);
    if (op + lit > cap) fail(`LZ4 block expands past ${hex(cap)} bytes`);
    dst.set(src.subarray(ip, ip + lit), op);
    ip += lit;
    op += lit;
    if (ip === end) break; // the last sequence carries literals only
    if (ip + 2 > end) fail('LZ4 match offset runs past the end of the block');
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    if (offset === 0 || offset > op) fail(`LZ4 match offset ${offset} points before the start of the block (output at ${hex(op)})`);
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (ip >= end) fail('LZ4 match length runs past the end of the block');
        b = src[ip++];
        len += b;
      } while (b === 255);
    }
    len += 4;
    if (op + len > cap) fail(`LZ4 block expands past ${hex(cap)} bytes`);
    let from = op - offset;
    if (offset >= len) {
      // No overlap: a native copy.
      dst.copyWithin(op, from, from + len);
      op += len;
    } else {
      // Overlapping match (a run): byte by byte replicates the pattern as LZ4 intends.
      const stop = op + len;
      while (op < stop) dst[op++] = dst[from++];
    }
  }
  return op;
}

export interface Lz4LegacyResult {
  /** Total uncompressed bytes. */
  size: number;
  /** Input bytes consumed by frames (excluding a trailing size word). */
  consumed: number;
  /** The final u32 after the last block, when there is one (kernel payloads: the uncompressed size). */
  trailer: number | null;
}

/**
 * Decompresses a legacy frame (or concatenated frames) from `src`, handing each
 * decompressed block to `onBlock`. The chunk passed is a view of a reused buffer:
 * consume it before returning.
 */
export function decompressLz4Legacy(
  src: Uint8Array,
  onBlock: (chunk: Uint8Array) => void,
  opts: { file?: string; base?: number } = {},
): Lz4LegacyResult {
  const file = opts.file ?? 'lz4';
  const base = opts.base ?? 0;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const end = src.length;
  if (end < 4 || dv.getUint32(0, true) !== LZ4_LEGACY_MAGIC) {
    const got = Array.from(src.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new LoadError(`${file}: byte ${hex(base)}: expected the LZ4 legacy magic 02 21 4c 18, found ${got || 'end of data'}`);
  }
  const out = new Uint8Array(LZ4_LEGACY_BLOCK_SIZE);
  let pos = 4;
  let size = 0;
  let trailer: number | null = null;
  while (pos + 4 <= end) {
    const n = dv.getUint32(pos, true);
    if (pos + 4 === end) {
      // A lone final word cannot be a block (it would need n more bytes): the size trailer.
      trailer = n;
      break;
    }
    if (n === LZ4_LEGACY_MAGIC) {
      pos += 4;
      continue;
    }
    if (n === 0 || n > LZ4_LEGACY_MAX_COMPRESSED) {
      throw new LoadError(`${file}: byte ${hex(base + pos)}: LZ4 block length ${hex(n)} is not in 1..${hex(LZ4_LEGACY_MAX_COMPRESSED)}`);
    }
    if (pos + 4 + n > end) {
      throw new LoadError(`${file}: byte ${hex(base + pos)}: LZ4 block of ${hex(n)} bytes runs past the end of the data (${hex(base + end)})`);
    }
    const got = lz4DecompressBlock(src, pos + 4, pos + 4 + n, out, file, base);
    onBlock(out.subarray(0, got));
    size += got;
    pos += 4 + n;
  }
  if (trailer === null && pos !== end) {
    throw new LoadError(`${file}: byte ${hex(base + pos)}: ${end - pos} stray byte(s) after the last LZ4 block`);
  }
  return { size, consumed: pos, trailer };
}

/** Decompresses a whole legacy frame into one buffer (tests, small inputs). */
export function decompressLz4LegacyToBuffer(src: Uint8Array, opts: { file?: string; base?: number } = {}): Buffer {
  const parts: Buffer[] = [];
  decompressLz4Legacy(src, (c) => parts.push(Buffer.from(c)), opts);
  return Buffer.concat(parts);
}
