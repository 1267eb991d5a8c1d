// gdb on Debian's 6.1 kernel: a breakpoint on the kernel's own _raw_spin_unlock, hit and
// continued, leaves the deadlock where it is without gdb (issue 12 measured 10,653
// steps instead of 14,621 before runs became resumable); x/6xb shows the site's real
// bytes under the breakpoint; monitor bt unwinds through ORC.

import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { runScenario } from '../../kernel-model/scenario/run';
import { gdbSession, prepare, cleanup } from '../debug/gdb-driver';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';

const FILE = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios', 'kernel', 'real-nmi-deadlock-primary.json');

beforeAll(() => testKernel(), FETCH_TIMEOUT_MS);
afterAll(cleanup);

describe('gdb on the real kernel', () => {
  it('breaks in _raw_spin_unlock, shows the pv site bytes, and reaches the same deadlock at the same step', async () => {
    const plain = runScenario(loadScenario(FILE), {}, FILE);
    expect(plain.outcome).toBe('deadlock');
    const run = prepare(FILE);
    const site = run.img.sites.find((s) => run.m.symbolize(s.address).startsWith('_raw_spin_unlock+'))!;
    const bytes = [...run.m.mem.readBytes(site.address, 6)].map((b) => '0x' + b.toString(16).padStart(2, '0'));
    const out = await gdbSession(run, ['break _raw_spin_unlock', 'continue', `x/6xb 0x${site.address.toString(16)}`, 'continue', 'delete', 'continue', 'monitor bt 0']);
    expect(out.stdout).toMatch(/hit Breakpoint 1, 0x[0-9a-f]+ in _raw_spin_unlock/);
    expect(out.stdout).toContain(bytes.join('\t'));
    expect(out.stdout).toContain(`deadlock at machine step ${plain.steps}`);
    expect(out.stdout).toMatch(/_raw_spin_lock\+0x[0-9a-f]+ {2}\(orc\)/);
  });
});
