// The options every command that reads a kernel image shares: the image (a fixture
// name, a fixture .bin/.json, or an ELF vmlinux), its System.map, its manifest.

import type { Argv } from 'yargs';
import { loadImage } from '../kernel-model/image/load';
import type { KernelImage } from '../kernel-model/image/kernel-image';
import { inputFile } from './args';
import { existsSync } from 'fs';
import { basename, dirname, join } from 'path';
import { FixtureImage } from '../kernel-model/image/fixture-image';

export interface ImageArgs {
  image: string;
  map?: string;
  manifest?: string;
}

export function imageOptions(y: Argv): Argv {
  return y
    .positional('image', { type: 'string', demandOption: true, describe: 'fixture name (minikernel), fixture .bin/.json, or ELF vmlinux' })
    .option('map', { type: 'string', describe: 'System.map of a vmlinux (default: the one beside it)' })
    .option('manifest', { type: 'string', describe: "a fixture blob's JSON manifest, when it is not beside the blob" });
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

export function openImage(a: ImageArgs, path = a.image): KernelImage {
  inputFile(path, 'image');
  if (a.map !== undefined) inputFile(a.map, '--map');
  if (a.manifest !== undefined) inputFile(a.manifest, '--manifest');
  return loadImage(path, { systemMap: a.map, manifest: a.manifest });
}
