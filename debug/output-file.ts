// Writing an output file the way every textpoke command promises: to a temporary name
// in the same directory, renamed into place only when complete, so a failure leaves
// no partial file and never clobbers an input.

import { renameSync, rmSync, writeFileSync } from 'fs';
import { basename, dirname, join } from 'path';

export function writeFileViaTemp(path: string, data: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
