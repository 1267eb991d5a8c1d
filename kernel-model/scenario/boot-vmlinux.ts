// A distribution vmlinux running on the machine, with the vmlinux-harness fixture
// beside it: the kernel's .text and data at their link addresses, the harness in
// module space, and one copy of the kernel's per-CPU image per CPU (GS base,
// __per_cpu_offset[]), filled in as a booted kernel would have them, and the text
// boot-patched by the release's own rules (6.1's, or 6.12's for kernels whose paravirt
// sites are alternatives). The result is one KernelImage: the kernel's pv_ops and
// paravirt sites, the harness's symbols, constants and host routines.

import type { Machine, FetchMode, MemoryModel, RmwMode } from '../../emu/machine';
import { Machine as MachineClass } from '../../emu/machine';
import { SymbolTable } from '../../emu/symbols';
import type { ImageSection, KernelImage, PvSite } from '../image/kernel-image';
import { ImageError, requireSymbol } from '../image/kernel-image';
import { loadFixture, type FixtureImage } from '../image/fixture-image';
import type { VmlinuxImage } from '../image/vmlinux-image';
import { bootPatch61 } from '../linux/alternatives-6.1';
import { bootPatch612 } from '../linux/alternatives-6.12';
import { resolveCpu } from '../linux/boot-patch';
import { bareMetalFeatures } from '../image/linux-6.1';
import { readU64 } from '../linux/alternatives-common';

/** Where the per-CPU copies go (the kernel's vmalloc area), and their stride. */
export const PERCPU_AREA = 0xffffc90000000000n;
export const PERCPU_STRIDE = 0x80000n;

/** What boot patching wrote (address -> bytes) and each paravirt site's final bytes. Shared: never modify. */
export interface HarnessBootPatch {
  readonly writes: ReadonlyMap<bigint, Uint8Array>;
  readonly sites: readonly { address: bigint; op: string; final: Uint8Array }[];
}

/** Boot patches kept per image, by slot vector (oldest dropped past BOOT_PATCH_MEMO). */
const BOOT_PATCHES = new WeakMap<VmlinuxImage, Map<string, HarnessBootPatch>>();
const BOOT_PATCH_MEMO = 4;

export class KernelWithHarness implements KernelImage {
  readonly kind = 'vmlinux' as const;
  readonly symbols = new SymbolTable();
  readonly sections: ImageSection[];
  readonly pvOps: { address: bigint; slots: readonly string[] };
  readonly sites: readonly PvSite[];
  readonly constants: Record<string, number>;
  readonly paravirtTargets: Readonly<Record<string, string>>;
  /** The kernel's per-CPU image: its load address and size. */
  readonly percpuImage: { address: bigint; size: number };
  private readonly harnessEnd: bigint;

  constructor(
    readonly vm: VmlinuxImage,
    readonly harness: FixtureImage,
  ) {
    // Harness names first: where both define a name (startup_64), the harness's is meant.
    this.symbols.addAll(harness.symbols);
    this.symbols.addAll(vm.symbols, (n) => harness.symbols.resolve(n) === undefined);
    this.sections = [...vm.sections, ...harness.sections];
    this.pvOps = vm.pvOps;
    this.sites = vm.sites;
    this.constants = harness.constants;
    this.paravirtTargets = vm.paravirtTargets;
    const pc = vm.vm.sections.find((s) => s.name === '.data..percpu');
    if (!pc) throw new ImageError(`${vm.path}: no .data..percpu section`);
    this.percpuImage = { address: pc.loadAddr, size: pc.size };
    const hp = harness.constants.HPCPU;
    if (hp === undefined || pc.size > hp) {
      throw new ImageError(`${vm.path}: .data..percpu is ${pc.size} bytes; the harness keeps its per-CPU fields at ${hp} (too close)`);
    }
    const last = harness.sections.reduce((a, s) => (s.address + BigInt(s.size) > a ? s.address + BigInt(s.size) : a), 0n);
    this.harnessEnd = last;
  }

  get path(): string {
    return this.vm.path;
  }

  private inHarness(a: bigint): boolean {
    return a >= this.harness.base && a < this.harnessEnd;
  }

  read(address: bigint, len: number): Uint8Array {
    return this.inHarness(address) ? this.harness.read(address, len) : this.vm.read(address, len);
  }

  percpuBase(cpu: number): bigint {
    return PERCPU_AREA + PERCPU_STRIDE * BigInt(cpu);
  }

  /** Maps kernel and harness, and sets up one per-CPU area per CPU of `m`. */
  mapInto(m: Machine): void {
    this.vm.mapInto(m);
    this.harness.mapInto(m);
    // The per-CPU image as mapped at its load address (its link address is 0).
    const image = m.mem.readBytes(this.percpuImage.address, this.percpuImage.size);
    const span = this.constants.HPCPU + this.constants.HPCPU_SIZE;
    // setup_per_cpu_areas() also fills __per_cpu_offset[], which per_cpu_ptr() reads to
    // reach another CPU's variables (the qspinlock's MCS queue links a waiter into its
    // predecessor's qnode that way). Left at its link-time value, every CPU's entry is
    // the load image, and a third waiter links itself into a node nobody watches.
    const offsets = requireSymbol(this.vm, '__per_cpu_offset');
    for (const c of m.cpus) {
      const base = this.percpuBase(c.id);
      m.mem.map(base, span);
      m.mem.writeBytes(base, image);
      m.mem.writeU64(requireSymbol(this.harness, 'percpu_base') + 8n * BigInt(c.id), base);
      m.mem.writeU64(offsets + 8n * BigInt(c.id), base);
    }
    const set = (slot: string, value: bigint): void => m.mem.writeU64(requireSymbol(this.harness, slot), value);
    const k = (name: string): bigint => requireSymbol(this.vm, name);
    set('imp__raw_spin_lock', k('_raw_spin_lock'));
    set('imp__raw_spin_unlock', k('_raw_spin_unlock'));
    // Per-CPU symbols are offsets from the GS base (.data..percpu is zero-based).
    set('kpcpu_this_cpu_off', k('this_cpu_off'));
    set('kpcpu_cpu_number', this.percpuVariable('cpu_number', 'cpu_number'));
    set('kpcpu_preempt_count', this.percpuVariable('__preempt_count', 'preempt_count'));
  }

  /**
   * A per-CPU variable's offset from the GS base: its own symbol (6.1), or its field of
   * struct pcpu_hot, where 6.2 and later keep cpu_number and preempt_count together (the
   * field's offset from the kernel's BTF).
   */
  private percpuVariable(symbol: string, hotField: string): bigint {
    const own = this.vm.symbols.resolve(symbol);
    if (own !== undefined) return own;
    const hot = this.vm.symbols.resolve('pcpu_hot');
    if (hot === undefined) throw new ImageError(`${this.vm.path}: neither ${symbol} nor pcpu_hot in System.map`);
    const f = this.vm.vm.btf().fields('pcpu_hot').find((x) => x.path === hotField);
    if (!f) throw new ImageError(`${this.vm.path}: BTF struct pcpu_hot has no ${hotField}`);
    return hot + BigInt(f.offset);
  }

  /**
   * What the kernel's boot patching writes into its text when the pv_ops slots hold
   * `slotValue` (the image's own values elsewhere), by the kernel's own rules: 6.1's
   * apply_paravirt + apply_alternatives (bare metal, as the harness has always run it),
   * or 6.12's alternative_instructions() for the release's default CPU profile. 6.12
   * must have all of it: since 6.9 the default return thunk is itself an ALWAYS
   * alternative, `jmp warn_thunk_thunk`, so a return apply_returns() did not patch
   * warns; and a paravirt site whose ALT_FLAG_DIRECT_CALL record 6.1's rules copy
   * verbatim calls BUG_func.
   */
  bootPatch(slotValue: (op: string) => bigint | undefined): HarnessBootPatch {
    // The same slot values give the same bytes: the boot, the runtime switch's plan and
    // its report ask for one or two distinct patches, each ~1 s of host time on 6.12,
    // so they are kept per image (for every harness on it) by the full slot vector.
    const slots = this.pvOps.slots.map((op, i) => slotValue(op) ?? readU64(this.vm, this.pvOps.address + 8n * BigInt(i)));
    const key = slots.map((v) => v.toString(16)).join(',');
    let memo = BOOT_PATCHES.get(this.vm);
    if (!memo) BOOT_PATCHES.set(this.vm, (memo = new Map()));
    const hit = memo.get(key);
    if (hit) return hit;
    const value = (op: string): bigint => slots[this.pvOps.slots.indexOf(op)];
    let out: HarnessBootPatch;
    if (this.vm.siteSource === 'altinstructions') {
      const cpu = resolveCpu(this.vm, undefined);
      const b = bootPatch612(this.vm, this.vm.vm, {
        features: cpu?.features ?? bareMetalFeatures(), returnThunk: cpu?.returnThunk ?? '__x86_return_thunk', slotValue: value,
      });
      out = { writes: b.writes, sites: b.sites.map((s) => ({ address: s.site.address, op: s.site.op, final: s.final })) };
    } else {
      const b = bootPatch61(this, { alternatives: this.vm.vm.altinstructions(), slotValue: value });
      out = { writes: b.writes, sites: b.sites.map((s) => ({ address: s.site.address, op: s.site.op, final: s.final })) };
    }
    if (memo.size >= BOOT_PATCH_MEMO) memo.delete(memo.keys().next().value!);
    memo.set(key, out);
    return out;
  }

  /**
   * The bytes the kernel's rules give the sites of the ops in `targets`, with those
   * pv_ops slots set to the given targets (the other slots as in `current`).
   */
  generateSites(targets: Map<string, bigint>, current: (op: string) => bigint): Map<bigint, Uint8Array> {
    const b = this.bootPatch((op) => targets.get(op) ?? current(op));
    const out = new Map<bigint, Uint8Array>();
    for (const s of b.sites) if (targets.has(s.op)) out.set(s.address, s.final);
    return out;
  }
}

export interface VmlinuxBootOptions {
  cpus: number;
  work: { entry: string; arg?: bigint }[];
  fetchMode?: FetchMode;
  memoryModel?: MemoryModel;
  rmw?: RmwMode;
  /** pv_ops slots to set before boot-time patching (a paravirt guest's boot): op -> target. */
  bootSlots?: Map<string, bigint>;
}

/**
 * Boots the kernel-plus-harness on a machine: maps everything, applies the kernel's
 * boot-time paravirt patching (as text_poke_early does before the other CPUs start),
 * sets each CPU's work and starts every CPU at the harness's startup_64.
 */
export function bootVmlinux(img: KernelWithHarness, opts: VmlinuxBootOptions): Machine {
  if (opts.cpus > img.harness.maxCpus) throw new ImageError(`the harness supports at most ${img.harness.maxCpus} CPUs (asked for ${opts.cpus})`);
  const m = new MachineClass({ cpus: opts.cpus, fetchMode: opts.fetchMode, memoryModel: opts.memoryModel, rmw: opts.rmw });
  img.mapInto(m);
  const slots = opts.bootSlots ?? new Map<string, bigint>();
  for (const [op, target] of slots) m.mem.writeU64(img.pvOps.address + 8n * BigInt(img.pvOps.slots.indexOf(op)), target);
  const boot = img.bootPatch((op) => slots.get(op));
  for (const [a, bytes] of boot.writes) m.mem.writeBytes(a, bytes);
  const entries = requireSymbol(img.harness, 'cpu_entry');
  const args = requireSymbol(img.harness, 'cpu_arg');
  opts.work.forEach((w, i) => {
    if (i >= opts.cpus) return;
    m.mem.writeU64(entries + 8n * BigInt(i), requireSymbol(img.harness, w.entry));
    m.mem.writeU64(args + 8n * BigInt(i), w.arg ?? 0n);
  });
  const start = requireSymbol(img.harness, 'startup_64');
  for (const c of m.cpus) {
    c.setRipBig(start);
    c.serialize();
  }
  return m;
}

export function withHarness(vm: VmlinuxImage): KernelWithHarness {
  return new KernelWithHarness(vm, loadFixture('vmlinux-harness'));
}

/**
 * Refuses a CPU count the harness cannot run, before a caller spends seconds loading a
 * vmlinux for it: the harness (a small committed fixture) is all that is read.
 */
export function checkHarnessCpus(cpus: number, image: string): void {
  const max = loadFixture('vmlinux-harness').maxCpus;
  if (cpus > max) throw new ImageError(`${image}: ${cpus} CPUs asked for; the vmlinux harness runs at most ${max}`);
}
