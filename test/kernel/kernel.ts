// Shared setup for tests on the real Debian kernel: makes sure it is in .cache/kernel
// (downloading it on a fresh machine, a quick manifest check otherwise) and returns
// its files. Call from beforeAll with a long timeout.

import { downloadKernel, type KernelFiles } from '../../kernel-model/image/download';

let pending: Promise<KernelFiles> | null = null;

export function testKernel(): Promise<KernelFiles> {
  pending ??= downloadKernel({
    // A cached kernel keeps test results stable when Debian publishes a newer ABI;
    // TEXTPOKE_KERNEL picks a specific one.
    preferCached: true,
    log: (s) => process.stderr.write(`test kernel: ${s}\n`),
  });
  return pending;
}

/** Timeout for a beforeAll that may download ~300 MB. */
export const FETCH_TIMEOUT_MS = 30 * 60 * 1000;
