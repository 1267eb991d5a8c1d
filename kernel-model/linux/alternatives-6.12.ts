// What a Linux 6.12 kernel writes into its own text at boot, computed offline from
// the image for one CPU feature set (a --cpu profile): alternative_instructions() in
// its order — paravirt_set_cap(), apply_retpolines(), apply_returns(),
// apply_alternatives() (every record; paravirt call sites are ALT_FLAG_DIRECT_CALL
// records since 6.8), apply_seal_endbr() — then ftrace_init() turning every
// `call __fentry__` into NOP5. What depends on state only the running kernel has
// (jump labels, static calls, runtime constants, call-depth thunks, ITS thunk pages)
// is left alone and counted. docs/notes/linux-6.12-patching.md cites each rule.

import type { KernelImage, PvSite } from '../image/kernel-image';
import { ImageError } from '../image/kernel-image';
import type { AltInstr } from '../image/altinstructions';
import type { Vmlinux } from '../image/vmlinux';
import {
  X86_FEATURE_ALWAYS, X86_FEATURE_PVUNLOCK, X86_FEATURE_VCPUPREEMPT, X86_FEATURE_RETPOLINE, X86_FEATURE_RETPOLINE_LFENCE,
  X86_FEATURE_RETHUNK, X86_FEATURE_CALL_DEPTH, ENDBR_POISON_6_12, ENDBR64,
} from '../image/linux-6.12';
import { NATIVE_UNLOCK_THUNK, NATIVE_PREEMPTED_THUNK } from '../image/linux-6.1';
import { X86_NOPS_64 } from './nops';
import {
  TextOverlay, decodeInsn, optimizeNops612, applyRelocation612, readU64, CALL,
} from './alternatives-common';
import { applyFentryNops } from './ftrace-init';
import { BootTally, type PatchKind, type KindCount, type RuntimeKind } from './boot-tally';

export type { PatchKind, KindCount, RuntimeKind };
import { applyRetpolines, applyReturns, relTable, type ThunkFeatures } from './thunk-sites';

export type PvForm = 'call' | 'nop' | 'inline' | 'bug' | 'indirect';

export interface PvBootSite {
  site: PvSite;
  original: Uint8Array;
  final: Uint8Array;
  form: PvForm;
}

export interface BootPatch612 {
  rules: 'linux-6.12';
  features: number[];
  /** The patched text (reads any address range). */
  text: TextOverlay;
  /** Every patched range by its start: final bytes. */
  writes: Map<bigint, Uint8Array>;
  sites: PvBootSite[];
  kinds: Record<PatchKind, KindCount>;
  runtime: Record<RuntimeKind, number>;
}

export interface BootPatch612Options {
  features: Set<number>;
  /** Symbol x86_return_thunk points at (the CPU profile says). */
  returnThunk: string;
  /** pv_ops slot values to assume instead of the image's. */
  slotValue?: (op: string, slot: number) => bigint | undefined;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export function bootPatch612(img: KernelImage, vm: Vmlinux, opts: BootPatch612Options): BootPatch612 {
  const sym = (n: string): bigint | undefined => img.symbols.resolve(n);
  const need = (n: string): bigint => {
    const a = sym(n);
    if (a === undefined) throw new ImageError(`${img.path}: no symbol ${n} (needed by Linux 6.12's boot patching)`);
    return a;
  };
  const slotAt = (op: string, i: number): bigint => opts.slotValue?.(op, i) ?? readU64(img, img.pvOps.address + 8n * BigInt(i));
  const slot = (op: string): bigint => slotAt(op, img.pvOps.slots.indexOf(op));
  const features = new Set(opts.features);
  features.add(X86_FEATURE_ALWAYS);
  const has = (f: number): boolean => features.has(f);
  // paravirt_set_cap()
  if (slot('lock.queued_spin_unlock') !== sym(NATIVE_UNLOCK_THUNK)) features.add(X86_FEATURE_PVUNLOCK);
  else features.delete(X86_FEATURE_PVUNLOCK);
  if (slot('lock.vcpu_is_preempted') !== sym(NATIVE_PREEMPTED_THUNK)) features.add(X86_FEATURE_VCPUPREEMPT);
  else features.delete(X86_FEATURE_VCPUPREEMPT);

  const text = new TextOverlay(img);
  const tally = new BootTally(text);
  const { kinds, runtime, writes } = tally;
  const poke = (kind: PatchKind, addr: bigint, bytes: Uint8Array): void => tally.poke(kind, addr, bytes);

  const thunkFeatures: ThunkFeatures = {
    retpoline: has(X86_FEATURE_RETPOLINE), lfence: has(X86_FEATURE_RETPOLINE_LFENCE), rethunk: has(X86_FEATURE_RETHUNK),
    callDepth: has(X86_FEATURE_CALL_DEPTH),
  };
  const rp = applyRetpolines(img, vm, text, thunkFeatures, (a, b) => poke('retpoline', a, b));
  kinds.retpoline.sites = rp.sites;
  kinds.retpoline.runtime = rp.runtime;
  runtime.call_thunk += rp.runtime;
  const rt = applyReturns(img, vm, text, thunkFeatures, opts.returnThunk, (a, b) => poke('return', a, b));
  kinds.return.sites = rt.sites;
  kinds.return.runtime = rt.runtime;
  runtime.static_call_return = rt.runtime;

  // apply_alternatives(): entries at one address are applied in table order over the largest instrlen.
  const bugFunc = need('BUG_func');
  const nopFunc = need('nop_func');
  const alts = vm.altinstructions();
  const maxFeature = vm.layouts().capabilityWords * 32;
  const maxLen = new Map<bigint, number>();
  for (const a of alts) maxLen.set(a.instr, Math.max(maxLen.get(a.instr) ?? 0, a.instrlen));
  for (const a of alts) {
    kinds.alternative.sites++;
    applyOne(a, maxLen.get(a.instr)!);
  }
  function applyOne(a: AltInstr, instrlen: number): void {
    if (a.feature >= maxFeature) throw new ImageError(`${img.path}: .altinstructions record ${a.index}: feature ${a.feature} is past the ${maxFeature} capability bits`);
    const live = text.read(a.instr, instrlen);
    if (has(a.feature) === a.inverted) {
      // Not applied: the original's NOPs are still optimized in place.
      const buf = live.slice();
      optimizeNops612(buf, instrlen, a.instr, X86_NOPS_64);
      if (!same(buf, live)) poke('alternative', a.instr, buf);
      return;
    }
    const buf = new Uint8Array(instrlen).fill(0x90);
    // The replacement as apply_retpolines()/apply_returns() left it (they patch .altinstr_replacement too).
    buf.set(text.read(a.repl, a.replacementlen).subarray(0, instrlen), 0);
    let size = Math.min(a.replacementlen, instrlen);
    if (a.directCall) {
      // alt_replace_call(): the replacement is `call BUG_func`; retarget it at the pv_ops slot's value.
      if (a.replacementlen !== 5 || buf[0] !== CALL || a.instrlen !== 6 || live[0] !== 0xff || live[1] !== 0x15) {
        throw new ImageError(`${img.path}: .altinstructions record ${a.index}: ALT_FLAG_DIRECT_CALL on a non-call (${Buffer.from(live).toString('hex')})`);
      }
      const ptr = BigInt.asUintN(64, a.instr + 6n + BigInt(new DataView(live.buffer, live.byteOffset).getInt32(2, true)));
      const index = Number((ptr - img.pvOps.address) / 8n);
      let target = slotAt(img.pvOps.slots[index] ?? '', index);
      if (target === 0n) target = bugFunc;
      // The replacement's rel32 reaches BUG_func from .altinstr_replacement; add (target - BUG_func).
      const dv = new DataView(buf.buffer);
      dv.setInt32(1, Number(BigInt.asIntN(32, BigInt(dv.getInt32(1, true)) + (target - bugFunc))), true);
      size = target === nopFunc ? 0 : 5;
    }
    buf.fill(0x90, size);
    applyRelocation612(buf, a.instr, instrlen, a.repl, a.replacementlen, X86_NOPS_64);
    poke('alternative', a.instr, buf);
  }

  // apply_seal_endbr()
  for (const addr of relTable(vm, '.ibt_endbr_seal')) {
    kinds.endbr.sites++;
    if (same(text.read(addr, 4), ENDBR64)) poke('endbr', addr, ENDBR_POISON_6_12);
  }

  // ftrace_init()
  kinds.fentry.sites = applyFentryNops(vm, text, (a, b) => poke('fentry', a, b)).sites;

  tally.countRuntime(vm, has(X86_FEATURE_CALL_DEPTH));

  const sites: PvBootSite[] = img.sites.map((s) => {
    const original = img.read(s.address, s.len);
    const final = text.read(s.address, s.len);
    return { site: s, original, final, form: pvForm(s, final, bugFunc) };
  });
  return { rules: 'linux-6.12', features: [...features].sort((a, b) => a - b), text, writes, sites, kinds, runtime };
}

/** What a paravirt site became: a direct call (to BUG_func: an empty slot), NOPs, native code, or still the indirect call. */
function pvForm(s: PvSite, b: Uint8Array, bugFunc: bigint): PvForm {
  if (b[0] === 0xff && b[1] === 0x15) return 'indirect';
  if (b[0] === CALL) {
    const t = s.address + 5n + BigInt(new DataView(b.buffer, b.byteOffset).getInt32(1, true));
    return t === bugFunc ? 'bug' : 'call';
  }
  const insn = decodeInsn(b, s.address);
  if (insn && ((insn.op0 === 0x0f && insn.op1 === 0x1f) || insn.op0 === 0x90) && insn.len === b.length) return 'nop';
  return 'inline';
}
