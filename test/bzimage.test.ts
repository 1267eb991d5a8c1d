// bzImage payloads: the zstd path (Debian 6.12) on hand-made frames — raw and RLE
// blocks, several frames, the 4-byte size trailer — and the choice of decoder by magic.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decompressBzImage, decompressZstd } from '../kernel-model/image/bzimage';
import { LoadError } from '../kernel-model/image/elf';
import { normalizeVersion, pickRelease, pickVersion } from '../kernel-model/image/download';
import { KERNEL_RELEASES, newestFirst } from '../kernel-model/image/releases';

/** One zstd frame: single-segment header with a 1-byte content size, then the blocks. */
function zstdFrame(blocks: { type: 'raw' | 'rle'; data: number[]; size?: number }[]): number[] {
  const total = blocks.reduce((n, b) => n + (b.type === 'raw' ? b.data.length : b.size!), 0);
  const out = [0x28, 0xb5, 0x2f, 0xfd, 0x20, total];
  blocks.forEach((b, i) => {
    const last = i === blocks.length - 1 ? 1 : 0;
    const size = b.type === 'raw' ? b.data.length : b.size!;
    const h = (size << 3) | ((b.type === 'raw' ? 0 : 1) << 1) | last;
    out.push(h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, ...b.data);
  });
  return out;
}

const le32 = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];

/** A minimal bzImage: boot-protocol header with 4 setup sectors and the payload after them. */
function bzImage(payload: number[]): Buffer {
  const pm = 5 * 512;
  const img = Buffer.alloc(pm + payload.length);
  img[0x1f1] = 4;
  img.write('HdrS', 0x202, 'latin1');
  img.writeUInt16LE(0x20f, 0x206);
  img.writeUInt32LE(0, 0x248);
  img.writeUInt32LE(payload.length, 0x24c);
  Buffer.from(payload).copy(img, pm);
  return img;
}

function tmpFile(name: string, data: Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bzimage-'));
  const f = path.join(dir, name);
  fs.writeFileSync(f, data);
  return f;
}

describe('zstd payloads', () => {
  it('decodes raw and RLE blocks across two frames', () => {
    const a = zstdFrame([{ type: 'raw', data: [...Buffer.from('ELF')] }, { type: 'rle', data: [0x41], size: 5 }]);
    const b = zstdFrame([{ type: 'raw', data: [0x7a] }]);
    const payload = Uint8Array.from([...a, ...b, ...le32(9)]);
    const chunks: Uint8Array[] = [];
    const n = decompressZstd(payload, (c) => chunks.push(c), { file: 't', base: 0 });
    expect(n).toBe(9);
    expect(Buffer.concat(chunks).toString('latin1')).toBe('ELFAAAAAz');
  });

  it('a bzImage with a zstd payload decompresses to a file, checked against its trailer', () => {
    const f = zstdFrame([{ type: 'raw', data: [0x7f, 0x45, 0x4c, 0x46] }, { type: 'rle', data: [0], size: 60 }]);
    const vmlinuz = tmpFile('vmlinuz', bzImage([...f, ...le32(64)]));
    const out = path.join(path.dirname(vmlinuz), 'vmlinux');
    expect(decompressBzImage(vmlinuz, out)).toEqual({ size: 64, kind: 'zstd' });
    const got = fs.readFileSync(out);
    expect(got.subarray(0, 4).toString('hex')).toBe('7f454c46');
    expect(got.length).toBe(64);
  });

  it('a wrong trailer or a corrupt frame is one LoadError naming the byte', () => {
    const f = zstdFrame([{ type: 'raw', data: [1, 2, 3] }]);
    const bad = tmpFile('vmlinuz', bzImage([...f, ...le32(4)]));
    expect(() => decompressBzImage(bad, bad + '.out')).toThrow(/vmlinuz: byte 0x[0-9a-f]+: payload says it expands to 0x4 bytes, got 0x3/);
    const cut = tmpFile('vmlinuz', bzImage([...f.slice(0, f.length - 2), ...le32(3)]));
    expect(() => decompressBzImage(cut, cut + '.out')).toThrow(LoadError);
    const gz = tmpFile('vmlinuz', bzImage([0x1f, 0x8b, 8, 0, 0, 0]));
    expect(() => decompressBzImage(gz, gz + '.out')).toThrow(/payload is gzip, expected LZ4 legacy .* or zstd/);
  });
});

describe('kernel releases and pinned ABIs', () => {
  const env = process.env.TEXTPOKE_KERNEL;
  beforeEach(() => delete process.env.TEXTPOKE_KERNEL);
  afterAll(() => {
    if (env === undefined) delete process.env.TEXTPOKE_KERNEL;
    else process.env.TEXTPOKE_KERNEL = env;
  });

  it('each release defaults to its pinned ABI', () => {
    expect(pickVersion({}, KERNEL_RELEASES['6.1'])).toEqual({ version: '6.1.0-50-cloud-amd64', pinned: true });
    expect(pickVersion({}, KERNEL_RELEASES['6.12'])).toEqual({ version: '6.12.117+deb13-cloud-amd64', pinned: true });
    for (const r of Object.values(KERNEL_RELEASES)) expect(r.abi.test(r.pinned)).toBe(true);
  });

  it('short forms expand within their release; the release follows a named version', () => {
    expect(normalizeVersion('47', KERNEL_RELEASES['6.1'])).toBe('6.1.0-47-cloud-amd64');
    expect(normalizeVersion('118', KERNEL_RELEASES['6.12'])).toBe('6.12.118+deb13-cloud-amd64');
    expect(normalizeVersion('6.12.115+deb13.1', KERNEL_RELEASES['6.12'])).toBe('6.12.115+deb13.1-cloud-amd64');
    expect(() => normalizeVersion('6.12.117+deb13-cloud-amd64', KERNEL_RELEASES['6.1'])).toThrow(/Linux 6\.1 cloud ABI/);
    expect(pickRelease({ version: '6.12.111+deb13-cloud-amd64' }).name).toBe('6.12');
    expect(pickRelease({}).name).toBe('6.1');
    process.env.TEXTPOKE_KERNEL = '6.1.0-47-cloud-amd64';
    // The variable names a 6.1 ABI: it does not move the 6.12 kernel.
    expect(pickVersion({}, KERNEL_RELEASES['6.12']).version).toBe('6.12.117+deb13-cloud-amd64');
    expect(pickVersion({}, KERNEL_RELEASES['6.1'])).toEqual({ version: '6.1.0-47-cloud-amd64', pinned: false });
  });

  it('orders ABIs newest first by their numbers', () => {
    const v = ['6.12.107+deb13-cloud-amd64', '6.12.115+deb13.1-cloud-amd64', '6.12.115+deb13-cloud-amd64', '6.12.118+deb13-cloud-amd64'];
    expect([...v].sort(newestFirst)).toEqual(['6.12.118+deb13-cloud-amd64', '6.12.115+deb13.1-cloud-amd64', '6.12.115+deb13-cloud-amd64', '6.12.107+deb13-cloud-amd64']);
  });
});
