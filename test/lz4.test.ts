import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  decompressLz4Legacy, decompressLz4LegacyToBuffer, lz4DecompressBlock, LZ4_LEGACY_BLOCK_SIZE,
} from '../kernel-model/image/lz4';
import { bzImagePayload } from '../kernel-model/image/bzimage';
import { LoadError } from '../kernel-model/image/elf';
import { requireTools } from './helpers/tools';

const MAGIC = [0x02, 0x21, 0x4c, 0x18];

function frame(...blocks: number[][]): Uint8Array {
  const out: number[] = [...MAGIC];
  for (const b of blocks) out.push(b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24, ...b);
  return Uint8Array.from(out);
}

const ascii = (s: string): number[] => Array.from(Buffer.from(s, 'latin1'));

describe('LZ4 block decoding (hand-made vectors)', () => {
  it('decodes a literal-only block', () => {
    expect(decompressLz4LegacyToBuffer(frame([0x50, ...ascii('hello')])).toString()).toBe('hello');
  });

  it('decodes an overlapping match (a run) and extended lengths', () => {
    // "abc", then a match at offset 3 of length 4+5 = 9, then literal "x".
    const b = [0x35, ...ascii('abc'), 3, 0, 0x10, ...ascii('x')];
    expect(decompressLz4LegacyToBuffer(frame(b)).toString()).toBe('abcabcabcabcx');
    // 15 + 255 + 3 = 273 literals, then a match of 15 + 4 + 1 = 20 copies of the last byte.
    const lits = Array.from({ length: 273 }, (_, i) => 97 + (i % 26));
    const ext = [0xff, 255, 3, ...lits, 1, 0, 1, 0x10, ...ascii('!')];
    const out = decompressLz4LegacyToBuffer(frame(ext));
    expect(out.length).toBe(273 + 20 + 1);
    expect(out.subarray(273, 293).every((x) => x === lits[272])).toBe(true);
  });

  it('concatenated frames and a size trailer', () => {
    const a = frame([0x30, ...ascii('abc')]);
    const b = frame([0x30, ...ascii('def')]);
    const withTrailer = Uint8Array.from([...a, ...b, 6, 0, 0, 0]);
    const chunks: string[] = [];
    const r = decompressLz4Legacy(withTrailer, (c) => chunks.push(Buffer.from(c).toString()));
    expect(chunks.join('')).toBe('abcdef');
    expect(r).toEqual({ size: 6, consumed: withTrailer.length - 4, trailer: 6 });
  });

  it('refuses bad input with the byte offset', () => {
    expect(() => decompressLz4LegacyToBuffer(Uint8Array.from([1, 2, 3, 4]), { file: 'x.lz4' })).toThrow(
      /^x\.lz4: byte 0x0: expected the LZ4 legacy magic 02 21 4c 18, found 01 02 03 04$/,
    );
    // A match reaching before the start of the block.
    expect(() => decompressLz4LegacyToBuffer(frame([0x10, ...ascii('a'), 5, 0]), { file: 'x' })).toThrow(/match offset 5 points before the start/);
    // Block length running past the end.
    const cut = frame([0x50, ...ascii('hello')]).subarray(0, 9);
    expect(() => decompressLz4LegacyToBuffer(Uint8Array.from([...cut, 0, 0]), { file: 'x' })).toThrow(/byte 0x4: LZ4 block of 0x6 bytes runs past the end/);
    // Literals running past the end of the block.
    expect(() => lz4DecompressBlock(Uint8Array.from([0x50, 1, 2]), 0, 3, new Uint8Array(16))).toThrow(LoadError);
    // Output past the buffer.
    expect(() => lz4DecompressBlock(Uint8Array.from([0x50, 1, 2, 3, 4, 5]), 0, 6, new Uint8Array(4))).toThrow(/expands past 0x4/);
  });
});

describe('LZ4 legacy frames from the lz4 command', () => {
  let dir: string;
  beforeAll(() => {
    // A missing tool fails the suite, never skips it: CI installs lz4 (.ci/run).
    requireTools(['lz4']);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'textpoke-lz4-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function roundTrip(data: Buffer, level = '-1'): void {
    const src = path.join(dir, 'in');
    const dst = path.join(dir, 'out.lz4');
    fs.writeFileSync(src, data);
    const r = spawnSync('lz4', ['-l', level, '-f', '-q', src, dst]);
    expect(r.status).toBe(0);
    const out = decompressLz4LegacyToBuffer(fs.readFileSync(dst));
    expect(out.length).toBe(data.length);
    expect(out.equals(data)).toBe(true);
  }

  it('round-trips text, random and repetitive data', () => {
    roundTrip(Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(5000)));
    roundTrip(crypto.randomBytes(100000));
    roundTrip(Buffer.alloc(70000, 0xcc), '-9');
    roundTrip(Buffer.alloc(0));
  });

  it('round-trips data spanning several 8 MiB blocks', () => {
    // Compressible but not trivial: machine-code-like mixture.
    const n = LZ4_LEGACY_BLOCK_SIZE * 2 + 12345;
    const b = Buffer.alloc(n);
    let x = 1;
    for (let i = 0; i < n; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      b[i] = i % 64 < 40 ? (x >>> 24) & 0x0f : 0xcc;
    }
    roundTrip(b);
  });
});

describe('bzImage payload location', () => {
  it('reads payload_offset/length from the boot-protocol header', () => {
    const img = Buffer.alloc(0x1000);
    img[0x1f1] = 3; // setup sectors: protected-mode code at 4 * 512
    img.write('HdrS', 0x202, 'latin1');
    img.writeUInt16LE(0x20f, 0x206);
    img.writeUInt32LE(0x100, 0x248);
    img.writeUInt32LE(0x20, 0x24c);
    expect(bzImagePayload(img)).toEqual({ offset: 0x900, length: 0x20 });
    img.writeUInt32LE(0x1000, 0x24c);
    expect(() => bzImagePayload(img, 'vmlinuz')).toThrow(/^vmlinuz: byte 0x248: payload \[0x900, 0x1900\) runs past end of file/);
    img.write('XXXX', 0x202, 'latin1');
    expect(() => bzImagePayload(img, 'vmlinuz')).toThrow(/not a bzImage/);
  });
});
