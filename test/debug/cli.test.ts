// `textpoke gdb` as a user starts it: the port line, the symbol file gdb loads, the
// exit when gdb kills the target, and bad input.

import { spawn, execFileSync } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';
import { textpoke, tempDir, removeTempDirs, expectUserError, BIN, ROOT, SCENARIOS } from '../cli/textpoke';
import { loadFixture } from '../../kernel-model/image/fixture-image';

afterAll(removeTempDirs);

describe('textpoke gdb', () => {
  it('prints where it listens, writes a symbol file gdb loads, and exits 0 when gdb kills the target', async () => {
    const dir = tempDir();
    const elf = join(dir, 'mk.elf');
    const child = spawn(process.execPath, [BIN, 'gdb', join(SCENARIOS, 'nmi-deadlock-primary.json'), '--port', '0', '--symbol-file', elf], { cwd: ROOT });
    let out = '';
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d: string) => {
        out += d;
        const m = /listening on 127\.0\.0\.1:(\d+) \(gdb: target remote :\d+\)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.on('exit', (code) => reject(new Error(`textpoke gdb exited ${code}: ${out}`)));
    });
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    expect(existsSync(elf)).toBe(true);
    // readelf agrees it is an ELF with symbols.
    expect(execFileSync('readelf', ['-s', elf], { encoding: 'utf8' })).toMatch(/FUNC\s+GLOBAL\s+DEFAULT\s+\d+ asm_exc_nmi/);
    const g = await new Promise<string>((resolve) => {
      const p = spawn('gdb', ['-batch', '-nx', '-ex', `file ${elf}`, '-ex', `target remote 127.0.0.1:${port}`, '-ex', `info symbol 0x${(loadFixture('minikernel').symbols.resolve('asm_exc_nmi')!).toString(16)}`, '-ex', 'kill']);
      let s = '';
      p.stdout.on('data', (d: Buffer) => (s += d.toString()));
      p.stderr.on('data', (d: Buffer) => (s += d.toString()));
      p.on('exit', () => resolve(s));
    });
    expect(g).toMatch(/asm_exc_nmi in section \.text/);
    expect(await exited).toBe(0);
  });

  it('bad input: one line, exit 2, nothing written', () => {
    expectUserError(textpoke(['gdb', join(SCENARIOS, 'nmi-deadlock-primary.json'), '--port', '70000']), /--port: expected an integer from 0 to 65535/);
    expectUserError(textpoke(['gdb', '/nonexistent/s.json']), /no such file/);
    const dir = tempDir();
    expectUserError(textpoke(['gdb', join(SCENARIOS, 'nmi-deadlock-primary.json'), '--symbol-file', join(dir, 'no/such/dir/x.elf')]), /--symbol-file .*does not exist/);
  });
});
