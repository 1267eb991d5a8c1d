// ftrace_init() at boot: every `call __fentry__` the compiler put at a function's
// start (recorded between __start_mcount_loc and __stop_mcount_loc) becomes the
// 5-byte NOP until a tracer is switched on; a record whose bytes are not that call
// is left alone, as ftrace's own check does.

import type { Vmlinux } from '../image/vmlinux';
import { X86_NOPS } from './nops';
import { TextOverlay, callBytes } from './alternatives-common';

export function applyFentryNops(vm: Vmlinux, text: TextOverlay, poke: (addr: bigint, bytes: Uint8Array) => void): { sites: number } {
  const fentry = vm.symbols.resolve('__fentry__');
  const start = vm.symbols.resolve('__start_mcount_loc');
  const stop = vm.symbols.resolve('__stop_mcount_loc');
  if (fentry === undefined || start === undefined || stop === undefined) return { sites: 0 };
  const locs = vm.readAt(start, Number(stop - start));
  let sites = 0;
  for (let o = 0; o + 8 <= locs.length; o += 8) {
    const addr = locs.readBigUInt64LE(o);
    if (addr === 0n) continue;
    sites++;
    const cur = text.readUpTo(addr, 5);
    const call = callBytes(addr, fentry);
    if (cur.length === 5 && cur.every((b, i) => b === call[i])) poke(addr, X86_NOPS[5]);
  }
  return { sites };
}
