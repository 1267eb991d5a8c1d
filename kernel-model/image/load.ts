// One entry point for every kind of kernel image: a fixture (its .json manifest or
// .bin blob, or a bare fixture name), an ELF vmlinux (with System.map), or
// "debian-6.1"/"debian-6.12" for the release's downloaded kernel.

import { existsSync } from 'fs';
import { isElfFile } from './coverage-input';
import type { KernelImage } from './kernel-image';
import { ImageError } from './kernel-image';
import { loadFixture } from './fixture-image';
import { loadVmlinuxImage, VmlinuxImage } from './vmlinux-image';
import { cachedDebianKernel, debianKernelName } from './named-kernel';

export interface LoadImageOptions {
  /** System.map for a vmlinux (default: one beside it). */
  systemMap?: string;
  /** Manifest for a fixture blob whose manifest is not beside it. */
  manifest?: string;
  /** The unpatched image of the same kernel (a boot-patched 6.8+ vmlinux takes its paravirt sites from it). */
  original?: KernelImage;
}

export function loadImage(path: string, opts: LoadImageOptions = {}): KernelImage {
  if (opts.manifest) return loadFixture(opts.manifest);
  const release = debianKernelName(path);
  if (release) {
    const k = cachedDebianKernel(release);
    return loadVmlinuxImage(k.vmlinux, opts.systemMap ?? k.systemMap);
  }
  if (!path.includes('/') && !path.includes('.') && !existsSync(path)) return loadFixture(path);
  if (!existsSync(path)) throw new ImageError(`${path}: no such file`);
  if (path.endsWith('.json') || path.endsWith('.bin')) return loadFixture(path);
  if (isElfFile(path)) return loadVmlinuxImage(path, opts.systemMap, opts.original instanceof VmlinuxImage ? opts.original : undefined);
  throw new ImageError(`${path}: neither an ELF vmlinux nor a fixture (.bin with its .json manifest)`);
}
