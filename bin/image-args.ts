// The options every command that reads a kernel image shares: the image (a fixture
// name, a fixture .bin/.json, an ELF vmlinux, or debian-6.1/debian-6.12 for the
// downloaded kernel) as the positional or --image, its System.map (--map), its
// manifest, and the CPU profile boot patching assumes (--cpu).

import type { Argv } from 'yargs';
import { loadImage } from '../kernel-model/image/load';
import type { KernelImage } from '../kernel-model/image/kernel-image';
import { VmlinuxImage } from '../kernel-model/image/vmlinux-image';
import { loadCpuProfile, type CpuProfile } from '../kernel-model/image/cpu-profile';
import { inputFile } from './args';
import { UserError } from './errors';
import { existsSync } from 'fs';
import { basename, dirname, join } from 'path';
import { FixtureImage } from '../kernel-model/image/fixture-image';

export interface ImageArgs {
  image?: string;
  map?: string;
  manifest?: string;
  cpu?: string;
}

export function imageOptions(y: Argv): Argv {
  return y
    .positional('image', { type: 'string', describe: 'fixture name (minikernel), fixture .bin/.json, ELF vmlinux, or debian-6.1 / debian-6.12' })
    .option('image', { type: 'string', describe: 'the image, as an option (the same values as the positional)' })
    .option('map', { type: 'string', describe: 'System.map of a vmlinux (default: the one beside it)' })
    .option('manifest', { type: 'string', describe: "a fixture blob's JSON manifest, when it is not beside the blob" })
    .option('cpu', { type: 'string', describe: 'CPU for boot patching: a QEMU model with a profile (qemu64, max, Skylake-Client) or a profile .json (default qemu64)' });
}

/** The image argument: the positional or --image (yargs gives one value, or an array when both are given). */
function imagePath(a: ImageArgs): string {
  const v = a.image as string | string[] | undefined;
  if (Array.isArray(v)) {
    if (new Set(v).size > 1) throw new UserError(`--image ${v[1]}: an image was also given as ${v[0]}; give one`);
    return v[0];
  }
  if (v === undefined) throw new UserError('name an image (a fixture, a vmlinux, or debian-6.1 / debian-6.12), as the first argument or with --image');
  return v;
}

/** The files an opened image was read from, each with what it is (outputs must not name them). */
export function imageInputs(img: KernelImage, a: ImageArgs): { path: string; what: string }[] {
  if (img instanceof FixtureImage) {
    return [
      { path: img.path, what: 'input fixture manifest' },
      { path: join(dirname(img.path), basename(img.manifest.blob)), what: 'input fixture blob' },
    ];
  }
  const map = a.map ?? join(dirname(img.path), 'System.map');
  return [
    { path: img.path, what: 'input image' },
    ...(existsSync(map) ? [{ path: map, what: 'System.map of the input image' }] : []),
  ];
}

export function openImage(a: ImageArgs, path = imagePath(a), original?: KernelImage): KernelImage {
  if (!/^debian-\d+\.\d+$/.test(path)) inputFile(path, 'image');
  if (a.map !== undefined) inputFile(a.map, '--map');
  if (a.manifest !== undefined) inputFile(a.manifest, '--manifest');
  const img = loadImage(path, { systemMap: a.map, manifest: a.manifest, original });
  if (a.cpu !== undefined) cpuProfile(a, img);
  return img;
}

/** The --cpu profile for an image's release (checked when the image is opened, so a bad name fails early). */
export function cpuProfile(a: ImageArgs, img: KernelImage): CpuProfile | undefined {
  if (a.cpu === undefined) return undefined;
  if (!(img instanceof VmlinuxImage)) throw new UserError(`--cpu: ${img.path} is a fixture; CPU profiles apply to a vmlinux`);
  if (a.cpu.includes('/') || a.cpu.endsWith('.json')) inputFile(a.cpu, '--cpu');
  return loadCpuProfile(a.cpu, img.vm.release());
}
