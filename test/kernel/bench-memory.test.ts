// bench/memory.ts on Debian's 6.1 kernel: the runtime patch on 8 CPUs in a child
// process reports its peak RSS, heap and guest pages. Shape and units only (no memory
// or speed assertions). Here rather than with the unit tests so that it never skips:
// the kernel is downloaded first.

import { measureMemory } from '../../bench/memory';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';

beforeAll(async () => {
  await testKernel('6.1');
}, FETCH_TIMEOUT_MS);

describe('bench memory on Debian 6.1', () => {
  it('8 CPUs: the run completes and reports its peak RSS, heap and guest pages in bytes', () => {
    const f = measureMemory(8);
    if ('error' in f) throw new Error(f.error);
    expect(f.cpus).toBe(8);
    expect(Number.isInteger(f.maxRss) && Number.isInteger(f.rss)).toBe(true);
    // The peak is at least what is resident at the end, and holds the heap and the guest's pages.
    expect(f.maxRss).toBeGreaterThanOrEqual(f.rss);
    expect(f.rss).toBeGreaterThan(f.arrayBuffers);
    expect(f.arrayBuffers).toBeGreaterThan(14e6); // at least Debian's 14 MB of .text
    expect(f.steps).toBeGreaterThan(0);
    expect(f.seconds).toBeGreaterThan(0);
  }, 120_000);
});
