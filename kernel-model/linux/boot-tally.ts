// Counting a boot patch: entries per table, how many the patch changed, and the
// rewrites the running kernel decides (jump labels, static calls, runtime constants,
// call-depth thunks) — the figures `patch --boot` prints for 6.1 and 6.12 alike.

import type { Vmlinux } from '../image/vmlinux';
import type { TextOverlay } from './alternatives-common';

/** The kinds of boot-time text rewrites, each from its own table. */
export type PatchKind = 'retpoline' | 'return' | 'alternative' | 'endbr' | 'fentry';
/** Rewrites that depend on run-time state: counted, not applied. */
export type RuntimeKind = 'jump_label' | 'static_call' | 'runtime_const' | 'call_thunk' | 'its_thunk' | 'static_call_return';

export interface KindCount {
  /** Table entries. */
  sites: number;
  /** Entries whose bytes the boot patch changed. */
  changed: number;
  /** Entries left as they are because the outcome is decided at run time. */
  runtime: number;
}

function zero(): KindCount {
  return { sites: 0, changed: 0, runtime: 0 };
}

/** Entries between two System.map symbols, `size` bytes each. */
function symbolRangeCount(vm: Vmlinux, start: string, stop: string, size: number): number {
  const a = vm.symbols.resolve(start);
  const b = vm.symbols.resolve(stop);
  return a !== undefined && b !== undefined && b >= a ? Number(b - a) / size : 0;
}

export class BootTally {
  readonly kinds: Record<PatchKind, KindCount> = { retpoline: zero(), return: zero(), alternative: zero(), endbr: zero(), fentry: zero() };
  readonly runtime: Record<RuntimeKind, number> = { jump_label: 0, static_call: 0, runtime_const: 0, call_thunk: 0, its_thunk: 0, static_call_return: 0 };
  readonly writes = new Map<bigint, Uint8Array>();

  constructor(private readonly text: TextOverlay) {}

  /** Writes `bytes` at `addr` into the overlay, counting a change when they differ from what is there. */
  poke(kind: PatchKind, addr: bigint, bytes: Uint8Array): void {
    const before = this.text.read(addr, bytes.length);
    if (before.some((b, i) => b !== bytes[i])) this.kinds[kind].changed++;
    this.text.write(addr, bytes);
    this.writes.set(addr, bytes);
  }

  /** The table sizes of what the running kernel patches later (callSites: call-depth tracking is on). */
  countRuntime(vm: Vmlinux, callSites: boolean): void {
    this.runtime.jump_label = symbolRangeCount(vm, '__start___jump_table', '__stop___jump_table', 16);
    this.runtime.static_call = symbolRangeCount(vm, '__start_static_call_sites', '__stop_static_call_sites', 8);
    this.runtime.runtime_const = vm.elf.sections.filter((s) => s.name.startsWith('runtime_')).reduce((n, s) => n + s.size / 4, 0);
    const calls = vm.elf.sections.find((s) => s.name === '.call_sites');
    if (callSites && calls) this.runtime.call_thunk += calls.size / 4;
  }
}
