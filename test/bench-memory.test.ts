// bench/memory.ts: the resident-memory figure of the runtime patch on many CPUs, run in
// a child process. Its run on Debian's kernel is tested with the real-kernel tests
// (test/kernel/bench-memory.test.ts); this one needs no kernel.

import { spawnSync } from 'child_process';
import { join } from 'path';

const script = join(__dirname, '..', 'bench', 'memory.js');

describe('bench memory', () => {
  it('a bad CPU count: one usage line, exit status 2', () => {
    const r = spawnSync(process.execPath, [script, 'many'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['usage: node dist/bench/memory.js CPUS']);
  });
});
