// Loads Debian's 6.1 cloud vmlinux with its System.map and checks the layer others
// build on: sections, symbols, .parainstructions, .altinstructions, pv_ops, mapping,
// and the instruction coverage of .text.

import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { loadVmlinux, type Vmlinux } from '../../kernel-model/image/vmlinux';
import { paraSiteForm } from '../../kernel-model/image/parainstructions';
import { checkCachedKernel } from '../../kernel-model/image/download';
import { Machine } from '../../emu/machine';
import { PAGE_CODE } from '../../emu/memory';
import { sweepCoverage, formatCoverage } from '../../emu/coverage';

const KERNEL_BASE = 0xffffffff80000000n;
const timings: string[] = [];

function timed<T>(what: string, fn: () => T): T {
  const t0 = performance.now();
  const r = fn();
  timings.push(`${what}: ${(performance.now() - t0).toFixed(0)} ms`);
  return r;
}

describe('Debian 6.1 vmlinux', () => {
  let vm: Vmlinux;
  let dir: string;

  beforeAll(async () => {
    const t0 = performance.now();
    const k = await testKernel();
    timings.push(`fetch (${k.fetched ? 'download' : 'cache check'}): ${(performance.now() - t0).toFixed(0)} ms`);
    dir = k.dir;
    vm = timed('loadVmlinux (ELF headers + System.map)', () => loadVmlinux(k.vmlinux, { systemMap: k.systemMap }));
  }, FETCH_TIMEOUT_MS);

  afterAll(() => {
    vm?.close();
    process.stderr.write(`kernel load timings:\n  ${timings.join('\n  ')}\n`);
  });

  it('is a complete cache entry (manifest and file sizes)', () => {
    const m = checkCachedKernel(dir);
    expect(m).not.toBeNull();
    expect(m!.version).toMatch(/^6\.1\.0-\d+-cloud-amd64$/);
    expect(m!.vmlinux.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('has sane sections at kernel link addresses', () => {
    expect(vm.elf.header.machine).toBe(62);
    const text = vm.text;
    expect(text.addr).toBe(0xffffffff81000000n);
    expect(text.code).toBe(true);
    expect(text.size).toBeGreaterThan(8 << 20);
    expect(vm.symbol('_text')).toBe(text.addr);
    expect(vm.symbol('_etext')).toBe(text.addr + BigInt(text.size));
    for (const name of ['.data', '.rodata', '.bss', '.parainstructions', '.altinstructions', '.altinstr_replacement', '.init.text']) {
      const s = vm.requireSection(name);
      expect(s.addr >= KERNEL_BASE).toBe(true);
      expect(s.addr >= text.addr + BigInt(text.size) || s === text).toBe(true);
    }
    expect(vm.requireSection('.data').writable).toBe(true);
    expect(vm.requireSection('.bss').nobits).toBe(true);
    // The per-CPU template is zero-based; it is mapped where the image loads it.
    const pcpu = vm.requireSection('.data..percpu');
    expect(pcpu.addr).toBe(0n);
    expect(pcpu.loadAddr).toBe(vm.symbol('__per_cpu_load'));
    // Loaded sections do not overlap.
    const sorted = [...vm.sections].filter((s) => s.size > 0).sort((a, b) => (a.loadAddr < b.loadAddr ? -1 : 1));
    for (let i = 1; i < sorted.length; i++) {
      expect(sorted[i].loadAddr >= sorted[i - 1].loadAddr + BigInt(sorted[i - 1].size)).toBe(true);
    }
  });

  it('has the full System.map', () => {
    expect(vm.map).not.toBeNull();
    expect(vm.map!.entries.length).toBeGreaterThan(50000);
    expect(vm.symbols.size).toBeGreaterThan(50000);
    for (const s of ['pv_ops', 'startup_64', 'text_poke_bp_batch', 'native_queued_spin_lock_slowpath', '__parainstructions', '__alt_instructions']) {
      expect(vm.symbols.resolve(s)).toBeDefined();
    }
    expect(vm.symbol('__parainstructions')).toBe(vm.requireSection('.parainstructions').addr);
    expect(vm.symbol('__alt_instructions')).toBe(vm.requireSection('.altinstructions').addr);
  });

  it('.parainstructions: every site is an unpatched ff 15 call through its own pv_ops slot', () => {
    const sites = timed('parse .parainstructions', () => vm.parainstructions());
    expect(sites.length).toBeGreaterThan(1000);
    const pvOps = vm.symbol('pv_ops');
    const bySection = new Map<string, number>();
    const forms = new Map<string, number>();
    for (const s of sites) {
      bySection.set(s.section, (bySection.get(s.section) ?? 0) + 1);
      expect(s.len).toBeGreaterThanOrEqual(6);
      const f = paraSiteForm(s.addr, vm.readAt(s.addr, s.len));
      forms.set(f.form, (forms.get(f.form) ?? 0) + 1);
      if (f.form !== 'indirect-call' || f.slot !== pvOps + 8n * BigInt(s.type)) {
        throw new Error(`site ${s.index} at ${vm.symbols.format(s.addr)}: ${JSON.stringify(f, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v))}, type ${s.type}`);
      }
    }
    expect([...forms.keys()]).toEqual(['indirect-call']);
    // Sites live in .text and, for boot-only code, .init.text.
    expect([...bySection.keys()].sort()).toEqual(['.init.text', '.text']);
    timings.push(`pv sites: ${sites.length} (${[...bySection].map(([k, v]) => `${k} ${v}`).join(', ')}), all len 6: ${sites.every((s) => s.len === 6)}`);
  });

  it('.altinstructions parse: originals in text, replacements in .altinstr_replacement', () => {
    const alts = timed('parse .altinstructions', () => vm.altinstructions());
    expect(alts.length).toBeGreaterThan(1000);
    const repl = vm.requireSection('.altinstr_replacement');
    for (const a of alts) {
      expect(['.text', '.init.text']).toContain(a.section);
      if (a.replacementlen > 0) {
        expect(a.repl >= repl.addr && a.repl + BigInt(a.replacementlen) <= repl.addr + BigInt(repl.size)).toBe(true);
      }
    }
    expect(alts.some((a) => a.inverted)).toBe(true);
    expect(alts.some((a) => !a.inverted)).toBe(true);
  });

  it('pv_ops: initial slots symbolize to native / paravirt functions in .text', () => {
    const pv = timed('read pv_ops', () => vm.pvOps());
    const maxType = Math.max(...vm.parainstructions().map((s) => s.type));
    expect(pv.slots.length).toBeGreaterThan(maxType);
    const text = vm.text;
    const odd: string[] = [];
    for (const s of pv.slots) {
      expect(s.exact).toBe(true);
      expect(s.target >= text.addr && s.target < text.addr + BigInt(text.size)).toBe(true);
      if (!/native|paravirt|^pv_|^__ptep_modify_prot_/.test(s.symbol)) odd.push(`${s.index}=${s.symbol}`);
    }
    // The one op whose native target carries neither word (mmu.tlb_remove_table).
    expect(odd).toEqual([expect.stringMatching(/=tlb_remove_page$/)]);
    // Slots the design's scenario relies on.
    const bySymbol = new Map(pv.slots.map((s) => [s.symbol, s.index]));
    expect(bySymbol.has('__raw_callee_save___native_queued_spin_unlock')).toBe(true);
    expect(bySymbol.has('native_save_fl')).toBe(true);
    // The name-table hook: unnamed slots are mismatches unless their target is generic.
    const checks = vm.checkPvOpNames([]);
    expect(checks.filter((c) => c.verdict === 'generic').length).toBeGreaterThan(10);
  });

  it('maps into a Machine: whole sections, or only the pages asked for', () => {
    const m = new Machine({ cpus: 1 });
    timed('map .text + .data + .bss', () => vm.mapInto(m, { sections: ['.text', '.data', '.bss'] }));
    const at = vm.symbol('native_queued_spin_lock_slowpath');
    expect(Buffer.from(m.mem.readBytes(at, 16)).equals(vm.readAt(at, 16))).toBe(true);
    expect(m.mem.pages.get(Number(at >> 12n))!.flags & PAGE_CODE).toBeTruthy();
    const pv = vm.pvOps();
    expect(m.mem.readU64(pv.address + 8n * 80n)).toBe(pv.slots[80].target);

    const lazy = new Machine({ cpus: 1 });
    const f = timed('map one function + pv_ops lazily', () => {
      const fr = vm.mapFunction(lazy, 'native_queued_spin_lock_slowpath');
      vm.mapRange(lazy, pv.address, pv.slots.length * 8);
      return fr;
    });
    expect(f.end > f.start).toBe(true);
    expect(lazy.mem.pages.size).toBeLessThan(10);
    expect(Buffer.from(lazy.mem.readBytes(f.start, Number(f.end - f.start))).equals(vm.readAt(f.start, Number(f.end - f.start)))).toBe(true);
  });

  it('instruction coverage of .text', () => {
    const text = vm.text;
    const bytes = vm.elf.readSection(vm.elf.sections[text.index]);
    const functions = vm.functions(['.text']).map((fn) => ({ start: Number(fn.start - text.addr), end: Number(fn.end - text.addr) }));
    const r = timed('coverage sweep of .text', () => sweepCoverage([{ base: text.addr, bytes, functions }]));
    process.stderr.write(formatCoverage(r, { top: 25, symbolize: (a) => vm.symbols.format(a), title: 'coverage of .text' }) + '\n');
    expect(r.total).toBeGreaterThan(2_000_000);
    expect(r.int3Padding).toBeGreaterThan(1_000_000);
    expect(r.invalidBytes).toBeLessThan(10);
    expect(r.unsupported.filter((u) => u.crashed)).toEqual([]);
    // The issue's bar for the general-purpose ISA.
    expect(r.share).toBeGreaterThanOrEqual(0.999);
  });
});
