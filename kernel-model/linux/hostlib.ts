// Typed helpers for writing kernel-model host routines. Each helper yields exactly
// one host operation, i.e. one schedulable step, so a routine reads like the kernel
// C it models while every shared access interleaves with the other CPUs.

import type { HostOp, HostResult, WaitInfo } from '../../emu/host';

export type Step<T = void> = Generator<HostOp, T, HostResult>;
export type Size = 1 | 2 | 4 | 8;

export function* read(addr: bigint, size: Size): Step<bigint> {
  return (yield { op: 'read', addr, size }) as bigint;
}

export function* write(addr: bigint, size: Size, value: bigint, what?: string): Step {
  yield { op: 'write', addr, size, value, what };
}

/** Writes bytes one store at a time (the finest grain another CPU could observe). */
export function* writeBytes(addr: bigint, bytes: Uint8Array, what?: string): Step {
  for (let i = 0; i < bytes.length; i++) yield* write(addr + BigInt(i), 1, BigInt(bytes[i]), what);
}

/** Waits until `until(value)` holds; the CPU blocks meanwhile. Returns the value. */
export function* waitUntil(
  addr: bigint,
  size: Size,
  until: (v: bigint) => boolean,
  what: string,
  waitsFor?: () => WaitInfo,
  also?: { addr: bigint; size: number }[],
): Step<bigint> {
  return (yield { op: 'wait', addr, size, until, what, waitsFor, also }) as bigint;
}

export function* lockOr(addr: bigint, size: Size, value: bigint): Step<bigint> {
  return (yield { op: 'or', addr, size, value }) as bigint;
}

export function* lockAnd(addr: bigint, size: Size, value: bigint): Step<bigint> {
  return (yield { op: 'and', addr, size, value }) as bigint;
}

/** `lock xadd`: returns the old value. */
export function* xadd(addr: bigint, size: Size, value: bigint): Step<bigint> {
  return (yield { op: 'xadd', addr, size, value }) as bigint;
}

export function* cmpxchg(addr: bigint, size: Size, expected: bigint, value: bigint): Step<bigint> {
  return (yield { op: 'cmpxchg', addr, size, expected, value }) as bigint;
}

/**
 * atomic_inc_not_zero(): the kernel's compare-and-exchange loop — read, give up on 0,
 * `lock cmpxchg` v -> v+1, retry if another CPU changed it meanwhile. Returns
 * whether a reference was taken.
 */
export function* atomicIncNotZero(addr: bigint, size: Size): Step<boolean> {
  let v = yield* read(addr, size);
  for (;;) {
    if (v === 0n) return false;
    const old = yield* cmpxchg(addr, size, v, v + 1n);
    if (old === v) return true;
    v = old;
  }
}

/** Calls a guest function with integer arguments; returns RAX. */
export function* call(target: bigint, args: bigint[] = [], what?: string): Step<bigint> {
  return (yield { op: 'call', target, args, what }) as bigint;
}

export function* serialize(how: 'cpuid' | 'sync_core' | 'iret'): Step {
  yield { op: 'serialize', how };
}

/**
 * WRMSR. Before the x2APIC ICR (0x830) Linux 6.1 issues weak_wrmsr_fence() (MFENCE;
 * LFENCE, arch/x86/include/asm/barrier.h, used by the x2APIC IPI senders): x2APIC MSR
 * writes do not serialize, so without it an IPI can arrive before the sender's stores
 * are visible (under memoryModel 'tso', stop_machine then deadlocks; docs/notes/x86-tso.md).
 */
export function* wrmsr(msr: number, value: bigint): Step {
  yield { op: 'wrmsr', msr, value, fence: msr === 0x830 };
}

export function* irqs(enable: boolean): Step {
  yield { op: 'irqs', enable };
}

export function* note(text: string): Step {
  yield { op: 'note', text };
}

export function popcount(v: bigint): number {
  let n = 0;
  for (let x = v; x > 0n; x >>= 1n) if (x & 1n) n++;
  return n;
}
