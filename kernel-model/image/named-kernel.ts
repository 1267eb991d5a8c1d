// Names for the downloaded Debian kernels: "debian-6.1" and "debian-6.12" stand for
// the release's pinned kernel in the cache (npm run fetch-kernel -- --release R puts
// it there). Anything else is a path the caller gives, with its own System.map.

import * as fs from 'fs';
import * as path from 'path';
import { defaultCacheDir, checkCachedKernel } from './download';
import { KERNEL_RELEASES, type ReleaseName } from './releases';
import { ImageError } from './kernel-image';

export interface KernelPaths {
  vmlinux: string;
  systemMap: string;
}

/** The release a "debian-<release>" name stands for, or undefined for any other name. */
export function debianKernelName(name: string): ReleaseName | undefined {
  const m = /^debian-(\d+\.\d+)$/.exec(name);
  return m && m[1] in KERNEL_RELEASES ? (m[1] as ReleaseName) : undefined;
}

/** The cached pinned kernel of a release, or an error saying how to fetch it. */
export function cachedDebianKernel(release: ReleaseName, cacheDir = defaultCacheDir()): KernelPaths {
  const r = KERNEL_RELEASES[release];
  const dir = path.join(cacheDir, r.pinned);
  const m = checkCachedKernel(dir);
  if (!m) throw new ImageError(`debian-${release}: ${r.pinned} is not in the cache (run npm run fetch-kernel -- --release ${release})`);
  return { vmlinux: path.join(dir, m.vmlinux.file), systemMap: path.join(dir, m.systemMap.file) };
}

/** A vmlinux path with its System.map: the one given, else the one beside it; errors name the missing file. */
export function localKernel(vmlinux: string, systemMap?: string): KernelPaths {
  if (!fs.existsSync(vmlinux)) throw new ImageError(`${vmlinux}: no such file (vmlinux)`);
  const map = systemMap ?? path.join(path.dirname(vmlinux), 'System.map');
  if (!fs.existsSync(map)) throw new ImageError(`${map}: no such file (System.map${systemMap ? '' : ' beside the vmlinux; give one with --map or "systemMap"'})`);
  return { vmlinux, systemMap: map };
}
