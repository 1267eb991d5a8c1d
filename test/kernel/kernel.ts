// Shared setup for tests on the real Debian kernels: makes sure the release's pinned
// kernel is in .cache/kernel (downloading it on a fresh machine, a quick manifest
// check otherwise) and returns its files. Call from beforeAll with a long timeout.

import { downloadKernel, type KernelFiles } from '../../kernel-model/image/download';
import type { ReleaseName } from '../../kernel-model/image/releases';

const pending = new Map<ReleaseName, Promise<KernelFiles>>();

export function testKernel(release: ReleaseName = '6.1'): Promise<KernelFiles> {
  let p = pending.get(release);
  if (!p) {
    p = downloadKernel({ release, log: (s) => process.stderr.write(`test kernel ${release}: ${s}\n`) });
    pending.set(release, p);
  }
  return p;
}

/** Timeout for a beforeAll that may download ~350 MB. */
export const FETCH_TIMEOUT_MS = 30 * 60 * 1000;
