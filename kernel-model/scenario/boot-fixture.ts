// Booting a fixture kernel on a machine: map the image, apply paravirt patching the
// way the kernel does at boot (text_poke_early: plain writes before any CPU runs),
// build the page tables when the machine has paging (fixture-mm.ts), tell each CPU
// what to run after boot, and start every CPU at the entry point.

import { Machine, type FetchMode, type MemoryModel, type RmwMode } from '../../emu/machine';
import { FixtureImage } from '../image/fixture-image';
import { requireSymbol } from '../image/kernel-image';
import { PvOps } from '../linux/pv-ops';
import { generatePatch, type PatchForm } from '../linux/paravirt-patch';
import type { PokingMm } from '../linux/text-poke-mm';
import { pokingInit } from './fixture-mm';

export interface CpuWork {
  /** Symbol the CPU calls after boot (workload_locker, workload_patcher, workload_idle, …). */
  entry: string;
  /** Its first argument. */
  arg?: bigint;
}

export interface BootOptions {
  cpus: number;
  work: CpuWork[];
  fetchMode?: FetchMode;
  memoryModel?: MemoryModel;
  rmw?: RmwMode;
  /** Apply boot-time paravirt patching (default true); false leaves the indirect calls. */
  patchAtBoot?: boolean;
  /** pv_ops slots to set before boot-time patching: op -> target. */
  bootSlots?: Map<string, bigint>;
  /**
   * Boot with page tables (CR0.PG, CR3 = init_mm) and poke through poking_mm; false
   * (the default) keeps the flat mapping, linear = physical, pokes write the text.
   */
  paging?: boolean;
}

const pokingMms = new WeakMap<Machine, PokingMm>();

/** poking_mm of a fixture booted with paging (null: flat). */
export function fixturePokingMm(m: Machine): PokingMm | null {
  return pokingMms.get(m) ?? null;
}

export interface BootPatchedSite {
  address: bigint;
  op: string;
  form: PatchForm;
  bytes: Uint8Array;
}

/** apply_paravirt() at boot: every site patched for its slot's current target. */
export function applyParavirt(m: Machine, img: FixtureImage, pv: PvOps): BootPatchedSite[] {
  const out: BootPatchedSite[] = [];
  for (const s of img.sites) {
    const target = pv.read(m, s.op);
    const g = generatePatch(s.op, s.address, s.len, pv.choice(s.op, target));
    m.mem.writeBytes(s.address, g.bytes);
    out.push({ address: s.address, op: s.op, form: g.form, bytes: g.bytes });
  }
  return out;
}

export function bootFixture(img: FixtureImage, opts: BootOptions): Machine {
  if (opts.cpus > img.maxCpus) throw new Error(`${img.path} supports at most ${img.maxCpus} CPUs (asked for ${opts.cpus})`);
  const m = new Machine({ cpus: opts.cpus, fetchMode: opts.fetchMode, memoryModel: opts.memoryModel, rmw: opts.rmw, paging: opts.paging });
  img.mapInto(m);
  const pv = new PvOps(img);
  for (const [op, target] of opts.bootSlots ?? []) m.mem.writeU64(pv.slotAddress(op), target);
  if (opts.patchAtBoot ?? true) applyParavirt(m, img, pv);
  const entryTable = requireSymbol(img, 'cpu_entry');
  const argTable = requireSymbol(img, 'cpu_arg');
  opts.work.forEach((w, i) => {
    if (i >= opts.cpus) return;
    m.mem.writeU64(entryTable + 8n * BigInt(i), requireSymbol(img, w.entry));
    m.mem.writeU64(argTable + 8n * BigInt(i), w.arg ?? 0n);
  });
  if (opts.paging) pokingMms.set(m, pokingInit(m, img));
  const start = requireSymbol(img, img.entry);
  for (const c of m.cpus) {
    c.setRipBig(start);
    // Loader writes happened before any CPU ran: they count as already observed.
    c.serialize();
  }
  return m;
}
