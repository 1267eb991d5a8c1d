// The kernel's other tables of `.text` sites it rewrites after the link, besides the
// paravirt and alternatives tables: return thunks, retpoline calls, __fentry__ calls,
// jump labels, static calls and their trampolines, and lock prefixes. Each names the
// instructions one kernel mechanism may change, so a byte of `.text` that differs
// between the file and a booted kernel can be attributed to the mechanism that owns it.
// Layouts (Linux 6.1 and 6.12 alike, x86-64):
//   .retpoline_sites, .return_sites, .smp_locks, and since 6.2 .ibt_endbr_seal and
//   .call_sites: s32 offsets, each relative to itself
//   __mcount_loc: u64 absolute addresses of the `call __fentry__` at function entry
//   __jump_table: {s32 code, s32 target, s64 key} per entry, offsets relative to each field
//   .static_call_sites: {s32 addr, s32 key} per site, offsets relative to each field
//   __SCT__<name>: one static-call trampoline per key, a symbol in .text
//   runtime_ptr_<name>, runtime_shift_<name> (6.11+, runtime_const): s32 offsets to the
//   8-byte immediate of a movabs, or the 1-byte count of a shift, that
//   runtime_const_init() fills in at boot; bounded by __start_/__stop_ symbols

import type { Vmlinux } from './vmlinux';

export type TextSiteTable =
  | 'return' | 'retpoline' | 'mcount' | 'endbr' | 'call_depth' | 'jump_label' | 'static_call' | 'static_call_tramp' | 'runtime_const' | 'smp_lock';

export interface TextSite {
  table: TextSiteTable;
  address: bigint;
  len: number;
}

/** The table's bounds in System.map; a table whose symbols are absent is simply empty. */
const BOUNDS: Record<Exclude<TextSiteTable, 'static_call_tramp' | 'runtime_const'>, [string, string, number]> = {
  return: ['__return_sites', '__return_sites_end', 4],
  retpoline: ['__retpoline_sites', '__retpoline_sites_end', 4],
  smp_lock: ['__smp_locks', '__smp_locks_end', 4],
  jump_label: ['__start___jump_table', '__stop___jump_table', 16],
  static_call: ['__start_static_call_sites', '__stop_static_call_sites', 8],
  mcount: ['__start_mcount_loc', '__stop_mcount_loc', 8],
  endbr: ['__ibt_endbr_seal', '__ibt_endbr_seal_end', 4],
  call_depth: ['__call_sites', '__call_sites_end', 4],
};

/** Length of the branch, call or NOP that starts a site, from its first bytes as linked. */
function siteLength(table: TextSiteTable, b: Buffer): number {
  if (table === 'smp_lock') return 1;
  if (table === 'static_call_tramp') return 5;
  if (table === 'endbr') return 4; // endbr64
  if (b[0] === 0x0f && (b[1] & 0xf0) === 0x80) return 6; // jcc rel32
  if (b[0] === 0xeb || (b[0] === 0x66 && b[1] === 0x90)) return 2; // jmp rel8, xchg ax,ax (jump labels' short forms)
  if (b[0] === 0x2e && b[1] === 0xe8) return 6; // cs-prefixed call (a thunk call padded by the compiler)
  return 5; // call/jmp rel32, NOP5
}

/** Every site of every table, in table order. */
export function textSites(vm: Vmlinux): TextSite[] {
  const out: TextSite[] = [];
  const sym = (n: string): bigint | undefined => vm.symbols.resolve(n);
  const add = (table: TextSiteTable, address: bigint): void => {
    out.push({ table, address, len: siteLength(table, vm.readAt(address, 2)) });
  };
  for (const [table, [startName, endName, stride]] of Object.entries(BOUNDS) as [TextSiteTable, [string, string, number]][]) {
    const start = sym(startName);
    const end = sym(endName);
    if (start === undefined || end === undefined || end <= start) continue;
    const b = vm.readAt(start, Number(end - start));
    for (let i = 0; i + stride <= b.length; i += stride) {
      const addr = table === 'mcount' ? b.readBigUInt64LE(i) : start + BigInt(i) + BigInt(b.readInt32LE(i));
      if (addr === 0n) continue;
      add(table, addr);
    }
  }
  for (const n of vm.symbols.names()) if (n.startsWith('__SCT__')) add('static_call_tramp', vm.symbols.resolve(n)!);
  for (const n of vm.symbols.names()) {
    const m = /^__start_runtime_(ptr|shift)_(.+)$/.exec(n);
    const start = vm.symbols.resolve(n)!;
    const end = m ? sym(`__stop_runtime_${m[1]}_${m[2]}`) : undefined;
    if (!m || end === undefined || end <= start) continue;
    const b = vm.readAt(start, Number(end - start));
    for (let i = 0; i + 4 <= b.length; i += 4) out.push({ table: 'runtime_const', address: start + BigInt(i) + BigInt(b.readInt32LE(i)), len: m[1] === 'ptr' ? 8 : 1 });
  }
  return out;
}
