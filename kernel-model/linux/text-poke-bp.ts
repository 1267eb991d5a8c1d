// Mainline text_poke_bp_batch(): patch a vector of sites with three int3 phases,
// each followed by text_poke_sync() (an IPI that makes every other CPU run
// sync_core). A CPU that hits one of the int3s meanwhile has the NEW instruction
// emulated by poke_int3_handler(): call, ret, jmp rel32/rel8, Jcc rel8/rel32, NOPs
// (text-poke-loc.ts decides which bytes qualify). So it can only write
// instructions it can emulate, which is why the RFC needed a different protocol for
// inline native code.
//
// text_poke_loc entries live in guest memory (tp_vec) with the refcount bp_refs.

import type { HostContext } from '../../emu/host';
import { type KernelContext, type PlannedSite, hexBytes, kernelBug } from './kernel-context';
import { textPoke } from './text-poke-mm';
import { INT3, RET, CALL32, JMP32, JMP8, JCC8_BASE, emulateCc } from './text-poke-loc';
import { PT_REGS } from './kernel-layout';
import { type Step, read, write, waitUntil, xadd, wrmsr, serialize, atomicIncNotZero } from './hostlib';

const MSR_X2APIC_ICR = 0x830;
const SH_ALL_BUT_SELF = 3;
/** csd_func value: run do_sync_core. */
export const CSD_SYNC_CORE = 1n;


/** text_poke_sync(): on_each_cpu(do_sync_core, wait=1). */
export function* textPokeSync(k: KernelContext, cpu: number): Step {
  yield* write(k.L.csd.func, 8, CSD_SYNC_CORE);
  yield* write(k.L.csd.pending, 8, BigInt(k.ncpus - 1), 'csd_pending = other CPUs');
  if (k.ncpus > 1) yield* wrmsr(MSR_X2APIC_ICR, BigInt((SH_ALL_BUT_SELF << 18) | k.L.vectors.callFunction));
  yield* serialize('sync_core');
  yield* waitUntil(k.L.csd.pending, 8, (v) => v === 0n, 'every CPU to run do_sync_core (text_poke_sync IPI)', () => ({
    cpus: k.m.cpus.map((c) => c.id).filter((c) => c !== cpu),
    text: 'waiting in text_poke_sync for the other CPUs to take the IPI (they need interrupts on)',
  }));
}

/** The call-function IPI handler: do_sync_core on this CPU, then count it done. */
export function* genericSmpCallFunctionInterrupt(k: KernelContext): Step {
  const f = yield* read(k.L.csd.func, 8);
  if (f === CSD_SYNC_CORE) yield* serialize('sync_core');
  yield* xadd(k.L.csd.pending, 8, -1n & 0xffffffffffffffffn);
}

function entryAddr(k: KernelContext, i: number, field: number): bigint {
  return k.L.tpVec.base + BigInt(i * k.L.tpVec.entrySize + field);
}

/** text_poke_bp_batch() over `sites` (each must carry its emulation). */
export function* textPokeBpBatch(k: KernelContext, ctx: HostContext, sites: PlannedSite[]): Step {
  const cpu = ctx.cpu;
  const v = k.L.tpVec;
  if (sites.length > v.max) throw new Error(`text_poke_bp_batch: ${sites.length} sites, at most ${v.max}`);
  k.log.add(cpu, 'patch-start', `text_poke_bp_batch: ${sites.length} sites`);
  ctx.status = 'text_poke_bp_batch: publishing bp_desc';
  for (let i = 0; i < sites.length; i++) {
    const s = sites[i];
    const e = s.emulate!;
    yield* write(entryAddr(k, i, v.addr), 8, s.address);
    yield* write(entryAddr(k, i, v.len), 1, BigInt(e.len));
    yield* write(entryAddr(k, i, v.opcode), 1, BigInt(e.opcode));
    yield* write(entryAddr(k, i, v.target), 8, e.target);
  }
  yield* write(v.nr, 4, BigInt(sites.length));
  yield* write(v.refs, 4, 1n, 'bp_desc.refs = 1 (published)');
  ctx.status = 'text_poke_bp_batch: phase 1 (int3)';
  // Each write is a text_poke(): through poking_mm, checked with BUG_ON(memcmp) (text-poke-mm.ts).
  for (const s of sites) yield* textPoke(k, cpu, s.address, Uint8Array.of(0xcc), 'int3');
  yield* textPokeSync(k, cpu);
  ctx.status = 'text_poke_bp_batch: phase 2 (tails)';
  let wrote = false;
  for (const s of sites) {
    const n = s.emulate!.len;
    if (n > 1) {
      yield* textPoke(k, cpu, s.address + 1n, s.new.subarray(1, n), 'tail');
      wrote = true;
    }
  }
  if (wrote) yield* textPokeSync(k, cpu);
  ctx.status = 'text_poke_bp_batch: phase 3 (first bytes)';
  for (const s of sites) yield* textPoke(k, cpu, s.address, s.new.subarray(0, 1), 'first byte');
  yield* textPokeSync(k, cpu);
  // Drop our reference and wait for int3 handlers still looking at the vector.
  yield* xadd(v.refs, 4, -1n & 0xffffffffn);
  yield* waitUntil(v.refs, 4, (x) => x === 0n, 'int3 handlers to drop bp_desc');
  yield* write(v.nr, 4, 0n);
  for (const s of sites) k.log.add(cpu, 'site-done', `${s.op} at 0x${s.address.toString(16)}: ${hexBytes(s.old)} -> ${hexBytes(s.new)}`, s.address);
  k.log.add(cpu, 'patch-done', 'text_poke_bp_batch finished');
}

/**
 * poke_int3_handler()'s emulation for the batch protocol: if the int3 at `ip` is in
 * the published vector, make the interrupted context behave as if the new
 * instruction had run (edit pt_regs), and return true.
 */
export function* pokeInt3Emulate(k: KernelContext, regs: bigint, ip: bigint): Step<boolean> {
  const v = k.L.tpVec;
  // try_get_desc(): 6.1's one static bp_desc, referenced while its count is not zero.
  if (!(yield* atomicIncNotZero(v.refs, 4))) return false;
  const nr = Number(yield* read(v.nr, 4));
  let hit = -1;
  for (let i = 0; i < nr && hit < 0; i++) if ((yield* read(entryAddr(k, i, v.addr), 8)) === ip) hit = i;
  if (hit < 0) {
    yield* xadd(v.refs, 4, -1n & 0xffffffffn);
    return false;
  }
  const len = yield* read(entryAddr(k, hit, v.len), 1);
  const opcode = Number(yield* read(entryAddr(k, hit, v.opcode), 1));
  const target = yield* read(entryAddr(k, hit, v.target), 8);
  const next = ip + len;
  const rip = regs + BigInt(PT_REGS.rip);
  const rsp = regs + BigInt(PT_REGS.rsp);
  if (opcode === INT3) {
    // Someone else's breakpoint: not consumed here.
    yield* xadd(v.refs, 4, -1n & 0xffffffffn);
    return false;
  }
  if (opcode === CALL32) {
    // int3_emulate_call: push the return address onto the interrupted stack (the
    // int3 entry left a gap for it), then jump.
    const sp = (yield* read(rsp, 8)) - 8n;
    yield* write(sp, 8, next, 'int3_emulate_call: push return address');
    yield* write(rsp, 8, sp);
    yield* write(rip, 8, target, 'int3_emulate_call');
  } else if (opcode === RET) {
    // int3_emulate_ret: pop the return address off the interrupted stack.
    const sp = yield* read(rsp, 8);
    const ret = yield* read(sp, 8);
    yield* write(rsp, 8, sp + 8n);
    yield* write(rip, 8, ret, 'int3_emulate_ret');
  } else if (opcode === JMP32 || opcode === JMP8) {
    yield* write(rip, 8, target, 'int3_emulate_jmp');
  } else if (opcode >= JCC8_BASE && opcode <= JCC8_BASE + 0xf) {
    // int3_emulate_jcc: the condition on the interrupted context's RFLAGS.
    const flags = yield* read(regs + BigInt(PT_REGS.flags), 8);
    yield* write(rip, 8, emulateCc(flags, opcode & 0xf) ? target : next, 'int3_emulate_jcc');
  } else {
    yield* kernelBug(k, -1, 'arch/x86/kernel/alternative.c:poke_int3_handler', `cannot emulate opcode 0x${opcode.toString(16)} at 0x${ip.toString(16)}`);
  }
  yield* xadd(v.refs, 4, -1n & 0xffffffffn);
  return true;
}
