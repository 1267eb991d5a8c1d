// The options every command that reads a kernel image shares: the image (a fixture
// name, a fixture .bin/.json, or an ELF vmlinux), its System.map, its manifest.

import type { Argv } from 'yargs';
import { loadImage } from '../kernel-model/image/load';
import type { KernelImage } from '../kernel-model/image/kernel-image';
import { inputFile } from './args';

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

export function openImage(a: ImageArgs, path = a.image): KernelImage {
  inputFile(path, 'image');
  if (a.map !== undefined) inputFile(a.map, '--map');
  if (a.manifest !== undefined) inputFile(a.manifest, '--manifest');
  return loadImage(path, { systemMap: a.map, manifest: a.manifest });
}
