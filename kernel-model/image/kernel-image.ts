// A loaded kernel image, whatever it came from (a fixture blob with its manifest, or
// a distribution vmlinux with its System.map): sections, symbols, the pv_ops table
// and the paravirt sites. The kernel model works on this interface only.

import type { Machine } from '../../emu/machine';
import type { SymbolTable } from '../../emu/symbols';

export interface ImageSection {
  name: string;
  address: bigint;
  size: number;
  /** False for NOBITS (.bss): mapped zeroed. */
  loaded: boolean;
}

/** One paravirt call site: `len` bytes at `address`, for pv_ops slot `slot` (op `op`). */
export interface PvSite {
  address: bigint;
  slot: number;
  op: string;
  len: number;
}

export interface KernelImage {
  readonly kind: 'fixture' | 'vmlinux';
  /** File the image was loaded from (for messages). */
  readonly path: string;
  readonly symbols: SymbolTable;
  readonly sections: readonly ImageSection[];
  /** pv_ops: its address and the op name of each slot ('' where unknown). */
  readonly pvOps: { address: bigint; slots: readonly string[] };
  readonly sites: readonly PvSite[];
  /** Named constants the image exports (fixtures: struct offsets, vectors). */
  readonly constants: Readonly<Record<string, number>>;
  /** The bytes of the image file at `address` (what the loader maps). */
  read(address: bigint, len: number): Uint8Array;
  /** Maps every section into the machine, writes its bytes, marks text as code, adds symbols. */
  mapInto(m: Machine): void;
  /** Where CPU `cpu`'s per-CPU area (GS base) is, when the image decides it (a kernel with a harness). */
  percpuBase?(cpu: number): bigint;
  /**
   * The bytes the kernel's own rules give the sites of the ops in `targets` for those
   * pv_ops targets (others at `current`); images without this use DESIGN.md's rules.
   */
  generateSites?(targets: Map<string, bigint>, current: (op: string) => bigint): Map<bigint, Uint8Array>;
  /** Paravirt implementations of ops, by symbol, where the image's kernel has them. */
  readonly paravirtTargets?: Readonly<Record<string, string>>;
}

export class ImageError extends Error {}

/** A symbol's address, or an error that names the image and the symbol. */
export function requireSymbol(img: KernelImage, name: string): bigint {
  const a = img.symbols.resolve(name);
  if (a === undefined) throw new ImageError(`${img.path}: unknown symbol '${name}'`);
  return a;
}

export function requireConstant(img: KernelImage, name: string): number {
  const v = img.constants[name];
  if (v === undefined) throw new ImageError(`${img.path}: the image does not define '${name}'`);
  return v;
}

/** The slot index of an op, or an error naming the op and the known ones. */
export function slotOf(img: KernelImage, op: string): number {
  const i = img.pvOps.slots.indexOf(op);
  if (i < 0) {
    const known = img.pvOps.slots.filter((s) => s).join(', ');
    throw new ImageError(`${img.path}: unknown op '${op}' (this image has: ${known})`);
  }
  return i;
}

export function textSection(img: KernelImage): ImageSection {
  const t = img.sections.find((s) => s.name === '.text');
  if (!t) throw new ImageError(`${img.path}: no .text section`);
  return t;
}
