// bench/memory.ts: the resident-memory figure of the runtime patch on many CPUs, run in
// a child process. Shape and units only (no memory or speed assertions); it needs
// Debian's 6.1 kernel in .cache/kernel and is skipped without it.

import { spawnSync } from 'child_process';
import { join } from 'path';
import { measureMemory } from '../bench/memory';
import { cachedKernelVersions } from '../kernel-model/image/download';

const have61 = cachedKernelVersions().some((v) => v.startsWith('6.1.'));
const script = join(__dirname, '..', 'bench', 'memory.js');

describe('bench memory', () => {
  (have61 ? it : it.skip)('8 CPUs: the run completes and reports its peak RSS, heap and guest pages in bytes', () => {
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

  it('a bad CPU count: one usage line, exit status 2', () => {
    const r = spawnSync(process.execPath, [script, 'many'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['usage: node dist/bench/memory.js CPUS']);
  });
});
