// Every command's --help has an example; usage errors; `coverage` and `exec`.

import { writeFileSync } from 'fs';
import { join } from 'path';
import { textpoke, json, expectUserError, tempDir, removeTempDirs } from './textpoke';

afterAll(removeTempDirs);

describe('textpoke --help and usage', () => {
  it.each(['demo', 'run', 'load', 'disasm', 'patch', 'verify', 'step', 'coverage', 'exec'])('%s --help shows an example', (cmd) => {
    const r = textpoke([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Examples:\n {2}textpoke /);
  });

  it('top-level help lists every command', () => {
    const r = textpoke(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['demo', 'run', 'load', 'disasm', 'patch', 'verify', 'step', 'coverage', 'exec']) expect(r.stdout).toContain(`textpoke ${c}`);
  });

  it('usage errors exit 2 with one line', () => {
    expectUserError(textpoke(['frobnicate']), 'Unknown argument: frobnicate');
    expectUserError(textpoke([]), 'name a command');
    expectUserError(textpoke(['run']), /arguments/);
    expectUserError(textpoke(['load', 'minikernel', '--bogus']), 'Unknown argument: bogus');
  });
});

describe('textpoke coverage', () => {
  it('sweeps the fixture kernel', () => {
    const j = json<{ total: number; share: number; sharePercent: number }>(textpoke(['coverage', 'minikernel', '--json']));
    expect(j.total).toBeGreaterThan(500);
    expect(j.share).toBe(1);
    const r = textpoke(['coverage', 'minikernel', '--top', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/implemented: [\d,]+ of [\d,]+ = 100\.000%/);
  });

  it('bad input', () => {
    expectUserError(textpoke(['coverage', '/nonexistent/vmlinux']), 'no such file');
    // An empty file has no instructions: "0 of 0 = 100%" would read as success.
    const empty = join(tempDir(), 'empty.bin');
    writeFileSync(empty, '');
    expectUserError(textpoke(['coverage', empty]), 'empty.bin: no bytes to sweep');
  });
});

describe('textpoke exec keeps its contract', () => {
  it('adds and halts', () => {
    const j = json<{ stop: string; regs: Record<string, string> }>(textpoke(['exec', '--code', '4801d8f4', '--regs', '{"rax":"0x2","rbx":"0x3"}', '--json']));
    expect(j.stop).toBe('hlt');
    expect(j.regs.rax).toBe('0x5');
    expectUserError(textpoke(['exec', '--code', 'xyz']), '--code');
  });
});
