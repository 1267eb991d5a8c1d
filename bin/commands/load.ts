// `textpoke load <image>`: what was loaded — sections, symbol count, paravirt sites
// by op, alternatives.

import type { Argv } from 'yargs';
import { summarizeImage, formatImageSummary } from '../../kernel-model/present/image-summary';
import { print, printJson } from '../output';
import { openImage, imageOptions, type ImageArgs } from '../image-args';

export interface LoadArgs extends ImageArgs {
  json: boolean;
}

export function loadCommand(y: Argv): Argv<LoadArgs> {
  return imageOptions(y)
    .option('json', { type: 'boolean', default: false, describe: 'print the summary as one JSON object' })
    .example('$0 load minikernel', 'the committed fixture kernel')
    .example('$0 load .cache/kernel/6.1.0-*/vmlinux --map .cache/kernel/6.1.0-*/System.map', 'a Debian vmlinux with its System.map') as unknown as Argv<LoadArgs>;
}

export function runLoad(a: LoadArgs): number {
  const s = summarizeImage(openImage(a));
  if (a.json) printJson(s);
  else print(formatImageSummary(s));
  return 0;
}
