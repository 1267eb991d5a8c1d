// Backtraces on the fixture kernel at the seed's deadlock: the stack scan finds each
// context's callers, stops at each context's boundary, and marks what it cannot vouch
// for; the console's `bt` and gdb's `monitor bt` show them, `where` stays the wait-for graph.

import { Unwinder, formatBacktrace } from '../../kernel-model/scenario/backtrace';
import { vectorNamer } from '../../kernel-model/scenario/run';
import { StepConsole } from '../../kernel-model/present/console';
import { gdbSession, prepare, cleanup } from './gdb-driver';

afterAll(cleanup);

describe('bt at the deadlock', () => {
  const run = prepare('nmi-deadlock-primary');
  const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
  const un = new Unwinder(run.m, run.img, vectorNamer(run.k));

  it('fixtures have no ORC tables; the scan is used', () => {
    expect(r.stop).toBe('deadlock');
    expect(un.hasOrc).toBe(false);
  });

  it("CPU1: the int3 handler, the NMI handler's unlock that hit the int3, and stop_machine in the thread", () => {
    const f = un.backtrace(run.m.cpus[1]);
    const at = (ctx: string): string[] => f.filter((x) => x.context === ctx).map((x) => x.host ?? x.symbol.replace(/\+0x[0-9a-f]+$/, ''));
    expect(at('#BP')).toEqual(['poke_int3_handler', 'asm_exc_int3']);
    expect(at('NMI').slice(0, 2)).toEqual(['queued_spin_unlock', 'nmi_lock_handler_unlock']);
    expect(at('NMI')).toContain('nmi_loop');
    expect(at('thread')[0]).toBe('multi_cpu_stop');
    // The interrupted RIP in the NMI is just past the int3 at the unlock site.
    const site = run.img.sites.find((s) => s.op === 'lock.queued_spin_unlock')!;
    expect(f.find((x) => x.context === 'NMI')!.address).toBe(site.address + 1n);
    // A direct call into the frame above is reliable.
    expect(f.find((x) => x.symbol.startsWith('nmi_lock_handler_unlock'))!.reliable).toBe(true);
    const text = formatBacktrace(f);
    expect(text).toContain('    --- #BP interrupted NMI ---');
    expect(text).toContain('    --- NMI interrupted thread ---');
  });

  it('CPU0: spinning in the NMI handler on nmi_lock, over the patch request in its thread', () => {
    const f = un.backtrace(run.m.cpus[0]);
    expect(f[0].context).toBe('NMI');
    expect(f.some((x) => x.context === 'NMI' && x.symbol.startsWith('nmi_lock_handler+'))).toBe(true);
    expect(f.find((x) => x.context === 'thread')!.host).toBe('textpoke_patch_request');
  });

  it('console: bt shows the stack, where stays the wait-for graph', () => {
    const con = new StepConsole(run);
    const bt = con.exec('bt 1');
    expect(bt.error).toBeUndefined();
    expect(bt.text).toMatch(/^CPU1 \[thread > stop_machine > NMI > #BP\] at poke_int3_handler\n#0 /);
    expect(con.exec('backtrace 1').text).toBe(bt.text);
    expect(con.exec('where').text).toMatch(/wait-for cycle: CPU0 -> CPU1 -> CPU0/);
  });
});

describe('monitor bt in gdb', () => {
  it('prints the same frames at the deadlock', async () => {
    const run = prepare('nmi-deadlock-primary');
    const out = await gdbSession(run, ['continue', 'monitor bt 1']);
    expect(out.stdout).toMatch(/#0 {4}0x[0-9a-f]+ in poke_int3_handler \[host routine poke_int3_handler\]/);
    expect(out.stdout).toMatch(/--- #BP interrupted NMI ---/);
    expect(out.stdout).toMatch(/in nmi_lock_handler_unlock\+0x[0-9a-f]+ {2}\(scan\)/);
  });
});
