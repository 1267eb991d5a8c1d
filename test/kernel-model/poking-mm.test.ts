// Pokes through poking_mm (Linux 6.1 __text_poke, the series' __text_poke_map /
// __text_do_poke / __text_poke_unmap; docs/notes/poking-mm.md) on a fixture booted
// with page tables: the text is read-only in init_mm, the patcher writes through the
// alias at poking_addr with poking_mm's CR3 loaded, BUG_ON(memcmp) reads back through
// the text mapping, a global alias goes stale across the CR3 switch, the seed's
// deadlocks and their NMI-safe twins keep their outcomes, and in NMI mode the whole
// switch happens inside the NMI.

import { join } from 'path';
import { loadScenario, type Scenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, runScenario, explain } from '../../kernel-model/scenario/run';
import { PHYS_BASE } from '../../kernel-model/scenario/fixture-mm';
import { PTE_GLOBAL, PAGE_KERNEL_NOGLOBAL } from '../../kernel-model/linux/text-poke-mm';
import { requireSymbol } from '../../kernel-model/image/kernel-image';
import { CR0_PG } from '../../emu/paging';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');

function scenario(name: string, paging = true): Scenario {
  const s = loadScenario(join(DIR, `${name}.json`));
  s.paging = paging;
  return s;
}

function cr3(c: { cr3Lo: number; cr3Hi: number }): bigint {
  return (BigInt(c.cr3Hi >>> 0) << 32n) | BigInt(c.cr3Lo >>> 0);
}

/** The physical address of init_mm's leaf entry for `va` (host-side walk). */
function leaf(m: ReturnType<typeof prepareScenario>['m'], root: bigint, va: bigint): bigint {
  let t = root;
  for (let l = 0; l < 3; l++) t = m.mem.readU64(t + ((va >> BigInt(39 - 9 * l)) & 0x1ffn) * 8n) & 0x000ffffffffff000n;
  return m.mem.readU64(t + ((va >> 12n) & 0x1ffn) * 8n);
}

describe('the fixture boots with page tables', () => {
  it('CR0.PG set, CR3 = init_mm, text read-only and data writable; flat without the option', () => {
    const run = prepareScenario(scenario('nmi-safe-primary'));
    const p = run.k.poking!;
    expect(p).not.toBeNull();
    for (const c of run.m.cpus) {
      expect(c.paging).toBe(true);
      expect(c.cr0 & CR0_PG).not.toBe(0);
      expect(cr3(c)).toBe(p.initPgd);
    }
    const site = run.k.planSites(run.k.request!)[0].address;
    const text = leaf(run.m, p.initPgd, site);
    expect(text & 2n).toBe(0n); // no R/W: a direct store to the text would #PF (CR0.WP)
    expect(text & 0x000ffffffffff000n).toBe(PHYS_BASE + ((site & ~0xfffn) - run.img.symbols.resolve('startup_64')!));
    expect(leaf(run.m, p.initPgd, requireSymbol(run.img, 'shared_lock')) & 2n).toBe(2n);
    // poking_mm shares the kernel half and has an empty PTE at poking_addr.
    expect(run.m.mem.readU64(p.ptePhys)).toBe(0n);
    const flat = prepareScenario(scenario('nmi-safe-primary', false));
    expect(flat.k.poking).toBeNull();
    expect(flat.m.cpus[0].paging).toBe(false);
  });
});

describe('a poke writes through poking_mm', () => {
  it.each([true, false])('nmi=%s: every text write goes to the alias with poking_mm loaded; PTE cleared and CR3 back after', (nmi) => {
    const s = scenario('nmi-safe-primary');
    s.patch!.nmi = nmi;
    s.inject = [];
    const run = prepareScenario(s);
    const p = run.k.poking!;
    const plan = run.k.planSites(run.k.request!);
    const writes: { cpu: number; linear: bigint; cr3: bigint }[] = [];
    for (const site of plan) {
      run.m.mem.watch(site.address, site.len, (cpu, lo, hi) => {
        writes.push({ cpu, linear: (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0), cr3: cpu >= 0 ? cr3(run.m.cpu(cpu)) : -1n });
      });
    }
    const rep = explain(run, run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps }));
    expect(rep.outcome).toBe('completed');
    expect(writes.length).toBeGreaterThanOrEqual(plan.length * 6);
    for (const w of writes) {
      expect(w.cpu).toBe(0);
      expect(w.linear >= p.addr && w.linear < p.addr + 0x2000n).toBe(true);
      expect(w.cr3).toBe(p.pgd);
    }
    for (const site of plan) expect(run.m.mem.readBytes(site.address, site.len)).toEqual(site.new);
    expect(run.m.mem.readU64(p.ptePhys)).toBe(0n);
    for (const c of run.m.cpus) expect(cr3(c)).toBe(p.initPgd);
  });

  it('flat: the same run writes the text address itself', () => {
    const s = scenario('nmi-safe-primary', false);
    s.inject = [];
    const run = prepareScenario(s);
    const site = run.k.planSites(run.k.request!)[0];
    const linear: bigint[] = [];
    run.m.mem.watch(site.address, site.len, (_cpu, lo, hi) => linear.push((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)));
    run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
    expect(linear.length).toBeGreaterThan(0);
    for (const a of linear) expect(a >= site.address && a < site.address + BigInt(site.len)).toBe(true);
  });
});

describe('BUG_ON(memcmp) reads back through the text mapping', () => {
  it('the alias pointing at the wrong frame (test-only fault injection) is an oops that stops the run', () => {
    const s = scenario('nmi-safe-primary');
    s.inject = [];
    const run = prepareScenario(s);
    const p = run.k.poking!;
    // A frame of the image nobody executes: the last page of the bss.
    const bss = run.img.sections.find((x) => x.name === '.bss')!;
    const wrong = PHYS_BASE + ((bss.address + BigInt(bss.size) - 1n) & ~0xfffn) - run.img.symbols.resolve('startup_64')!;
    let injected = false;
    run.k.calls.onEnter((_cpu, fn) => {
      if (fn !== '__text_do_poke' || injected) return;
      injected = true;
      run.m.mem.writeU64(p.ptePhys, wrong | PAGE_KERNEL_NOGLOBAL);
    });
    const rep = explain(run, run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps }));
    expect(injected).toBe(true);
    expect(rep.outcome).toBe('oops');
    const bug = rep.events.find((e) => e.kind === 'bug')!;
    expect(bug.text).toMatch(/kernel BUG at arch\/x86\/kernel\/alternative\.c:__text_poke_unmap! BUG_ON\(memcmp\)/);
  });

  it('a global alias survives the CR3 switch: the next page is written through the stale TLB entry (why 6.1 clears _PAGE_GLOBAL)', () => {
    // Two text_poke_bp pokes on different text pages, nothing else running them.
    const s = scenario('poke-ret');
    s.work = [{ entry: 'workload_patcher', arg: 40n }, { entry: 'workload_idle', arg: 0n }];
    s.cpus = 2;
    s.patch!.pokes = [{ at: 'asm_exc_double_fault', insn: 'ret' }, { at: 'poke_ret_fn', insn: 'ret' }];
    const pages = (run: ReturnType<typeof prepareScenario>): bigint[] => run.k.planSites(run.k.request!).map((x) => x.address >> 12n);
    const clean = prepareScenario(s);
    expect(new Set(pages(clean)).size).toBe(2);
    const ok = explain(clean, clean.m.run({ schedule: clean.schedule, maxSteps: clean.maxSteps }));
    expect(ok.outcome).toBe('completed');

    const run = prepareScenario(s);
    const p = run.k.poking!;
    run.k.calls.onEnter((_cpu, fn) => {
      if (fn === 'use_temporary_mm') run.m.mem.writeU64(p.ptePhys, run.m.mem.readU64(p.ptePhys) | PTE_GLOBAL);
    });
    const rep = explain(run, run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps }));
    expect(rep.outcome).toBe('oops');
    expect(rep.events.find((e) => e.kind === 'bug')!.text).toMatch(/__text_poke! BUG_ON\(memcmp\): 0xffffffff81/);
    // The stale entry is the CPU's own: still in its TLB, global, for the first page's frame.
    const e = run.m.cpu(0).tlb.get(Number(p.addr >> 12n))!;
    expect(e.global).toBe(true);
    expect(BigInt(e.pfn) << 12n).toBe(PHYS_BASE + (pages(run)[0] << 12n) - run.img.symbols.resolve('startup_64')!);
  });
});

describe('the seed scenarios under paging', () => {
  it.each([
    ['nmi-deadlock-primary', 'deadlock'],
    ['nmi-deadlock-secondaries', 'deadlock'],
    ['nmi-safe-primary', 'completed'],
    ['nmi-safe-secondaries', 'completed'],
  ])('%s: %s, with and without page tables', (name, outcome) => {
    for (const paging of [true, false]) expect(runScenario(scenario(name, paging)).outcome).toBe(outcome);
  });

  it.each([true, false])('nmi=%s: poking_mm is loaded and unloaded inside the NMI exactly when nmi mode is on', (nmi) => {
    const s = scenario('nmi-safe-primary');
    s.patch!.nmi = nmi;
    s.inject = [];
    const run = prepareScenario(s);
    const seen: { fn: string; inNmi: boolean }[] = [];
    run.k.calls.onEnter((cpu, fn) => {
      if (fn !== 'use_temporary_mm' && fn !== 'unuse_temporary_mm') return;
      const preempt = BigInt(run.m.mem.readU32(run.k.L.pcpu(cpu, run.k.L.percpu.preempt)));
      seen.push({ fn, inNmi: (preempt & run.k.L.nmiMask) !== 0n && run.m.cpu(cpu).contexts.some((c) => c.kind === 'NMI') });
    });
    const rep = explain(run, run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps }));
    expect(rep.outcome).toBe('completed');
    const sites = run.k.plan.length;
    expect(seen.filter((x) => x.fn === 'use_temporary_mm').length).toBe(sites);
    expect(seen.filter((x) => x.fn === 'unuse_temporary_mm').length).toBe(sites);
    for (const x of seen) expect(x.inNmi).toBe(nmi);
  });
});
