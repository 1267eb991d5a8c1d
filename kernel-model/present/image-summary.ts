// What an image holds, for people and for JSON: its sections, how many symbols,
// pv_ops, the paravirt sites by op (and whether they still hold the original
// indirect call), the alternatives; and what boot-time patching makes of the
// sites, counted per op and per resulting form.

import type { ImageSection, KernelImage } from '../image/kernel-image';
import type { BootPatchResult } from '../linux/boot-patch';
import { VmlinuxImage } from '../image/vmlinux-image';

export interface OpSites {
  op: string;
  slot: number;
  count: number;
  /** Site lengths seen, ascending. */
  lengths: number[];
  /** Sites still holding `ff 15` (the unpatched indirect call). */
  original: number;
}

export interface ImageSummary {
  kind: KernelImage['kind'];
  path: string;
  sections: ImageSection[];
  symbols: number;
  pvOps: { address: bigint; slots: number; named: number };
  sites: { total: number; original: number; byOp: OpSites[] };
  /** .altinstructions of a vmlinux (null: the image has none). */
  alternatives: { total: number; overlappingSites: number; sections: Record<string, number> } | null;
}

export function summarizeImage(img: KernelImage): ImageSummary {
  const byOp = new Map<string, OpSites>();
  let original = 0;
  for (const s of img.sites) {
    const e = byOp.get(s.op) ?? { op: s.op, slot: s.slot, count: 0, lengths: [], original: 0 };
    byOp.set(s.op, e);
    e.count++;
    if (!e.lengths.includes(s.len)) e.lengths.push(s.len);
    const b = img.read(s.address, 2);
    if (b[0] === 0xff && b[1] === 0x15) {
      e.original++;
      original++;
    }
  }
  for (const e of byOp.values()) e.lengths.sort((a, b) => a - b);
  let alternatives: ImageSummary['alternatives'] = null;
  if (img instanceof VmlinuxImage) {
    const alts = img.vm.altinstructions();
    const sites = [...img.sites].sort((a, b) => (a.address < b.address ? -1 : 1));
    const sections: Record<string, number> = {};
    let overlapping = 0;
    for (const a of alts) {
      sections[a.section] = (sections[a.section] ?? 0) + 1;
      if (overlapsAny(sites, a.instr, a.instr + BigInt(a.instrlen))) overlapping++;
    }
    alternatives = { total: alts.length, overlappingSites: overlapping, sections };
  }
  return {
    kind: img.kind,
    path: img.path,
    sections: [...img.sections],
    symbols: img.symbols.size,
    pvOps: { address: img.pvOps.address, slots: img.pvOps.slots.length, named: img.pvOps.slots.filter((s) => s).length },
    sites: { total: img.sites.length, original, byOp: [...byOp.values()].sort((a, b) => a.slot - b.slot) },
    alternatives,
  };
}

/** Whether [start, end) overlaps a site; `sites` sorted by address. */
function overlapsAny(sites: readonly { address: bigint; len: number }[], start: bigint, end: bigint): boolean {
  let lo = 0;
  let hi = sites.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sites[mid].address + BigInt(sites[mid].len) <= start) lo = mid + 1;
    else hi = mid;
  }
  return lo < sites.length && sites[lo].address < end;
}

export function formatImageSummary(s: ImageSummary): string {
  const out: string[] = [];
  const hex = (a: bigint): string => a.toString(16).padStart(16, '0');
  out.push(`${s.path}: ${s.kind === 'vmlinux' ? 'ELF vmlinux' : 'fixture kernel'}, ${s.symbols.toLocaleString('en-US')} symbols`);
  out.push(`sections (${s.sections.length}):`);
  const w = Math.max(...s.sections.map((x) => x.name.length), 4);
  for (const x of s.sections) {
    out.push(`  ${x.name.padEnd(w)}  ${hex(x.address)}  ${x.size.toString().padStart(10)} bytes${x.loaded ? '' : '  (zeroed, no file contents)'}`);
  }
  out.push(`pv_ops at ${hex(s.pvOps.address)}: ${s.pvOps.slots} slots (${s.pvOps.named} named)`);
  out.push(`paravirt sites: ${s.sites.total} (${s.sites.original} still the original indirect call through pv_ops)`);
  const ow = Math.max(...s.sites.byOp.map((o) => o.op.length), 2);
  for (const o of s.sites.byOp) {
    const lens = o.lengths.join('/');
    out.push(`  ${o.op.padEnd(ow)}  ${o.count.toString().padStart(5)} site(s), ${lens} bytes${o.original === o.count ? '' : `, ${o.count - o.original} patched`}`);
  }
  if (s.alternatives) {
    const secs = Object.entries(s.alternatives.sections).map(([k, v]) => `${k} ${v}`).join(', ');
    out.push(`alternatives: ${s.alternatives.total} (${secs}); ${s.alternatives.overlappingSites} overlap a paravirt site`);
  } else {
    out.push('alternatives: none (fixture)');
  }
  return out.join('\n');
}

export interface BootPatchSummary {
  rules: BootPatchResult['rules'];
  sites: number;
  /** op -> form -> count */
  byOp: Record<string, Record<string, number>>;
  /** form -> count */
  byForm: Record<string, number>;
  /** Sites whose bytes boot patching changes. */
  changed: number;
  /** The CPU profile (vmlinux), the boot-time tables by kind, and what is left to run time. */
  cpu?: string;
  kinds?: BootPatchResult['kinds'];
  runtime?: BootPatchResult['runtime'];
}

export function summarizeBootPatch(b: BootPatchResult): BootPatchSummary {
  const byOp: Record<string, Record<string, number>> = {};
  const byForm: Record<string, number> = {};
  let changed = 0;
  for (const s of b.sites) {
    const f = byOp[s.site.op] ?? (byOp[s.site.op] = {});
    f[s.form] = (f[s.form] ?? 0) + 1;
    byForm[s.form] = (byForm[s.form] ?? 0) + 1;
    if (s.original.length !== s.final.length || s.original.some((x, i) => x !== s.final[i])) changed++;
  }
  return { rules: b.rules, sites: b.sites.length, byOp, byForm, changed, cpu: b.cpu, kinds: b.kinds, runtime: b.runtime };
}

export function formatBootPatchSummary(s: BootPatchSummary): string {
  const forms = (r: Record<string, number>): string => Object.entries(r).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  const out = [`boot-time patching (${s.rules} rules${s.cpu ? `, cpu ${s.cpu}` : ''}): ${s.sites} paravirt site(s), ${s.changed} changed; by form: ${forms(s.byForm)}`];
  if (s.kinds) {
    out.push(`  tables: ${Object.entries(s.kinds).map(([k, c]) => `${k} ${c.sites} (${c.changed} changed${c.runtime ? `, ${c.runtime} at run time` : ''})`).join('; ')}`);
  }
  if (s.runtime) out.push(`  decided at run time: ${Object.entries(s.runtime).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const w = Math.max(...Object.keys(s.byOp).map((k) => k.length), 2);
  for (const [op, r] of Object.entries(s.byOp)) out.push(`  ${op.padEnd(w)}  ${forms(r)}`);
  return out.join('\n');
}
