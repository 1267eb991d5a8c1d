// Real gdb against `textpoke gdb`'s stub: threads, breakpoints, registers, memory,
// stepping, watchpoints and monitor commands, each checked against the machine itself.

import { runScenario } from '../../kernel-model/scenario/run';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { REGISTERS } from '../../debug/registers';
import { join } from 'path';
import { gdbInstalled, gdbSession, prepare, prepareImage, cleanup, hex, SCENARIOS } from './gdb-driver';

afterAll(cleanup);

const DEADLOCK = 'nmi-deadlock-primary';

describe('gdb against the stub', () => {
  it('gdb is installed (CI: .ci/run installs it)', () => {
    expect(gdbInstalled()).toBe(true);
  });

  it('connects; info threads lists every CPU with its context', async () => {
    const run = prepareImage('minikernel', 4);
    const out = await gdbSession(run, ['info threads']);
    for (let c = 0; c < 4; c++) expect(out.stdout).toMatch(new RegExp(`Thread ${c + 1} \\(CPU${c} thread\\)`));
    expect(out.stdout).not.toMatch(/Thread 5/);
  });

  it('breaks at the NMI handler, shows the context stack, reads registers and memory, steps one instruction', async () => {
    const run = prepare(DEADLOCK);
    const nmi = run.m.symbols.resolve('asm_exc_nmi')!;
    const lock = run.m.symbols.resolve('nmi_lock')!;
    const out = await gdbSession(run, [
      'break asm_exc_nmi',
      'continue',
      'info threads',
      'echo ==regs\\n',
      'info registers rip rsp eflags cs ss gs_base cr0 cr4 efer',
      'echo ==mem\\n',
      'x/2xg &nmi_lock',
      'echo ==stepi\\n',
      'stepi',
      'info registers rip',
      'echo ==end\\n',
    ]);
    expect(out.stdout).toMatch(/Thread 2 hit Breakpoint 1, 0xffffffff[0-9a-f]+ in asm_exc_nmi/);
    expect(out.stdout).toMatch(/Thread 2 \(CPU1 thread > stop_machine > NMI\)/);
    // The registers gdb shows are the stopped CPU's (the machine has not moved since).
    const regs = out.stdout.split('==regs')[1].split('==mem')[0];
    expect(regs).toMatch(new RegExp(`rip\\s+${hex(nmi)}`));
    expect(regs).toMatch(/cs\s+0x10\b/);
    expect(regs).toMatch(/cr0\s+0x80050033\b/);
    expect(regs).toMatch(/efer\s+0xd01\b/);
    // Memory: the lock word as the machine holds it at this stop.
    const mem = out.stdout.split('==mem')[1].split('==stepi')[0];
    expect(mem).toContain(hex(lock));
    // stepi: RIP moves to the next instruction (asm_exc_nmi opens with a one-byte push).
    const after = out.stdout.split('==stepi')[1];
    expect(after).toMatch(new RegExp(`rip\\s+${hex(nmi + 1n)}`));
  });

  it('x/6xb at a patched site shows its real bytes while a breakpoint is set there (no int3 in guest text)', async () => {
    const run = prepare(DEADLOCK);
    const site = run.img.sites.find((s) => s.op === 'lock.queued_spin_unlock')!;
    const before = run.m.mem.readBytes(site.address, 6);
    const out = await gdbSession(run, [`break *${hex(site.address)}`, 'continue', `x/6xb ${hex(site.address)}`]);
    const line = out.stdout.split('\n').find((l) => l.startsWith(`${hex(site.address)} `) || l.startsWith(`${hex(site.address)} <`) || l.startsWith(`${hex(site.address)}:`));
    expect(line).toBeDefined();
    const shown = [...line!.matchAll(/0x([0-9a-f]{2})\b/g)].map((m) => parseInt(m[1], 16));
    expect(shown).toEqual([...before]);
    expect(shown[0]).not.toBe(0xcc);
    // And the machine's bytes are still the site's own: the breakpoint is a code hook.
    expect([...run.m.mem.readBytes(site.address, 6)]).toEqual([...before]);
  });

  it('a watchpoint on text_poke_state.state stops at each state change, as the run without gdb makes them', async () => {
    // The reference: every write to the state word that changes it, in a run without gdb.
    const ref = prepare(DEADLOCK);
    const addr = ref.k.L.tps.state;
    const seen: number[] = [];
    let last = ref.m.mem.readU32(addr);
    ref.m.mem.watch(addr, 4, () => {
      const v = ref.m.mem.readU32(addr);
      if (v !== last) seen.push(v);
      last = v;
    });
    const r = ref.m.run({ schedule: ref.schedule, maxSteps: ref.maxSteps });
    expect(r.stop).toBe('deadlock');
    expect(seen.length).toBeGreaterThan(2);

    const run = prepare(DEADLOCK);
    const out = await gdbSession(run, [`watch *(unsigned int *)${hex(addr)}`, 'commands', 'continue', 'end', 'continue', 'echo ==after\\n', 'monitor where']);
    const values = [...out.stdout.matchAll(/New value = (\d+)/g)].map((m) => Number(m[1]));
    expect(values).toEqual(seen);
    expect(out.stdout).toMatch(/Hardware watchpoint 1: \*\(unsigned int \*\)/);
    // The run then ends in the same deadlock; `monitor where` names the cycle.
    const after = out.stdout.split('==after')[1];
    expect(after).toMatch(/wait-for cycle: CPU0 -> CPU1 -> CPU0/);
  });

  it('monitor where, state, nmi and explain at the deadlock', async () => {
    const run = prepare(DEADLOCK);
    const out = await gdbSession(run, ['continue', 'echo ==where\\n', 'monitor where', 'echo ==state\\n', 'monitor state', 'echo ==nmi\\n', 'monitor nmi 1', 'echo ==explain\\n', 'monitor explain']);
    expect(out.stdout).toMatch(/textpoke: the run ended: deadlock at machine step \d+/);
    expect(out.stdout).toMatch(/received signal SIGSTOP/);
    const where = out.stdout.split('==where')[1].split('==state')[0];
    expect(where).toMatch(/CPU1 \[thread > stop_machine > NMI > #BP\] at poke_int3_handler/);
    expect(where).toMatch(/wait-for cycle: CPU0 -> CPU1 -> CPU0/);
    expect(out.stdout.split('==state')[1]).toMatch(/state\s+\d+ \(PATCH_SYNC_0\)/);
    expect(out.stdout.split('==nmi')[1]).toMatch(/NMI latched on CPU1|already has an NMI latched/);
    expect(out.stdout.split('==explain')[1]).toMatch(/deadlock/);
  });

  // Resuming continues the machine's own schedule from where it stopped (explore's
  // resumable runs): before them this run deadlocked at step 17,436 instead of 17,537.
  it('the deadlock reached under gdb, with breakpoints and continues, is the one reached without it, at the same step', async () => {
    const file = join(SCENARIOS, `${DEADLOCK}.json`);
    const plain = runScenario(loadScenario(file), {}, file);
    expect(plain.outcome).toBe('deadlock');
    const run = prepare(DEADLOCK);
    const out = await gdbSession(run, ['break queued_spin_unlock', 'continue', 'continue', 'delete 1', 'continue', 'monitor where']);
    const m = /deadlock at machine step (\d+)/.exec(out.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBe(plain.steps);
    expect(out.stdout).toMatch(/wait-for cycle: CPU0 -> CPU1 -> CPU0/);
  });

  it('the target description gdb accepted has every register in the g packet', async () => {
    const run = prepare(DEADLOCK);
    const out = await gdbSession(run, ['maint print raw-registers']);
    for (const r of REGISTERS) expect(out.stdout).toMatch(new RegExp(`^ ${r.name}\\s`, 'm'));
  });
});
