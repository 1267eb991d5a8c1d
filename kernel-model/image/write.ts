// Writing a patched image in its input's format: a fixture as blob + manifest, a
// vmlinux as a copy of the ELF with bytes changed in place. Output goes to a
// temporary file renamed over the target at the end, so a failure writes nothing.

import { copyFileSync, openSync, writeSync, closeSync, renameSync, rmSync, writeFileSync } from 'fs';
import { createHash } from 'crypto';
import { basename, dirname, join } from 'path';
import type { KernelImage } from './kernel-image';
import { ImageError } from './kernel-image';
import type { FixtureImage } from './fixture-image';
import type { VmlinuxImage } from './vmlinux-image';

/** Writes `img` with `writes` (address -> bytes) applied to `out`. Returns the files written. */
export function writePatchedImage(img: KernelImage, writes: Map<bigint, Uint8Array>, out: string): string[] {
  if (img.kind === 'vmlinux') return [writeVmlinux(img as VmlinuxImage, writes, out)];
  return writeFixture(img as FixtureImage, writes, out);
}

function writeVmlinux(img: VmlinuxImage, writes: Map<bigint, Uint8Array>, out: string): string {
  const offsets = [...writes].map(([a, b]) => ({ off: img.fileOffset(a), b }));
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  try {
    copyFileSync(img.path, tmp);
    const fd = openSync(tmp, 'r+');
    try {
      for (const { off, b } of offsets) writeSync(fd, b, 0, b.length, off);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return out;
}

function writeFixture(img: FixtureImage, writes: Map<bigint, Uint8Array>, out: string): string[] {
  const blob = img.blob.slice();
  for (const [a, b] of writes) {
    const off = Number(a - img.base);
    if (off < 0 || off + b.length > blob.length) throw new ImageError(`${img.path}: patch at 0x${a.toString(16)} is outside the blob`);
    blob.set(b, off);
  }
  const binOut = out.endsWith('.json') ? out.replace(/\.json$/, '.bin') : out.endsWith('.bin') ? out : `${out}.bin`;
  const jsonOut = binOut.replace(/\.bin$/, '.json');
  const manifest = { ...img.manifest, blob: basename(binOut), blobSha256: createHash('sha256').update(blob).digest('hex') };
  const tmpBin = `${binOut}.tmp-${process.pid}`;
  const tmpJson = `${jsonOut}.tmp-${process.pid}`;
  try {
    writeFileSync(tmpBin, blob);
    writeFileSync(tmpJson, JSON.stringify(manifest, null, 2) + '\n');
    renameSync(tmpBin, binOut);
    renameSync(tmpJson, jsonOut);
  } catch (e) {
    rmSync(tmpBin, { force: true });
    rmSync(tmpJson, { force: true });
    throw e;
  }
  return [binOut, jsonOut];
}
