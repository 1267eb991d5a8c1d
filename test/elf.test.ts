// The ELF reader and the vmlinux layer on a small kernel-like ELF assembled here with
// binutils: a .text with two functions and int3 padding, a pv call site listed in
// .parainstructions, an alternative in .altinstructions, pv_ops in .data, a .bss,
// and a System.map made by `nm -n`.

import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ElfFile, LoadError, SHF_EXECINSTR, SHT_NOBITS } from '../kernel-model/image/elf';
import { loadVmlinux } from '../kernel-model/image/vmlinux';
import { LAYOUTS_6_1 } from '../kernel-model/image/linux-6.1';

/** The hand-made ELFs here carry no .BTF: they are read with 6.1's layouts. */
const layouts = { ...LAYOUTS_6_1, pvOpsSlots: ['cpu.f2', 'cpu.other'] };
import { parseParainstructions, paraSiteForm } from '../kernel-model/image/parainstructions';
import { parseAltinstructions } from '../kernel-model/image/altinstructions';
import { Machine } from '../emu/machine';
import { PAGE_CODE } from '../emu/memory';
import { sweepCoverage } from '../emu/coverage';
import { requireTools } from './helpers/tools';

const SRC = `
	.text
	.globl _start
	.type _start, @function
_start:
	mov $1, %eax
	add %rbx, %rax
	ret
	int3
	int3
	.globl f2
	.type f2, @function
f2:
site1:
	call *pv_ops+8(%rip)
orig:
	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00
	ret
	.section .altinstr_replacement,"ax"
repl:
	.byte 0x0f, 0x01, 0xcb
	.data
	.globl pv_ops
pv_ops:
	.quad f2, _start
	.globl pv_end
pv_end:
	.quad 0
	.section .parainstructions,"a"
	.quad site1
	.byte 1, 6
	.short 0xf
	.long 0
	.section .altinstructions,"a"
	.long orig - .
	.long repl - .
	.short 0x8075
	.byte 5, 3
	.bss
	.globl buf
buf:	.skip 8192
`;

const TEXT = 0xffffffff81000000n;

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('ELF reader and vmlinux layer on an assembled ELF', () => {
  let dir: string;
  let elfPath: string;
  let mapPath: string;

  beforeAll(() => {
    // A missing tool fails the suite, never skips it: CI installs binutils (.ci/run).
    requireTools(['as', 'ld', 'nm']);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'textpoke-elf-'));
    fs.writeFileSync(path.join(dir, 't.S'), SRC);
    sh('as', ['-o', 't.o', 't.S'], dir);
    sh('ld', ['-o', 'vmlinux', `-Ttext=0x${TEXT.toString(16)}`, '-z', 'noexecstack', 't.o'], dir);
    elfPath = path.join(dir, 'vmlinux');
    mapPath = path.join(dir, 'System.map');
    fs.writeFileSync(mapPath, sh('nm', ['-n', 'vmlinux'], dir));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('parses headers, sections and symbols like readelf', () => {
    const e = ElfFile.open(elfPath);
    try {
      expect(e.header.machine).toBe(62);
      expect(e.header.type).toBe(2);
      const text = e.requireSection('.text');
      expect(text.addr).toBe(TEXT);
      expect(text.flags & SHF_EXECINSTR).toBeTruthy();
      expect(e.requireSection('.bss').type).toBe(SHT_NOBITS);
      // Compare with readelf's section table.
      const re = sh('readelf', ['-SW', 'vmlinux'], dir);
      for (const s of e.sections.slice(1)) {
        const m = new RegExp(`\\] ${s.name.replace(/\./g, '\\.')}\\s+\\S+\\s+([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)`).exec(re);
        expect(m).not.toBeNull();
        expect([BigInt('0x' + m![1]), Number('0x' + m![2]), Number('0x' + m![3])]).toEqual([s.addr, s.offset, s.size]);
      }
      expect(e.segments.length).toBeGreaterThan(0);
      // Bytes: mov $1,%eax; add %rbx,%rax; ret; int3; int3
      expect(e.readSection('.text').subarray(0, 11).toString('hex')).toBe('b8010000004801d8c3cccc');
      expect(e.readAt(TEXT + 5n, 3).toString('hex')).toBe('4801d8');
      expect(e.sectionAt(TEXT + 0x17n)?.name).toBe('.altinstr_replacement');
      expect(e.readSection('.bss').every((b) => b === 0)).toBe(true);
      const syms = e.symbols();
      expect(syms.find((s) => s.name === 'f2')?.value).toBe(TEXT + 0xbn);
      expect(() => e.readAt(0x1000n, 4)).toThrow(/address 0x1000 is in no allocated section/);
      expect(() => e.requireSection('.nope')).toThrow(/^vmlinux: no section named \.nope$/);
    } finally {
      e.close();
    }
  });

  it('a System.map from another build: "System.map does not match this vmlinux"', () => {
    const e = ElfFile.open(elfPath);
    const text = e.requireSection('.text');
    e.close();
    const end = (text.addr + BigInt(text.size)).toString(16);
    const base = fs.readFileSync(mapPath, 'utf8');
    // The map of this build, with the section edges the kernel's linker script defines.
    const good = path.join(dir, 'System.map.good');
    fs.writeFileSync(good, `${text.addr.toString(16)} T _stext\n${base}${end} T _etext\n`);
    expect(loadVmlinux(elfPath, { systemMap: good }).map).not.toBeNull();
    // Another build: its text is 0x40 bytes longer.
    const other = path.join(dir, 'System.map.other');
    fs.writeFileSync(other, `${text.addr.toString(16)} T _stext\n${base}${(text.addr + BigInt(text.size) + 0x40n).toString(16)} T _etext\n`);
    expect(() => loadVmlinux(elfPath, { systemMap: other })).toThrow(
      new RegExp(`System\\.map\\.other: System\\.map does not match this vmlinux \\(vmlinux\\): _etext is 0x[0-9a-f]+ in the map but \\.text ends at 0x${end}`),
    );
  });

  it('names the file and byte offset of damaged headers', () => {
    const good = fs.readFileSync(elfPath);
    const write = (name: string, b: Buffer): string => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, b);
      return p;
    };
    const truncated = write('truncated', good.subarray(0, good.length - 100));
    expect(() => ElfFile.open(truncated)).toThrow(LoadError);
    expect(() => ElfFile.open(truncated)).toThrow(
      new RegExp(`^truncated: byte 0x28: section header table \\(10 entries at 0x[0-9a-f]+\\) runs past end of file \\(size 0x${(good.length - 100).toString(16)}\\)$`),
    );
    const notElf = write('notelf', Buffer.from('hello world, definitely not an ELF'));
    expect(() => ElfFile.open(notElf)).toThrow(/^notelf: byte 0x0: not an ELF file/);
    const elf32 = Buffer.from(good);
    elf32[4] = 1;
    expect(() => ElfFile.open(write('elf32', elf32))).toThrow(/^elf32: byte 0x4: EI_CLASS is 1, expected 2 \(ELF64\)$/);
    const be = Buffer.from(good);
    be[5] = 2;
    expect(() => ElfFile.open(write('be', be))).toThrow(/^be: byte 0x5: EI_DATA is 2, expected 1/);
    const badStr = Buffer.from(good);
    badStr.writeUInt16LE(99, 62);
    expect(() => ElfFile.open(write('badstr', badStr))).toThrow(/^badstr: byte 0x3e: e_shstrndx 99 is not below the section count 10$/);
    // A section whose contents run past the end of the file.
    const bigSec = Buffer.from(good);
    const shoff = Number(good.readBigUInt64LE(40));
    bigSec.writeBigUInt64LE(0x10000000n, shoff + 64 * 1 + 32);
    expect(() => ElfFile.open(write('bigsec', bigSec))).toThrow(/^bigsec: byte 0x[0-9a-f]+: section 1 contents \[0x1000, 0x10001000\) run past end of file/);
    expect(() => ElfFile.open(path.join(dir, 'missing'))).toThrow(/missing: cannot open/);
  });

  it('loads as a vmlinux: tables, pv_ops, functions', () => {
    const vm = loadVmlinux(elfPath, { systemMap: mapPath, layouts });
    try {
      expect(vm.symbol('pv_ops')).toBe(vm.section('.data')!.addr);
      const sites = vm.parainstructions();
      expect(sites).toEqual([{ index: 0, addr: TEXT + 0xbn, type: 1, len: 6, clobbers: 0xf, section: '.text' }]);
      const form = paraSiteForm(sites[0].addr, vm.readAt(sites[0].addr, sites[0].len));
      expect(form).toEqual({ form: 'indirect-call', slot: vm.symbol('pv_ops') + 8n });
      const alts = vm.altinstructions();
      expect(alts).toEqual([{
        index: 0, instr: TEXT + 0x11n, repl: TEXT + 0x17n, cpuid: 0x8075, flags: 0, directCall: false, feature: 0x75, inverted: true,
        instrlen: 5, replacementlen: 3, section: '.text',
      }]);
      const pv = vm.pvOps();
      expect(pv.slots.map((s) => s.symbol)).toEqual(['f2', '_start']);
      expect(vm.checkPvOpNames(['cpu.f2', 'cpu.other']).map((c) => c.verdict)).toEqual(['match', 'mismatch']);
      const fns = vm.functions();
      expect(fns.map((f) => [f.name, f.end - f.start])).toEqual([['_start', 11n], ['f2', 6n], ['orig', 6n]]);
      expect(vm.functionAt(TEXT + 3n)?.name).toBe('_start');
    } finally {
      vm.close();
    }
  });

  it('without BTF (and no layouts given) the tables are one clear error naming .BTF', () => {
    const vm = loadVmlinux(elfPath, { systemMap: mapPath });
    try {
      expect(() => vm.altinstructions()).toThrow(/^vmlinux: no \.BTF section: textpoke reads struct alt_instr, paravirt_patch_site and paravirt_patch_template from the kernel's BTF \(build with CONFIG_DEBUG_INFO_BTF=y\)$/);
      expect(() => vm.parainstructions()).toThrow(/no \.BTF section/);
    } finally {
      vm.close();
    }
  });

  it('falls back to the ELF symbol table without a System.map', () => {
    const vm = loadVmlinux(elfPath, { systemMap: null, layouts });
    try {
      expect(vm.map).toBeNull();
      expect(vm.functions().map((f) => f.name)).toEqual(['_start', 'f2', 'orig']);
      expect(vm.symbols.resolve('pv_ops')).toBeDefined();
    } finally {
      vm.close();
    }
  });

  it('maps sections into a Machine, code marked, .bss zeroed; or just the pages asked for', () => {
    const vm = loadVmlinux(elfPath, { systemMap: mapPath, layouts });
    try {
      const m = new Machine({ cpus: 1 });
      const r = vm.mapInto(m);
      expect(r.sections).toEqual(expect.arrayContaining(['.text', '.data', '.bss', '.parainstructions']));
      expect(Buffer.from(m.mem.readBytes(TEXT, 11)).toString('hex')).toBe('b8010000004801d8c3cccc');
      expect(m.mem.readU64(vm.symbol('pv_ops'))).toBe(TEXT + 0xbn);
      expect(m.mem.readU8(vm.symbol('buf') + 8000n)).toBe(0);
      const key = Number(TEXT >> 12n);
      expect(m.mem.pages.get(key)!.flags & PAGE_CODE).toBeTruthy();

      const lazy = new Machine({ cpus: 1 });
      expect(vm.mapFunction(lazy, 'f2').name).toBe('f2');
      expect(lazy.mem.isMapped(TEXT)).toBe(true);
      expect(lazy.mem.isMapped(vm.symbol('pv_ops'))).toBe(false);
      expect(Buffer.from(lazy.mem.readBytes(TEXT + 0xbn, 2)).toString('hex')).toBe('ff15');
      expect(vm.mapRange(lazy, vm.symbol('pv_ops'), 16)).toBe(1);
      expect(lazy.mem.readU64(vm.symbol('pv_ops') + 8n)).toBe(TEXT);
      expect(() => vm.mapRange(lazy, 0x1000n, 1)).toThrow(/address 0x1000 is in no allocated section/);
    } finally {
      vm.close();
    }
  });

  it('coverage sweeps per function and excludes int3 padding', () => {
    const vm = loadVmlinux(elfPath, { systemMap: mapPath, layouts });
    try {
      const text = vm.text;
      const bytes = vm.elf.readSection('.text');
      const functions = vm.functions().map((f) => ({ start: Number(f.start - text.addr), end: Number(f.end - text.addr) }));
      const r = sweepCoverage([{ base: text.addr, bytes, functions }]);
      // mov, add, ret | call | nop, ret
      expect(r.total).toBe(6);
      expect(r.int3Padding).toBe(2);
      expect(r.functions).toBe(3);
      expect(r.implemented + r.missing.reduce((s, m) => s + m.count, 0) + r.unsupported.reduce((s, u) => s + u.count, 0)).toBe(6);
      // Linear over a blob with garbage in the middle: resynchronises.
      const blob = Uint8Array.from([0x90, 0x06, 0x90, 0xc3, 0xcc, 0xcc]);
      const lin = sweepCoverage([{ base: 0n, bytes: blob }]);
      expect(lin.invalidBytes).toBe(1);
      expect(lin.total).toBe(3);
      expect(lin.int3Padding).toBe(2);
    } finally {
      vm.close();
    }
  });
});

describe('.parainstructions / .altinstructions validation', () => {
  const code = [{ name: '.text', start: TEXT, end: TEXT + 0x1000n }];

  function para(addr: bigint, type: number, len: number, pad = 0): Buffer {
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(addr, 0);
    b[8] = type;
    b[9] = len;
    b.writeUInt32LE(pad, 12);
    return b;
  }

  it('parses good records and refuses unknown layouts with the byte offset', () => {
    const two = Buffer.concat([para(TEXT, 3, 6), para(TEXT + 0x10n, 80, 6)]);
    expect(parseParainstructions(two, { code }).map((s) => [s.addr, s.type])).toEqual([[TEXT, 3], [TEXT + 0x10n, 80]]);
    expect(() => parseParainstructions(two.subarray(0, 24), { code, label: 'vmlinux' })).toThrow(
      /^vmlinux: \.parainstructions is 0x18 bytes, not a multiple of the 16-byte 6\.1 record: unknown layout$/,
    );
    expect(() => parseParainstructions(para(0x1000n, 0, 6), { code, fileOffset: 0x2650420 })).toThrow(
      /^vmlinux: byte 0x2650420: \.parainstructions record 0: site 0x1000 \(\+6\) lies in no executable section$/,
    );
    expect(() => parseParainstructions(Buffer.concat([para(TEXT, 0, 6), para(TEXT, 0, 16)]), { code, fileOffset: 0x100 })).toThrow(
      /^vmlinux: byte 0x119: \.parainstructions record 1: site length 16 is not in 1\.\.15$/,
    );
    expect(() => parseParainstructions(para(TEXT, 90, 6), { code, slots: 84 })).toThrow(/type 90 is not below the 84 pv_ops slots/);
    expect(() => parseParainstructions(para(TEXT, 1, 6, 7), { code })).toThrow(/padding is not zero/);
    expect(() => parseParainstructions(para(TEXT + 0xffcn, 1, 6), { code })).toThrow(/lies in no executable section/);
  });

  it('resolves altinstruction offsets relative to each field', () => {
    const sectionAddr = TEXT + 0x800n;
    const rec = (instrOff: number, replOff: number, cpuid: number, il: number, rl: number): Buffer => {
      const b = Buffer.alloc(12);
      b.writeInt32LE(instrOff, 0);
      b.writeInt32LE(replOff, 4);
      b.writeUInt16LE(cpuid, 8);
      b[10] = il;
      b[11] = rl;
      return b;
    };
    // Record 1 sits at +12: instr = +12 - 0x40c, repl = +16 + 0x100.
    const two = Buffer.concat([rec(-0x800, 0x10, 0x75, 5, 5), rec(-0x40c, 0x100, 0x8010, 6, 0)]);
    const r = parseAltinstructions(two, { sectionAddr, code });
    expect(r[0]).toMatchObject({ instr: TEXT, repl: sectionAddr + 4n + 0x10n, feature: 0x75, inverted: false });
    expect(r[1]).toMatchObject({ instr: TEXT + 0x400n, repl: sectionAddr + 16n + 0x100n, feature: 0x10, inverted: true, replacementlen: 0 });
    expect(() => parseAltinstructions(two.subarray(0, 13), { sectionAddr, code })).toThrow(/not a multiple of the 12-byte struct alt_instr/);
    expect(() => parseAltinstructions(rec(-0x800, 0x10, 1, 3, 5), { sectionAddr, code, fileOffset: 0x40 })).toThrow(
      /^vmlinux: byte 0x4b: \.altinstructions record 0: replacementlen 5 exceeds instrlen 3: unknown record layout$/,
    );
    expect(() => parseAltinstructions(rec(-0x800, 0x10, 1, 0, 0), { sectionAddr, code })).toThrow(/instrlen 0 is not in 1\.\.64/);
    expect(() => parseAltinstructions(rec(0x10000, 0x10, 1, 5, 5), { sectionAddr, code })).toThrow(/original 0x[0-9a-f]+ \(\+5\) lies in no executable section/);
    expect(() => parseAltinstructions(rec(-0x800, 0x100000, 1, 5, 5), { sectionAddr, code })).toThrow(/replacement 0x[0-9a-f]+ \(\+5\) lies in no executable section/);
  });
});

describe('a suite that needs a missing tool', () => {
  it('fails, naming the tool and its Debian package, instead of skipping', () => {
    expect(() => requireTools(['textpoke-no-such-tool'])).toThrow(/needs textpoke-no-such-tool on PATH \(Debian: apt-get install textpoke-no-such-tool\)/);
    expect(() => requireTools(['as', 'ld'])).not.toThrow();
  });
});
