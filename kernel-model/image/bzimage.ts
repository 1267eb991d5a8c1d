// The compressed kernel inside a bzImage (vmlinuz): where the boot-protocol header
// says the payload is, and decompressing it to the vmlinux ELF. Debian's 6.1 packs
// it with LZ4 (legacy frames, our own decoder in lz4.ts); Debian's 6.12 with zstd
// (decoded by the pure-JS fzstd package, so no zstd tool is needed at run time).
// Both payloads end with the kernel build's 4-byte little-endian uncompressed size.

import * as fs from 'fs';
import * as path from 'path';
import { Decompress } from 'fzstd';
import { LoadError } from './elf';
import { decompressLz4Legacy, LZ4_LEGACY_MAGIC, type Lz4LegacyResult } from './lz4';

/** The payload of a bzImage: [offset, offset+length) from its boot-protocol header. */
export function bzImagePayload(img: Buffer, label = 'vmlinuz'): { offset: number; length: number } {
  const fail = (at: number, what: string): never => {
    throw new LoadError(`${label}: byte 0x${at.toString(16)}: ${what}`);
  };
  if (img.length < 0x250) fail(0, `too short for a bzImage (size 0x${img.length.toString(16)})`);
  if (img.toString('latin1', 0x202, 0x206) !== 'HdrS') fail(0x202, 'no "HdrS" boot-protocol signature: not a bzImage');
  const proto = img.readUInt16LE(0x206);
  if (proto < 0x208) fail(0x206, `boot protocol 0x${proto.toString(16)} is older than 2.08 (no payload fields)`);
  const setupSects = img[0x1f1] || 4; // 0 means 4, by the boot protocol
  const pm = (setupSects + 1) * 512;
  const off = pm + img.readUInt32LE(0x248);
  const len = img.readUInt32LE(0x24c);
  if (off + len > img.length) fail(0x248, `payload [0x${off.toString(16)}, 0x${(off + len).toString(16)}) runs past end of file (size 0x${img.length.toString(16)})`);
  return { offset: off, length: len };
}

const PAYLOAD_MAGICS: [string, string][] = [
  ['1f8b', 'gzip'], ['425a68', 'bzip2'], ['fd377a585a00', 'xz'], ['5d0000', 'lzma'], ['894c5a4f', 'lzo'],
];
/** A zstd frame's magic number, little-endian 0xFD2FB528. */
export const ZSTD_MAGIC = 0xfd2fb528;

export type PayloadKind = 'lz4' | 'zstd';

/**
 * Decompresses a zstd payload (one or more frames, then the 4-byte size trailer),
 * handing the output to `sink` chunk by chunk. Returns the number of bytes produced.
 */
export function decompressZstd(payload: Uint8Array, sink: (chunk: Uint8Array) => void, where: { file: string; base: number }): number {
  let size = 0;
  const body = payload.subarray(0, payload.length - 4);
  const d = new Decompress((chunk) => {
    size += chunk.length;
    sink(chunk);
  });
  try {
    d.push(body, true);
  } catch (e) {
    throw new LoadError(`${where.file}: zstd payload at byte 0x${where.base.toString(16)}: ${(e as Error).message}`);
  }
  return size;
}

/** Decompresses a bzImage's LZ4 or zstd payload into `outFile` (written as it is produced). */
export function decompressBzImage(vmlinuz: string, outFile: string): { size: number; kind: PayloadKind } {
  const img = fs.readFileSync(vmlinuz);
  const label = path.basename(vmlinuz);
  const { offset, length } = bzImagePayload(img, label);
  const payload = img.subarray(offset, offset + length);
  const magic = payload.length >= 4 ? payload.readUInt32LE(0) : -1;
  if (magic !== LZ4_LEGACY_MAGIC && magic !== ZSTD_MAGIC) {
    const head = payload.subarray(0, 6).toString('hex');
    const kind = PAYLOAD_MAGICS.find(([m]) => head.startsWith(m));
    throw new LoadError(`${label}: byte 0x${offset.toString(16)}: payload is ${kind ? kind[1] : `'${head}'`}, expected LZ4 legacy (02 21 4c 18) or zstd (28 b5 2f fd)`);
  }
  const fd = fs.openSync(outFile, 'w');
  const sink = (c: Uint8Array): void => {
    fs.writeSync(fd, c);
  };
  let size: number;
  let trailer: number | null;
  let kind: PayloadKind;
  try {
    if (magic === ZSTD_MAGIC) {
      kind = 'zstd';
      size = decompressZstd(payload, sink, { file: label, base: offset });
      trailer = payload.readUInt32LE(payload.length - 4);
    } else {
      kind = 'lz4';
      const r: Lz4LegacyResult = decompressLz4Legacy(payload, sink, { file: label, base: offset });
      size = r.size;
      trailer = r.trailer;
    }
  } finally {
    fs.closeSync(fd);
  }
  if (trailer !== null && trailer !== size) {
    throw new LoadError(`${label}: byte 0x${(offset + length - 4).toString(16)}: payload says it expands to 0x${trailer.toString(16)} bytes, got 0x${size.toString(16)}`);
  }
  return { size, kind };
}
