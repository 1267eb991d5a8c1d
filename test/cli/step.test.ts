// `textpoke step`: the stepping console driven through a pipe (as a script would),
// with --cmd, and with --json.

import { join } from 'path';
import { textpoke, SCENARIOS, HEX_ADDR } from './textpoke';

const DEADLOCK = join(SCENARIOS, 'nmi-deadlock-primary.json');

/** Splits a piped session's stdout into each command's output. */
function session(stdout: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\(textpoke\) (.*)$/.exec(line);
    if (m) {
      cur = [];
      const k = out.has(m[1]) ? `${m[1]} #${[...out.keys()].filter((x) => x.startsWith(m[1])).length + 1}` : m[1];
      out.set(k, cur);
    } else if (line) cur.push(line);
  }
  return out;
}

describe('textpoke step through a pipe', () => {
  it('steps a CPU into an NMI, inspects registers and memory, continues to the deadlock and prints where', () => {
    const script = [
      'break asm_exc_nmi',
      'continue',
      'regs 1',
      'x/16xb $rsp',
      'x/2xg nmi_lock',
      'step 1 3',
      'state',
      'frobnicate',
      'continue',
      'delete 1',
      'continue',
      'where',
      'cpus',
    ].join('\n');
    const r = textpoke(['step', DEADLOCK], { input: script + '\n' });
    // The unknown command is reported on stderr and the session goes on, but the exit
    // status says a command failed (as with --cmd).
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("textpoke: unknown command 'frobnicate' (type help for the list)\n");
    const s = session(r.stdout);
    expect(s.get('break asm_exc_nmi')).toEqual([expect.stringMatching(/^Breakpoint 1 at 0xffffffff[0-9a-f]{8} <asm_exc_nmi>$/)]);
    expect(s.get('continue')![0]).toMatch(/^Breakpoint 1, CPU1 \[thread > stop_machine > NMI\] at asm_exc_nmi: 50 +push %rax/);

    const regs = s.get('regs 1')!;
    expect(regs[0]).toBe('CPU1 [thread > stop_machine > NMI] at asm_exc_nmi');
    expect(regs.join('\n')).toMatch(/rsp 0xffffffff[0-9a-f]{8}/);
    expect(regs.join('\n')).toMatch(/rip 0xffffffff[0-9a-f]{8} <asm_exc_nmi>/);
    expect(regs.join('\n')).toMatch(/rflags 0x[0-9a-f]+ \[[A-Z ]*\]/);
    expect(regs.join('\n')).toContain('nmi blocked (in an NMI)');

    // The NMI frame: the interrupted RIP (a kernel text address) and CS 0x10.
    const frame = s.get('x/16xb $rsp')!;
    expect(frame).toHaveLength(2);
    expect(frame[0]).toMatch(/^0xffffffff[0-9a-f]{8} <[^>]+>:\t(0x[0-9a-f]{2}\t){7}0xff$/);
    expect(frame[1]).toMatch(/:\t0x10\t0x00/);
    expect(s.get('x/2xg nmi_lock')![0]).toMatch(/<nmi_lock>:\t0x0{16}\t0x[0-9a-f]{16}$/);

    const stepped = s.get('step 1 3')!;
    expect(stepped.filter((l) => / cpu1 {2}thread>stop_machine>NMI /.test(l))).toHaveLength(3);
    expect(stepped[stepped.length - 1]).toMatch(/^CPU1 \[thread > stop_machine > NMI\] at asm_exc_nmi\+0x/);

    const state = s.get('state')!.join('\n');
    expect(state).toMatch(/state +4 \(PATCH_SYNC_0\)/);
    expect(state).toMatch(/sync_ack_map +0b[01]{2} /);
    expect(state).toMatch(/bp_desc @ 0x[0-9a-f]+: addr 0x[0-9a-f]+ <queued_spin_unlock>, len 6/);

    expect(s.get('continue #2')![0]).toMatch(/^Breakpoint 1, CPU0 \[thread > stop_machine > NMI\] at asm_exc_nmi/);
    expect(s.get('continue #3')![0]).toMatch(/^nmi-deadlock-primary: DEADLOCK after/);
    const where = s.get('where')!.join('\n');
    expect(where).toMatch(/CPU1 \[thread > stop_machine > NMI > #BP\] at poke_int3_handler \(waiting\), holds nmi_lock -> waits for CPU0/);
    expect(where).toContain('wait-for cycle: CPU0 -> CPU1 -> CPU0');
    expect(s.get('cpus')!).toHaveLength(2);
  });
});

describe('textpoke step: exit status of a piped session', () => {
  it('exits 0 when every piped command succeeds', () => {
    const r = textpoke(['step', 'minikernel'], { input: 'cpus\nstep 0 2\nwhere\n' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect([...session(r.stdout).keys()]).toEqual(['cpus', 'step 0 2', 'where']);
  });

  it('exits 2 after a failed command, having run the lines after it', () => {
    const r = textpoke(['step', 'minikernel'], { input: 'cpus\nx/4xb no_such_symbol\nwhere\n' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^textpoke: .*no_such_symbol/);
    expect([...session(r.stdout).keys()]).toEqual(['cpus', 'x/4xb no_such_symbol', 'where']);
  });
});

describe('textpoke step --cmd', () => {
  it('runs the commands in order and exits 0', () => {
    const r = textpoke(['step', 'minikernel', '--cmd', 'step 0 3', '--cmd', 'regs', '--cmd', 'disas', '--cmd', 'help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const s = session(r.stdout);
    expect([...s.keys()]).toEqual(['step 0 3', 'regs', 'disas', 'help']);
    expect(s.get('step 0 3')![0]).toMatch(/^\s+0 {2}cpu0 {2}thread +ffffffff81000000 {2}startup_64 +cli$/);
    expect(s.get('disas')!.some((l) => l.startsWith('=> '))).toBe(true);
    expect(s.get('help')!.join('\n')).toMatch(/x\/Nxb <addr>/);
  });

  it('an unknown command stops the script with exit 2', () => {
    const r = textpoke(['step', 'minikernel', '--cmd', 'cpus', '--cmd', 'bogus', '--cmd', 'cpus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("textpoke: unknown command 'bogus' (type help for the list)\n");
    expect([...session(r.stdout).keys()]).toEqual(['cpus', 'bogus']);
  });

  it('--json: one object per command', () => {
    const r = textpoke(['step', DEADLOCK, '--json', '--cmd', 'nmi 1', '--cmd', 'step 1', '--cmd', 'x/4xb nmi_lock', '--cmd', 'nope']);
    expect(r.code).toBe(2);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { command: string; ok: boolean; output?: Record<string, unknown>; error?: string });
    expect(lines.map((l) => [l.command, l.ok])).toEqual([['nmi 1', true], ['step 1', true], ['x/4xb nmi_lock', true], ['nope', false]]);
    expect(lines[1].output!.rip).toMatch(HEX_ADDR);
    expect(lines[2].output!.bytes).toBe('00 00 00 00');
  });

  it('bad input: missing target, a scenario that fails validation', () => {
    const r = textpoke(['step', '/nonexistent/x.json', '--cmd', 'cpus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^textpoke: \/nonexistent\/x\.json: no such file/);
  });
});
