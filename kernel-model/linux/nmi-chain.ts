// register_nmi_handler() / unregister_nmi_handler() for NMI_LOCAL. The chain is a
// linked list of nmiaction {next, handler} in guest memory, walked by the fixture's
// default_do_nmi(). NMI_FLAG_FIRST inserts at the head; otherwise at the tail. The
// list changes by single pointer stores, so a walk in progress on another CPU always
// sees a well-formed list (the property Linux gets from RCU).

import type { KernelContext } from './kernel-context';
import { type Step, read, write } from './hostlib';

export function* registerNmiHandler(k: KernelContext, action: bigint, first: boolean): Step {
  const head = k.L.nmiListHead;
  if (first) {
    const old = yield* read(head, 8);
    yield* write(action, 8, old, 'nmiaction.next = head');
    yield* write(head, 8, action, 'register_nmi_handler(NMI_LOCAL, NMI_FLAG_FIRST)');
    return;
  }
  yield* write(action, 8, 0n);
  let link = head;
  for (;;) {
    const next = yield* read(link, 8);
    if (next === 0n) break;
    link = next;
  }
  yield* write(link, 8, action, 'register_nmi_handler(NMI_LOCAL)');
}

export function* unregisterNmiHandler(k: KernelContext, action: bigint): Step {
  let link = k.L.nmiListHead;
  for (;;) {
    const cur = yield* read(link, 8);
    if (cur === 0n) return;
    if (cur === action) {
      const next = yield* read(action, 8);
      yield* write(link, 8, next, 'unregister_nmi_handler');
      return;
    }
    link = cur;
  }
}

/** The handlers on the NMI_LOCAL list, in order (host-side, for reports and tests). */
export function nmiHandlers(k: KernelContext): bigint[] {
  const out: bigint[] = [];
  let p = k.m.mem.readU64(k.L.nmiListHead);
  for (let guard = 0; p !== 0n && guard < 64; guard++) {
    out.push(k.m.mem.readU64(p + 8n));
    p = k.m.mem.readU64(p);
  }
  return out;
}
