// What a Linux 6.1 kernel writes into its paravirt sites at boot, computed offline
// from the image: paravirt_set_cap(), apply_paravirt() (a direct call to the slot's
// target, nothing for the paravirt no-op, a call to paravirt_BUG for an empty slot,
// padded with add_nops), then apply_alternatives() in table order for every record
// (feature test with the inverted flag, CALL and JMP fix-ups, 0x90 padding,
// optimize_nops on the live bytes after every record), for a CPU feature set (a
// --cpu profile; default bare metal: X86_FEATURE_ALWAYS only).
// docs/notes/linux-6.1-patching.md describes each rule and how it was checked.

import type { KernelImage, PvSite } from '../image/kernel-image';
import { ImageError } from '../image/kernel-image';
import type { AltInstr } from '../image/altinstructions';
import { addNops, X86_NOPS } from './nops';
import { encodeCall } from './paravirt-patch';
import { decodeOne, isDecodeFailure } from '../../emu/decode';
import { TextOverlay, readU64 } from './alternatives-common';
import { applyRetpolines, applyReturns } from './thunk-sites';
import { applyFentryNops } from './ftrace-init';
import { BootTally, type PatchKind, type KindCount, type RuntimeKind } from './boot-tally';
import type { Vmlinux } from '../image/vmlinux';
import {
  bareMetalFeatures, X86_FEATURE_PVUNLOCK, X86_FEATURE_VCPUPREEMPT, NATIVE_UNLOCK_THUNK, NATIVE_PREEMPTED_THUNK, MAX_FEATURE,
} from '../image/linux-6.1';

export type BootForm = 'call' | 'nop' | 'inline' | 'bug';

export interface BootSite {
  site: PvSite;
  original: Uint8Array;
  afterParavirt: Uint8Array;
  final: Uint8Array;
  form: BootForm;
  /** The alternative that overlaps the site, and whether it applied. */
  alt: { feature: number; inverted: boolean; applied: boolean } | null;
}

export interface BootPatch {
  sites: BootSite[];
  /** Feature bits set when alternatives ran (after paravirt_set_cap). */
  features: number[];
  /** Every byte range written: address -> final bytes (sites and alternative ranges). */
  writes: Map<bigint, Uint8Array>;
  /** The patched text (reads any address range). */
  text: TextOverlay;
  /** With `thunks`: entries per table and what is left to run time (no ENDBR sealing in Debian's 6.1). */
  kinds?: Record<PatchKind, KindCount>;
  runtime?: Record<RuntimeKind, number>;
}

/** paravirt_patch(): the bytes apply_paravirt() writes for one site. */
export function paravirtBytes(site: PvSite, target: bigint, nop: bigint | undefined, bug: bigint | undefined): { bytes: Uint8Array; form: BootForm } {
  const buf = new Uint8Array(site.len);
  let used = 0;
  let form: BootForm;
  if (target === 0n) {
    if (bug === undefined) throw new ImageError(`pv site 0x${site.address.toString(16)}: empty slot and no paravirt_BUG symbol`);
    buf.set(encodeCall(site.address, bug), 0);
    used = 5;
    form = 'bug';
  } else if (nop !== undefined && target === nop) {
    form = 'nop';
  } else {
    buf.set(encodeCall(site.address, target), 0);
    used = 5;
    form = 'call';
  }
  addNops(buf, used, site.len - used);
  return { bytes: buf, form };
}

/** recompute_jump() for a 5-byte `jmp rel32` copied from `repl` to `instr`. */
function recomputeJump(buf: Uint8Array, instr: bigint, repl: bigint, instrlen: number): void {
  if (buf[0] !== 0xe9 || buf.length < 5) return;
  const v = new DataView(buf.buffer, buf.byteOffset);
  const target = repl + 5n + BigInt(v.getInt32(1, true));
  const disp = target - (instr + 5n);
  const shortDisp = target - (instr + 2n);
  if (disp >= 0n && shortDisp <= 127n && instrlen >= 5) {
    buf[0] = 0xeb;
    buf[1] = Number(shortDisp & 0xffn);
    buf.set(X86_NOPS[3], 2);
  } else {
    v.setInt32(1, Number(BigInt.asIntN(32, disp)), true);
  }
}

/** optimize_nops(): merge runs of single-byte 0x90 into the kernel's longer NOPs. */
function optimizeNops(text: TextOverlay, instr: bigint, len: number): void {
  const bytes = text.read(instr, len);
  let i = 0;
  while (i < len) {
    const a = instr + BigInt(i);
    const d = decodeOne(bytes.subarray(i), Number(a & 0xffffffffn) | 0, Number(a >> 32n) | 0);
    if (isDecodeFailure(d)) return;
    if (d.len === 1 && bytes[i] === 0x90) {
      let run = 1;
      while (i + run < len && bytes[i + run] === 0x90) run++;
      if (run >= 2) {
        const nops = new Uint8Array(run);
        addNops(nops, 0, run);
        text.write(a, nops);
      }
      i += run;
      continue;
    }
    i += d.len;
  }
}

export interface BootPatchOptions {
  /** Feature bits to assume (default: bare metal, X86_FEATURE_ALWAYS only). */
  features?: Set<number>;
  /** The .altinstructions records (a vmlinux provides them). */
  alternatives: AltInstr[];
  /** pv_ops slot values to assume instead of the image's (a runtime switch being planned). */
  slotValue?: (op: string, slot: number) => bigint | undefined;
  /** Run apply_retpolines() and apply_returns() first and ftrace_init()'s NOPs last (a vmlinux, with x86_return_thunk's symbol). */
  thunks?: { vm: Vmlinux; returnThunk: string };
}

export function bootPatch61(img: KernelImage, opts: BootPatchOptions): BootPatch {
  const sym = (n: string): bigint | undefined => img.symbols.resolve(n);
  const slotAt = (op: string, i: number): bigint => opts.slotValue?.(op, i) ?? readU64(img, img.pvOps.address + 8n * BigInt(i));
  const slot = (op: string): bigint => slotAt(op, img.pvOps.slots.indexOf(op));
  const features = new Set(opts.features ?? bareMetalFeatures());
  // paravirt_set_cap(): lock slots that are not the native thunks switch the ALT_NOTs off.
  if (slot('lock.queued_spin_unlock') !== sym(NATIVE_UNLOCK_THUNK)) features.add(X86_FEATURE_PVUNLOCK);
  if (slot('lock.vcpu_is_preempted') !== sym(NATIVE_PREEMPTED_THUNK)) features.add(X86_FEATURE_VCPUPREEMPT);

  const text = new TextOverlay(img);
  const nop = sym('_paravirt_nop');
  const bug = sym('paravirt_BUG');
  const results = new Map<bigint, BootSite>();
  for (const s of img.sites) {
    const original = img.read(s.address, s.len);
    const target = slotAt(s.op, s.slot);
    const p = paravirtBytes(s, target, nop, bug);
    text.write(s.address, p.bytes);
    results.set(s.address, { site: s, original, afterParavirt: p.bytes, final: p.bytes, form: p.form, alt: null });
  }

  const tally = new BootTally(text);
  const writes = tally.writes;
  if (opts.thunks) {
    // Feature numbers of 6.1's word 11: RETPOLINE, RETPOLINE_LFENCE, RETHUNK (no call-depth tracking in 6.1).
    const f = { retpoline: features.has(11 * 32 + 12), lfence: features.has(11 * 32 + 13), rethunk: features.has(11 * 32 + 14), callDepth: false };
    const rp = applyRetpolines(img, opts.thunks.vm, text, f, (a, b) => tally.poke('retpoline', a, b));
    const rt = applyReturns(img, opts.thunks.vm, text, f, opts.thunks.returnThunk, (a, b) => tally.poke('return', a, b));
    tally.kinds.retpoline.sites = rp.sites;
    tally.kinds.return.sites = rt.sites;
    tally.kinds.return.runtime = tally.runtime.static_call_return = rt.runtime;
  }

  const siteList = [...img.sites].sort((a, b) => (a.address < b.address ? -1 : 1));
  const overlapping = (a: AltInstr): PvSite | undefined => {
    // Binary search for a site starting before the record's end.
    let lo = 0;
    let hi = siteList.length - 1;
    let best = -1;
    const end = a.instr + BigInt(a.instrlen);
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (siteList[mid].address < end) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const s = best >= 0 ? siteList[best] : undefined;
    return s && s.address + BigInt(s.len) > a.instr ? s : undefined;
  };

  for (const a of opts.alternatives) {
    const site = overlapping(a);
    const before = text.read(a.instr, a.instrlen);
    tally.kinds.alternative.sites++;
    if (a.feature >= MAX_FEATURE) throw new ImageError(`.altinstructions record ${a.index}: feature ${a.feature} out of range`);
    const applied = features.has(a.feature) !== a.inverted;
    if (applied) {
      const buf = new Uint8Array(a.instrlen).fill(0x90);
      const repl = text.read(a.repl, a.replacementlen);
      buf.set(repl, 0);
      if (a.replacementlen === 5 && repl[0] === 0xe8) {
        // The copied call's rel32 must still reach the same target from its new place.
        const v = new DataView(buf.buffer);
        v.setInt32(1, Number(BigInt.asIntN(32, BigInt(v.getInt32(1, true)) + (a.repl - a.instr))), true);
      }
      if (a.replacementlen > 0 && (repl[0] === 0xeb || repl[0] === 0xe9) && a.replacementlen === 5) {
        recomputeJump(buf.subarray(0, 5), a.instr, a.repl, a.instrlen);
      }
      text.write(a.instr, buf);
    }
    optimizeNops(text, a.instr, a.instrlen);
    const after = text.read(a.instr, a.instrlen);
    if (after.some((b, i) => b !== before[i])) tally.kinds.alternative.changed++;
    writes.set(a.instr, after);
    const r = site ? results.get(site.address) : undefined;
    if (r) r.alt = { feature: a.feature, inverted: a.inverted, applied };
  }

  if (opts.thunks) {
    tally.kinds.fentry.sites = applyFentryNops(opts.thunks.vm, text, (a, b) => tally.poke('fentry', a, b)).sites;
    tally.countRuntime(opts.thunks.vm, false);
  }

  for (const r of results.values()) {
    r.final = text.read(r.site.address, r.site.len);
    if (r.alt?.applied) r.form = 'inline';
    writes.set(r.site.address, r.final);
  }
  return {
    sites: img.sites.map((s) => results.get(s.address)!), features: [...features].sort((a, b) => a - b), writes, text,
    ...(opts.thunks ? { kinds: tally.kinds, runtime: tally.runtime } : {}),
  };
}

/** Counts of final forms, per op and overall. */
export function bootPatchCounts(b: BootPatch): { byOp: Record<string, Record<BootForm, number>>; byForm: Record<BootForm, number> } {
  const zero = (): Record<BootForm, number> => ({ call: 0, nop: 0, inline: 0, bug: 0 });
  const byOp: Record<string, Record<BootForm, number>> = {};
  const byForm = zero();
  for (const s of b.sites) {
    (byOp[s.site.op] ??= zero())[s.form]++;
    byForm[s.form]++;
  }
  return { byOp, byForm };
}
