import { resolveAddress } from '../kernel-model/present/console';
import { SymbolTable } from '../emu/symbols';
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

  // How fast is measured in `npm run bench`, never asserted here.
  it('parses 300k lines', () => {
    const lines: string[] = [];
    for (let i = 0; i < 300000; i++) lines.push(`ffffffff8${(0x1000000 + i * 16).toString(16).padStart(7, '0')} t f${i}`);
    const m = parseSystemMap(lines.join('\n'));
    expect(m.entries).toHaveLength(300000);
    expect(m.symbols.resolve('f299999')).toBe(0xffffffff81000000n + 299999n * 16n);
    expect(m.symbols.format(0xffffffff81000000n + 150000n * 16n + 3n)).toBe('f150000+0x3');
  });
});

describe('a name that labels several symbols (12 static type_show in Linux 6.1)', () => {
  const MAP = [
    'ffffffff81000000 T _stext',
    'ffffffff81000300 t type_show',
    'ffffffff81000100 t type_show',
    'ffffffff81000200 t type_show',
    'ffffffff81000400 T unique_fn',
  ].join('\n');

  it('resolve keeps the first; pick says how many and takes name@N, lowest address first', () => {
    const t = parseSystemMap(MAP).symbols;
    expect(t.resolve('type_show')).toBe(0xffffffff81000300n);
    expect(t.addresses('type_show')).toEqual([0xffffffff81000100n, 0xffffffff81000200n, 0xffffffff81000300n]);
    expect(t.pick('type_show')).toEqual({ name: 'type_show', address: 0xffffffff81000300n, index: 3, count: 3 });
    expect(t.pick('type_show@1').address).toBe(0xffffffff81000100n);
    expect(t.pick('type_show@2').address).toBe(0xffffffff81000200n);
    expect(t.pick('type_show@4')).toEqual({ name: 'type_show', address: undefined, index: 4, count: 3 });
    expect(t.pick('unique_fn')).toEqual({ name: 'unique_fn', address: 0xffffffff81000400n, index: 1, count: 1 });
    expect(t.pick('nothing@1').count).toBe(0);
  });

  it('the console\'s address expressions: name@N with an offset; a bare ambiguous name warns with the count', () => {
    const t = parseSystemMap(MAP).symbols;
    const warnings: string[] = [];
    expect(resolveAddress('type_show@2+0x10', t, undefined, warnings)).toBe(0xffffffff81000210n);
    expect(warnings).toEqual([]);
    expect(resolveAddress('type_show', t, undefined, warnings)).toBe(0xffffffff81000300n);
    expect(warnings).toEqual(["'type_show' names 3 symbols; using the one at 0xffffffff81000300 (type_show@3); give type_show@1 to type_show@3 or an address for another"]);
    expect(() => resolveAddress('type_show@9', t)).toThrow("type_show@9: 'type_show' names 3 symbols; give type_show@1 to type_show@3 (lowest address first)");
    resolveAddress('unique_fn', t, undefined, warnings);
    expect(warnings).toHaveLength(1);
  });

  it('copying a table into a machine keeps every address of a repeated name', () => {
    const t = parseSystemMap(MAP).symbols;
    const copy = new SymbolTable();
    copy.addAll(t);
    expect(copy.addresses('type_show')).toHaveLength(3);
    expect(copy.format(0xffffffff81000204n)).toBe('type_show+0x4');
  });
});

