// ftrace's code patching on x86, the largest runtime user of text_poke_bp_batch:
// ftrace_init() makes every `call __fentry__` a 5-byte NOP at boot; turning a tracer
// on (`echo function > current_tracer`) makes every traced site a `call` to the
// tracer's entry again, and turning it off makes them NOPs, tens of thousands of sites
// at a time, while other CPUs run through them. docs/notes/qemu-ground-truth.md cites
// the kernel source for each rule:
// - ftrace_replace_code() first checks every record's current bytes
//   (ftrace_verify_code(); a mismatch is ftrace_bug() and nothing is written), then
//   queues each site's new instruction with text_poke_queue() and ends with
//   text_poke_finish();
// - text_poke_queue() flushes the vector through text_poke_bp_batch() when it holds
//   TP_VEC_MAX entries (a page of text_poke_loc) or when a site comes before the last
//   one queued (the records are sorted, so that never happens here);
// - the new instruction is `call <tracer>` (ftrace_call_replace) or the kernel's NOP5
//   (ftrace_nop_replace), both of which the int3 handler can emulate.

import { textPokeLocInit } from './text-poke-loc';
import type { HostContext } from '../../emu/host';
import type { KernelContext, PlannedSite } from './kernel-context';
import { textPokeBpBatch } from './text-poke-bp';
import { encodeCall } from './paravirt-patch';
import { X86_NOPS } from './nops';
import { type Step, read, writeBytes } from './hostlib';

/** Length of the `call __fentry__` the compiler emits, and of what replaces it. */
export const MCOUNT_INSN_SIZE = 5;

/** ftrace_nop_replace(): the kernel's 5-byte NOP. */
export function ftraceNopReplace(): Uint8Array {
  return X86_NOPS[5].slice();
}

/** ftrace_call_replace(): `call addr` at `ip`. */
export function ftraceCallReplace(ip: bigint, addr: bigint): Uint8Array {
  return encodeCall(ip, addr);
}

/** ftrace_init() at boot: every record's site becomes the NOP (address -> bytes). */
export function ftraceInitWrites(records: readonly bigint[]): Map<bigint, Uint8Array> {
  return new Map(records.map((ip) => [ip, ftraceNopReplace()]));
}

export interface FtraceBatchStats {
  /** Sites written (every record not already in the requested state). */
  sites: number;
  /** text_poke_bp_batch() calls. */
  batches: number;
}

/**
 * ftrace_replace_code(enable) for `records` (sorted addresses), on the CPU of `ctx`:
 * verify every site's current bytes, then queue them into batches of at most
 * `tpVecMax` and patch each batch with text_poke_bp_batch. Returns false (after
 * logging a BUG, as ftrace_bug() does) when a site holds something unexpected.
 */
export function* ftraceReplaceCode(
  k: KernelContext,
  ctx: HostContext,
  records: readonly bigint[],
  enable: boolean,
  tracer: bigint,
  stats: FtraceBatchStats,
  poke: 'batch' | 'naive' = 'batch',
): Step<boolean> {
  const cpu = ctx.cpu;
  const want = (ip: bigint): Uint8Array => (enable ? ftraceCallReplace(ip, tracer) : ftraceNopReplace());
  const was = (ip: bigint): Uint8Array => (enable ? ftraceNopReplace() : ftraceCallReplace(ip, tracer));
  ctx.status = `ftrace_replace_code(${enable ? 1 : 0}): ftrace_verify_code`;
  for (const ip of records) {
    // copy_from_kernel_nofault() of the site: one 8-byte load, the first five bytes compared.
    const v = (yield* read(ip, 8)) & 0xff_ffff_ffffn;
    const old = was(ip);
    let expect = 0n;
    for (let i = MCOUNT_INSN_SIZE - 1; i >= 0; i--) expect = (expect << 8n) | BigInt(old[i]);
    if (v !== expect) {
      const got = [0, 1, 2, 3, 4].map((i) => Number((v >> BigInt(8 * i)) & 0xffn));
      k.log.add(cpu, 'bug', `ftrace_bug: 0x${ip.toString(16)} holds ${got.map((b) => b.toString(16).padStart(2, '0')).join(' ')}, expected ${Buffer.from(old).toString('hex').replace(/(..)(?!$)/g, '$1 ')}`, ip);
      return false;
    }
  }
  const max = k.L.tpVec.max;
  let queue: PlannedSite[] = [];
  const flush = function* (): Step {
    if (!queue.length) return;
    stats.batches++;
    ctx.status = `ftrace_replace_code(${enable ? 1 : 0}): text_poke_bp_batch #${stats.batches} (${queue.length} sites)`;
    if (poke === 'batch') yield* textPokeBpBatch(k, ctx, queue);
    else {
      // Plain stores into live text: no int3, no sync (the hazard the batch protocol exists for).
      for (const s of queue) {
        yield* writeBytes(s.address, s.new, 'memcpy into live text');
        k.log.add(cpu, 'site-done', `${s.op} at 0x${s.address.toString(16)} (naive)`, s.address);
      }
    }
    queue = [];
  };
  let last = -1n;
  for (const ip of records) {
    // text_poke_queue(): a full vector, or a site out of order, flushes first.
    if (queue.length === max || ip < last) yield* flush();
    const bytes = want(ip);
    queue.push({
      address: ip,
      len: MCOUNT_INSN_SIZE,
      op: enable ? 'ftrace:call' : 'ftrace:nop',
      old: was(ip),
      new: bytes,
      form: enable ? 'call' : 'nop',
      // text_poke_loc_init(): what the int3 handler emulates, from the new bytes.
      emulate: textPokeLocInit(ip, bytes),
    });
    stats.sites++;
    last = ip;
  }
  // text_poke_finish()
  yield* flush();
  return true;
}
