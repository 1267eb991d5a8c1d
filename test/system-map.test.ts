import { parseSystemMap, isTextType } from '../kernel-model/image/system-map';
import { LoadError } from '../kernel-model/image/elf';

describe('System.map parsing', () => {
  const text = [
    '0000000000000000 D __per_cpu_start',
    'ffffffff81000000 T _text',
    'ffffffff81000000 T startup_64',
    'ffffffff81000070 t verify_cpu',
    'ffffffff82a398c0 D pv_ops',
    '',
  ].join('\n');

  it('fills a SymbolTable and a typed list', () => {
    const m = parseSystemMap(text);
    expect(m.entries).toHaveLength(5);
    expect(m.entries[3]).toEqual({ name: 'verify_cpu', address: 0xffffffff81000070n, type: 't' });
    expect(m.symbols.resolve('pv_ops')).toBe(0xffffffff82a398c0n);
    expect(m.symbols.resolve('__per_cpu_start')).toBe(0n);
    expect(m.symbols.format(0xffffffff81000075n)).toBe('verify_cpu+0x5');
    // Aliases: the first name (sorted) at an address wins for lookups.
    expect(m.symbols.format(0xffffffff81000000n)).toBe('_text');
    expect(isTextType('t') && isTextType('W') && !isTextType('D')).toBe(true);
  });

  it('accepts CRLF line ends and short addresses', () => {
    const m = parseSystemMap('81000000 T a\r\nffffffff81000010 t b\r\n');
    expect(m.symbols.resolve('a')).toBe(0x81000000n);
    expect(m.symbols.resolve('b')).toBe(0xffffffff81000010n);
  });

  it('names the line of a malformed entry', () => {
    const bad = 'ffffffff81000000 T _text\nffffffff8100zz00 T oops\n';
    expect(() => parseSystemMap(bad, 'System.map')).toThrow(LoadError);
    expect(() => parseSystemMap(bad, 'System.map')).toThrow(/^System\.map: line 2: expected '<hex address> <type letter> <name>', got "ffffffff8100zz00 T oops"$/);
    expect(() => parseSystemMap('ffffffff81000000 TT x\n')).toThrow(/line 1/);
    expect(() => parseSystemMap('ffffffff81000000 T\n')).toThrow(/line 1/);
    expect(() => parseSystemMap('ffffffff81000000 T a b\n')).toThrow(/line 1/);
    expect(() => parseSystemMap('11112222333344445 T toolong\n')).toThrow(/line 1/);
    expect(() => parseSystemMap('\n\n', 'm')).toThrow(/^m: no symbols$/);
  });

  it("recognises Debian's stub System.map", () => {
    const stub = 'ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n';
    expect(() => parseSystemMap(stub)).toThrow(/line 1: this is Debian's stub System\.map; the real one is in the linux-image-<version>-dbg package/);
  });

  it('parses 300k lines quickly', () => {
    const lines: string[] = [];
    for (let i = 0; i < 300000; i++) lines.push(`ffffffff8${(0x1000000 + i * 16).toString(16).padStart(7, '0')} t f${i}`);
    const t0 = performance.now();
    const m = parseSystemMap(lines.join('\n'));
    const ms = performance.now() - t0;
    expect(m.entries).toHaveLength(300000);
    expect(m.symbols.resolve('f299999')).toBe(0xffffffff81000000n + 299999n * 16n);
    expect(ms).toBeLessThan(3000);
  });
});
