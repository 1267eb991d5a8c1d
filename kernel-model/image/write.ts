// Writing a patched image in its input's format: a fixture as blob + manifest, a
// vmlinux as a copy of the ELF with bytes changed in place. Output goes to a
// temporary file renamed over the target at the end, so a failure writes nothing.

import { createHash } from 'crypto';
import { basename } from 'path';
import type { KernelImage } from './kernel-image';
import { ImageError } from './kernel-image';
import type { FixtureImage } from './fixture-image';
import type { VmlinuxImage } from './vmlinux-image';
import { OutputFile, writeOutputs } from './output-file';

/** The files writePatchedImage(img, …, out) writes: a vmlinux one, a fixture its blob and manifest. */
export function patchedImageFiles(img: KernelImage, out: string): string[] {
  if (img.kind === 'vmlinux') return [out];
  const binOut = out.endsWith('.json') ? out.replace(/\.json$/, '.bin') : out.endsWith('.bin') ? out : `${out}.bin`;
  return [binOut, binOut.replace(/\.bin$/, '.json')];
}

/** Writes `img` with `writes` (address -> bytes) applied to `out`. Returns the files written. */
export function writePatchedImage(img: KernelImage, writes: Map<bigint, Uint8Array>, out: string): string[] {
  if (img.kind === 'vmlinux') return [writeVmlinux(img as VmlinuxImage, writes, out)];
  return writeFixture(img as FixtureImage, writes, out);
}

function writeVmlinux(img: VmlinuxImage, writes: Map<bigint, Uint8Array>, out: string): string {
  const offsets = [...writes].map(([a, b]) => ({ off: img.fileOffset(a), b }));
  const f = new OutputFile(out, { copyOf: img.path });
  try {
    for (const { off, b } of offsets) f.write(b, off);
    f.commit();
  } catch (e) {
    f.abort();
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
  const [binOut, jsonOut] = patchedImageFiles(img, out);
  const manifest = { ...img.manifest, blob: basename(binOut), blobSha256: createHash('sha256').update(blob).digest('hex') };
  writeOutputs([
    { path: binOut, data: blob },
    { path: jsonOut, data: JSON.stringify(manifest, null, 2) + '\n' },
  ]);
  return [binOut, jsonOut];
}
