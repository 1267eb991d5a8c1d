// pv_ops: the paravirt function table in guest memory. An op is switched by writing
// its slot; its sites are then re-patched to match. This module knows, for an
// image, each op's native and paravirt implementations and what a slot's value
// means (native, paravirt no-op, or something else).

import type { Machine } from '../../emu/machine';
import { type KernelImage, ImageError, slotOf } from '../image/kernel-image';
import type { PatchChoice } from './paravirt-patch';

export type OpMode = 'native' | 'paravirt';

export class PvOps {
  /** The paravirt no-op's address, if the image has one. */
  readonly nopTarget: bigint | undefined;

  constructor(readonly img: KernelImage) {
    this.nopTarget = img.symbols.resolve('_paravirt_nop');
  }

  slotAddress(op: string): bigint {
    return this.img.pvOps.address + 8n * BigInt(slotOf(this.img, op));
  }

  /** The value the image file stores in the slot (the boot-time choice). */
  initialTarget(op: string): bigint {
    const b = this.img.read(this.slotAddress(op), 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }

  read(m: Machine, op: string): bigint {
    return m.mem.readU64(this.slotAddress(op));
  }

  /**
   * The op's native implementation: `native_<name>` when the image has it (fixtures,
   * and most of Linux's ops), otherwise the paravirt no-op (native lock.wait/kick do
   * nothing).
   */
  nativeTarget(op: string): bigint {
    // A distribution kernel boots with native targets in every slot (bare metal).
    if (this.img.kind === 'vmlinux') return this.initialTarget(op);
    const name = op.split('.')[1] ?? op;
    for (const cand of [`native_${name}`, `__raw_callee_save___native_${name}`, `__native_${name}`]) {
      const a = this.img.symbols.resolve(cand);
      if (a !== undefined) return a;
    }
    if (this.nopTarget !== undefined) return this.nopTarget;
    throw new ImageError(`${this.img.path}: no native implementation of ${op}`);
  }

  /** The paravirt implementation: the slot's value in the image unless that is native. */
  paravirtTarget(op: string): bigint {
    const table = this.img.paravirtTargets;
    if (table) {
      const name = table[op];
      const a = name === undefined ? undefined : this.img.symbols.resolve(name);
      if (a === undefined) throw new ImageError(`${this.img.path}: no paravirt implementation of ${op} that runs without a hypervisor`);
      return a;
    }
    const t = this.initialTarget(op);
    if (t !== this.nativeTarget(op)) return t;
    const name = op.split('.')[1] ?? op;
    for (const cand of [`pv_${name}`, `__pv_${name}`]) {
      const a = this.img.symbols.resolve(cand);
      if (a !== undefined) return a;
    }
    throw new ImageError(`${this.img.path}: no paravirt implementation of ${op} to switch to`);
  }

  target(op: string, mode: OpMode): bigint {
    return mode === 'native' ? this.nativeTarget(op) : this.paravirtTarget(op);
  }

  /** What patch generation needs to know about a slot value. */
  choice(op: string, target: bigint): PatchChoice {
    return { target, native: target === this.nativeTarget(op), nop: this.nopTarget !== undefined && target === this.nopTarget };
  }

  /** Op names that occur at sites, in slot order. */
  opsWithSites(): string[] {
    const seen = new Set(this.img.sites.map((s) => s.op));
    return this.img.pvOps.slots.filter((s) => seen.has(s));
  }
}
