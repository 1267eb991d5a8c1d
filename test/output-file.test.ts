// The one way outputs are written (kernel-model/image/output-file.ts): through a
// temporary file renamed into place, so a failed write leaves the target as it was
// and nothing partial; and the guard against an output that names an input.

import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { OutputError, OutputFile, refuseOverwritingInputs, writeOutputs } from '../kernel-model/image/output-file';
import { FIXTURES_DIR } from '../kernel-model/image/fixture-image';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'textpoke-out-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('OutputFile', () => {
  it('is invisible until commit, then replaces the target whole', () => {
    const p = join(dir, 'out.txt');
    writeFileSync(p, 'old');
    const f = new OutputFile(p);
    f.write('new ');
    f.write('text');
    expect(readFileSync(p, 'utf8')).toBe('old');
    f.commit();
    expect(readFileSync(p, 'utf8')).toBe('new text');
    expect(readdirSync(dir)).toEqual(['out.txt']);
  });

  it('abort leaves the target as it was and no temporary file', () => {
    const p = join(dir, 'out.txt');
    writeFileSync(p, 'old');
    const f = new OutputFile(p);
    f.write('half a tra');
    f.abort();
    f.abort();
    expect(readFileSync(p, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['out.txt']);
  });

  it('copies a file and patches it at offsets', () => {
    const src = join(dir, 'src');
    writeFileSync(src, Buffer.alloc(3 << 20, 0x41));
    const f = new OutputFile(join(dir, 'dst'), { copyOf: src });
    f.write(Uint8Array.from([1, 2]), (2 << 20) + 5);
    f.commit();
    const b = readFileSync(join(dir, 'dst'));
    expect(b.length).toBe(3 << 20);
    expect([...b.subarray((2 << 20) + 4, (2 << 20) + 8)]).toEqual([0x41, 1, 2, 0x41]);
  });

  it('a location that cannot be written is an OutputError naming the path', () => {
    expect(() => new OutputFile(join(dir, 'no', 'such', 'dir', 'x'))).toThrow(OutputError);
    expect(() => new OutputFile(join(dir, 'no', 'x'))).toThrow(/no\/x: cannot write here \(ENOENT\)/);
  });
});

describe('writeOutputs', () => {
  it('writes every file or none: a failure on the second leaves the first untouched', () => {
    const a = join(dir, 'a.bin');
    writeFileSync(a, 'old a');
    expect(() => writeOutputs([{ path: a, data: 'new a' }, { path: join(dir, 'missing', 'b.json'), data: 'b' }])).toThrow(OutputError);
    expect(readFileSync(a, 'utf8')).toBe('old a');
    expect(readdirSync(dir)).toEqual(['a.bin']);
  });
});

describe('refuseOverwritingInputs', () => {
  it('refuses an output that is an input, by path or through another name for the same file', () => {
    const inp = join(dir, 'vmlinux');
    writeFileSync(inp, 'x');
    const inputs = [{ path: inp, what: 'input image' }];
    expect(() => refuseOverwritingInputs('-o', [inp], inputs)).toThrow(/-o .*vmlinux: is the input image/);
    expect(() => refuseOverwritingInputs('-o', [join(dir, '.', 'sub', '..', 'vmlinux')], inputs)).toThrow(OutputError);
    expect(() => refuseOverwritingInputs('-o', [join(dir, 'vmlinux.patched')], inputs)).not.toThrow();
  });

  it('refuses a committed fixture even when it is not this command\'s input', () => {
    expect(existsSync(join(FIXTURES_DIR, 'minikernel.bin'))).toBe(true);
    expect(() => refuseOverwritingInputs('-o', [join(FIXTURES_DIR, 'minikernel.bin')], [])).toThrow(/is a fixture committed with textpoke/);
    expect(() => refuseOverwritingInputs('--trace', [join(FIXTURES_DIR, 'scenarios', 'batch-poke.json')], [])).toThrow(/committed/);
  });
});
