// The RFC's non-emulated text poking ("Runtime paravirt patching", patches 15-19):
// text_poke_late() runs patch_worker() on every CPU under stop_machine. The primary
// patches each site with the int3 sequence, and after every step (poke_sync) waits
// until every CPU has serialized and acknowledged; secondaries follow the state in
// text_poke_sync_finish() / text_poke_sync_site(). In NMI mode (patch 19) the
// primary does the work inside an NMI it sends itself, and a secondary that takes an
// NMI keeps acknowledging there (text_poke_nmi, first on the NMI_LOCAL chain) before
// the other NMI handlers run.
//
// Every access to text_poke_state is its own step (see hostlib.ts), so the
// scheduler can interleave CPUs anywhere the real code could be interleaved.

import type { HostContext, WaitInfo } from '../../emu/host';
import { type KernelContext, type PlannedSite, hexBytes, peek64, kfn, kernelBug } from './kernel-context';
import {
  PATCH_SYNC_0, PATCH_SYNC_1, PATCH_SYNC_2, PATCH_SYNC_DONE, PATCH_DONE, PATCH_SYNC_x, PATCH_STATE_NAMES,
  NMI_DONE, NMI_HANDLED,
} from './kernel-layout';
import { type Step, read, write, writeBytes, waitUntil, lockOr, xadd, serialize, wrmsr, note, popcount, atomicIncNotZero } from './hostlib';
import { stopMachine } from './stop-machine';
import { mutated } from './mutations';
import { registerNmiHandler, unregisterNmiHandler } from './nmi-chain';
import { textPokeMap, textDoPoke, textPokeUnmap } from './text-poke-mm';

const MSR_X2APIC_ICR = 0x830;
const DM_NMI = 4;

/** The kernel functions of this protocol a CPU can be seen entering (KernelCalls). */
export const KERNEL_FUNCTIONS = [
  'patch_worker', 'patch_worker_nmi', 'paravirt_worker', 'text_poke_site', 'poke_sync', '__text_do_poke', 'sync_one',
  'wait_for_acks', 'text_poke_sync_finish', 'text_poke_sync_site', 'poke_int3_native',
] as const;

function stateName(s: bigint): string {
  return PATCH_STATE_NAMES[Number(s)] ?? `state ${s}`;
}

/** CPUs whose ack bit is missing, for the wait-for graph (every word of the map: more than 64 CPUs need several). */
function missingAcks(k: KernelContext): number[] {
  const out: number[] = [];
  const seq = peek64(k, k.L.tps.seq) & 0xffffffffn;
  for (let c = 0; c < k.ncpus; c++) {
    if (countedAcks(k)) {
      if ((peek64(k, ackedSlot(k, c)) & 0xffffffffn) < seq) out.push(c);
      continue;
    }
    const { addr, bit } = k.L.ackWord(c);
    if ((peek64(k, addr) & bit) === 0n) out.push(c);
  }
  return out;
}

/** cpumask_weight(sync_ack_map): the bits of every word of the bitmap (or, counted, the CPUs that acknowledged this step). */
function ackCount(k: KernelContext): number {
  if (countedAcks(k)) return k.ncpus - missingAcks(k).length;
  let n = 0;
  for (let w = 0; w < k.L.ackMapWords(k.ncpus); w++) n += popcount(peek64(k, k.L.tps.ackMap + BigInt(8 * w)));
  return n;
}

function primaryOf(k: KernelContext): number {
  return Number(peek64(k, k.L.tps.primaryCpu) & 0xffffffffn);
}

/** in_nmi(): the NMI bits of this CPU's preempt count (set by the NMI entry). */
function* inNmi(k: KernelContext, cpu: number): Step<boolean> {
  return ((yield* read(k.L.pcpu(cpu, k.L.percpu.preempt), 4)) & k.L.nmiMask) !== 0n;
}

/** sync_one(): CPUID in NMI context (no IRET there), sync_core() otherwise. */
function syncOne(k: KernelContext, cpu: number): Step {
  return kfn(k, cpu, 'sync_one', syncOneBody(k, cpu));
}

function* syncOneBody(k: KernelContext, cpu: number): Step {
  if (yield* inNmi(k, cpu)) yield* serialize('cpuid');
  else yield* serialize('sync_core');
}

/** wait_for_acks(): set this CPU's bit, then spin until num_acks bits are set. */
function waitForAcks(k: KernelContext, cpu: number, why: string): Step {
  return kfn(k, cpu, 'wait_for_acks', waitForAcksBody(k, cpu, why));
}

function* waitForAcksBody(k: KernelContext, cpu: number, why: string): Step {
  if (countedAcks(k)) {
    yield* waitForCountedAcks(k, cpu, why);
    return;
  }
  const { addr, bit } = k.L.ackWord(cpu);
  yield* lockOr(addr, 8, bit);
  const need = Number(yield* read(k.L.tps.numAcks, 4));
  // The whole bitmap counts (one 64-bit word per 64 CPUs); a store to any word re-checks.
  const words = Array.from({ length: k.L.ackMapWords(k.ncpus) }, (_, w) => ({ addr: k.L.tps.ackMap + BigInt(8 * w), size: 8 }));
  yield* waitUntil(
    k.L.tps.ackMap,
    8,
    () => ackCount(k) >= need,
    `acks for ${why} (sync_ack_map has fewer than ${need} bits)`,
    () => ({ cpus: missingAcks(k), text: `waiting for every CPU to acknowledge ${why}` }),
    words.slice(1),
  );
}

/** The corrected variant's wait: num_acks CPUs have acknowledged the current step. */
function* waitForCountedAcks(k: KernelContext, cpu: number, why: string): Step {
  const seq = yield* read(k.L.tps.seq, 4);
  yield* write(ackedSlot(k, cpu), 4, seq, `acked[${cpu}] = step ${seq}`);
  const need = Number(yield* read(k.L.tps.numAcks, 4));
  const slots = Array.from({ length: k.ncpus }, (_, c) => ({ addr: ackedSlot(k, c), size: 4 }));
  yield* waitUntil(
    slots[0].addr,
    4,
    () => ackCount(k) >= need,
    `acks for ${why} (fewer than ${need} CPUs acknowledged step ${seq})`,
    () => ({ cpus: missingAcks(k), text: `waiting for every CPU to acknowledge ${why}` }),
    slots.slice(1),
  );
}

/**
 * poke_sync(): write the bytes (if any), publish the new state, clear the acks,
 * serialize locally, then acknowledge and wait for everyone. The 'fixed' variant
 * clears the acks before publishing the state.
 */
function pokeSync(k: KernelContext, cpu: number, state: number, addr: bigint, bytes: Uint8Array): Step {
  return kfn(k, cpu, 'poke_sync', pokeSyncBody(k, cpu, state, addr, bytes));
}

function* pokeSyncBody(k: KernelContext, cpu: number, state: number, addr: bigint, bytes: Uint8Array): Step {
  if (bytes.length) yield* textDoPoke(k, cpu, addr, bytes, `${PATCH_STATE_NAMES[state]} bytes`);
  // Counted acknowledgements need no clearing: an ack names the step it is for.
  const clearFirst = k.variant === 'fixed' && !mutated(k, 'publish-before-clear');
  if (clearFirst && !countedAcks(k)) yield* clearAcks(k);
  yield* publishState(k, state);
  if (!clearFirst) yield* clearAcks(k);
  yield* syncOne(k, cpu);
  yield* waitForAcks(k, cpu, PATCH_STATE_NAMES[state]);
}

/** The primary's `text_poke_state.state = s`; the corrected variant also counts the step. */
function* publishState(k: KernelContext, state: number): Step {
  yield* write(k.L.tps.state, 4, BigInt(state), `state = ${PATCH_STATE_NAMES[state]}`);
  if (countedWaits(k)) yield* xadd(k.L.tps.seq, 4, 1n);
}

function* clearAcks(k: KernelContext): Step {
  for (let w = 0; w < k.L.ackMapWords(k.ncpus); w++) yield* write(k.L.tps.ackMap + BigInt(8 * w), 8, 0n, 'cpumask_clear(sync_ack_map)');
}

/** text_poke_site(): the four poke_sync steps for one site, bracketed by bp_desc. */
function textPokeSite(k: KernelContext, cpu: number, site: PlannedSite): Step {
  return kfn(k, cpu, 'text_poke_site', textPokeSiteBody(k, cpu, site));
}

function* textPokeSiteBody(k: KernelContext, cpu: number, site: PlannedSite): Step {
  const bd = k.L.bpDesc;
  // __text_poke_map(): the site's page(s) at poking_addr in poking_mm, which this CPU
  // keeps loaded for the whole site (text-poke-mm.ts); every write below goes there.
  const map = yield* textPokeMap(k, cpu, site.address, site.len);
  // Fill a fresh descriptor (refs = 1), then publish the pointer to it
  // (smp_store_release(&bp_desc, &desc)): the int3 handler looks at the pointer.
  yield* write(bd.len, 1, BigInt(site.len));
  yield* writeBytes(bd.opcode, site.new);
  yield* write(bd.refs, 4, 1n);
  yield* write(bd.addr, 8, site.address, 'desc.vec = tp');
  yield* write(k.L.bpDescPtr, 8, bd.base, 'bp_desc = &desc');
  yield* pokeSync(k, cpu, PATCH_SYNC_0, site.address, Uint8Array.of(0xcc));
  yield* pokeSync(k, cpu, PATCH_SYNC_1, site.address + 1n, site.new.subarray(1));
  yield* pokeSync(k, cpu, PATCH_SYNC_2, site.address, site.new.subarray(0, 1));
  yield* pokeSync(k, cpu, PATCH_SYNC_DONE, site.address, new Uint8Array(0));
  yield* write(k.L.bpDescPtr, 8, 0n, 'bp_desc = NULL');
  // Drop the published reference and wait for int3 handlers still using it.
  yield* xadd(bd.refs, 4, -1n & 0xffffffffn);
  yield* waitUntil(bd.refs, 4, (v) => v === 0n, 'int3 handlers to drop bp_desc');
  // The stack frame goes: nothing describes a site any more (reports read this).
  yield* write(bd.addr, 8, 0n, 'desc out of scope');
  // __text_poke_unmap(): unmap, switch back, flush, and BUG_ON(memcmp) through the text mapping.
  yield* textPokeUnmap(k, cpu, map, site.new, 'arch/x86/kernel/alternative.c:__text_poke_unmap');
  k.log.add(cpu, 'site-done', `${site.op} at 0x${site.address.toString(16)}: ${hexBytes(site.old)} -> ${hexBytes(site.new)}`, site.address);
}

/** The worker: every planned site in turn (paravirt_worker). */
function worker(k: KernelContext, cpu: number): Step {
  return kfn(k, cpu, 'paravirt_worker', workerBody(k, cpu));
}

function* workerBody(k: KernelContext, cpu: number): Step {
  for (const site of k.plan) yield* textPokeSite(k, cpu, site);
}

/** text_poke_sync_site(): follow one site's states, serializing and acking each; returns the last step seen. */
export function textPokeSyncSite(k: KernelContext, cpu: number): Step<Seen> {
  return kfn(k, cpu, 'text_poke_sync_site', textPokeSyncSiteBody(k, cpu));
}

/**
 * The corrected variant tells steps apart by text_poke_state.seq, which the primary
 * increments with every state it publishes; the series compares the state's value. A
 * value-only wait is open to ABA: while this CPU's thread waits for PATCH_SYNC_0 to
 * change, an NMI on it can follow the rest of the site from #BP, and the primary can
 * finish the site and publish the next site's PATCH_SYNC_0 — the same value, so the
 * thread never sees the step and never acknowledges it (found by `textpoke explore`
 * on the corrected variant at 1 NMI + 1 preemption; the mutation `wait-on-state`
 * brings the value-only wait back).
 */
function countedWaits(k: KernelContext): boolean {
  return k.variant === 'fixed' && !mutated(k, 'wait-on-state') && !mutated(k, 'publish-before-clear');
}

/** The corrected variant's acknowledgements name their step (ackStep); mutations that undo part of the correction fall back to the bitmap. */
function countedAcks(k: KernelContext): boolean {
  return countedWaits(k) && !mutated(k, 'bitmap-acks');
}

function ackedSlot(k: KernelContext, cpu: number): bigint {
  return k.L.tps.acked + BigInt(4 * cpu);
}

/**
 * Acknowledge the step `seen` for this CPU, serializing first when `sync`. The series
 * sets the CPU's bit in sync_ack_map (`check`: unless already set). The corrected
 * variant writes the step's number into the CPU's acked slot, once: an NMI on this CPU
 * that followed the site from #BP may have acknowledged it already, and a bit set late
 * for an old step would count for the next one after the map was cleared (found by the
 * explorer at 2 preemptions with CPU1's NMI scripted at PATCH_SYNC_1: the thread
 * acknowledged PATCH_SYNC_DONE a second time after the primary had cleared the map for
 * the next site, which then went on without this CPU serializing; mutation
 * `bitmap-acks`).
 */
function* ackStep(k: KernelContext, cpu: number, seen: Seen, sync: boolean, check: boolean): Step {
  if (countedAcks(k)) {
    const slot = ackedSlot(k, cpu);
    if ((yield* read(slot, 4)) >= seen.seq) return;
    if (sync) yield* syncOne(k, cpu);
    yield* write(slot, 4, seen.seq, `acked[${cpu}] = step ${seen.seq}`);
    return;
  }
  const { addr, bit } = k.L.ackWord(cpu);
  if (check && ((yield* read(addr, 8)) & bit) !== 0n) return;
  if (sync) yield* syncOne(k, cpu);
  yield* lockOr(addr, 8, bit);
}

interface Seen {
  state: bigint;
  /** text_poke_state.seq when `state` was read (-1: not read yet, or not counted). */
  seq: bigint;
}

/**
 * Wait for the primary's next step after `prev` and return it: a change of the state's
 * value (the series), or of the step count (the corrected variant). The first call
 * (prev.state < 0) takes the current state without waiting.
 */
function* nextStep(k: KernelContext, prev: Seen, where: string): Step<Seen> {
  const primary = primaryOf(k);
  const what = `text_poke_state.state to leave ${prev.state < 0n ? 'its value' : stateName(prev.state)}`;
  const info = (): WaitInfo => ({ cpus: [primary], text: `waiting in ${where} for the primary (CPU ${primary}) to move text_poke_state on` });
  if (!countedWaits(k)) return { state: yield* waitUntil(k.L.tps.state, 4, (v) => v !== prev.state, what, info), seq: -1n };
  // Count first, then the state: the primary publishes the state first, so the state
  // read is at least as new as the count (x86 keeps stores in order, and loads too).
  const seq = prev.state < 0n ? yield* read(k.L.tps.seq, 4) : yield* waitUntil(k.L.tps.seq, 4, (v) => v !== prev.seq, `${what} (step ${prev.seq})`, info);
  return { state: yield* read(k.L.tps.state, 4), seq };
}

function* textPokeSyncSiteBody(k: KernelContext, cpu: number): Step<Seen> {
  let seen: Seen = { state: -1n, seq: -1n };
  do {
    seen = yield* nextStep(k, seen, 'text_poke_sync_site');
    if (seen.state < BigInt(PATCH_SYNC_DONE)) yield* ackStep(k, cpu, seen, !mutated(k, 'ack-without-serialize'), true);
  } while (seen.state < BigInt(PATCH_SYNC_DONE));
  return seen;
}

/** text_poke_sync_finish(): a secondary's loop until PATCH_DONE. */
export function textPokeSyncFinish(k: KernelContext, cpu: number): Step {
  return kfn(k, cpu, 'text_poke_sync_finish', textPokeSyncFinishBody(k, cpu));
}

function* textPokeSyncFinishBody(k: KernelContext, cpu: number): Step {
  for (;;) {
    const seen = yield* nextStep(k, { state: -1n, seq: -1n }, 'text_poke_sync_finish');
    const s = Number(seen.state);
    if (s === PATCH_DONE) return;
    if (s === PATCH_SYNC_DONE) {
      yield* ackStep(k, cpu, seen, false, false);
      // If an NMI on this CPU follows a whole site (int3, text_poke_sync_site) while
      // this waits, the state is back at PATCH_SYNC_DONE when it returns: in the
      // series, for a step nobody on this CPU acknowledges (see pokeInt3Native).
      yield* nextStep(k, seen, 'text_poke_sync_finish');
      continue;
    }
    // Outside NMI the series only expects PATCH_SYNC_0 here; in the corrected variant an
    // NMI on this CPU may have acknowledged a site's first steps for it (#BP path).
    const nmi = yield* inNmi(k, cpu);
    if (((nmi || countedAcks(k)) && (s & PATCH_SYNC_x) !== 0) || s === PATCH_SYNC_0) {
      yield* textPokeSyncSite(k, cpu);
      continue;
    }
    yield* kernelBug(k, cpu, 'arch/x86/kernel/alternative.c:text_poke_sync_finish', `unexpected state ${stateName(BigInt(s))} outside NMI`);
  }
}

/** patch_worker() under stop_machine. */
function patchWorker(k: KernelContext, cpu: number, nmi: boolean): Step {
  return kfn(k, cpu, 'patch_worker', patchWorkerBody(k, cpu, nmi));
}

function* patchWorkerBody(k: KernelContext, cpu: number, nmi: boolean): Step {
  const primary = primaryOf(k);
  if (cpu !== primary) {
    yield* textPokeSyncFinish(k, cpu);
    return;
  }
  yield* waitForAcks(k, cpu, 'the rendezvous');
  if (nmi) yield* patchWorkerNmi(k, cpu);
  else yield* worker(k, cpu);
  yield* publishState(k, PATCH_DONE);
}

/** patch_worker_nmi(): hand the work to an NMI sent to this CPU by its APIC ID. */
function patchWorkerNmi(k: KernelContext, cpu: number): Step {
  return kfn(k, cpu, 'patch_worker_nmi', patchWorkerNmiBody(k, cpu));
}

function* patchWorkerNmiBody(k: KernelContext, cpu: number): Step {
  yield* write(k.L.tps.nmiWork, 4, 1n, 'nmi_work = 1');
  const apicId = BigInt(k.m.cpu(cpu).apic.id);
  yield* wrmsr(MSR_X2APIC_ICR, (apicId << 32n) | BigInt(DM_NMI << 8));
  if (mutated(k, 'no-wait-nmi-work')) return;
  yield* waitUntil(k.L.tps.nmiWork, 4, (v) => v === 0n, 'nmi_work to drop to 0 (the worker runs in this CPU\'s NMI)', () => ({
    cpus: [cpu],
    text: 'waiting for its own NMI to run the patch worker',
  }));
}

/** text_poke_nmi(): first on the NMI_LOCAL chain while NMI-mode patching runs. */
export function* textPokeNmi(k: KernelContext, ctx: HostContext): Step<bigint> {
  const cpu = ctx.cpu;
  if ((yield* read(k.L.tps.nmiWork, 4)) === 0n) return NMI_DONE;
  const primary = Number(yield* read(k.L.tps.primaryCpu, 4));
  if (cpu === primary) {
    ctx.status = 'running the patch worker in NMI context';
    yield* worker(k, cpu);
    yield* xadd(k.L.tps.nmiWork, 4, -1n & 0xffffffffn);
    return NMI_HANDLED;
  }
  ctx.status = 'following the patch in NMI context';
  yield* textPokeSyncFinish(k, cpu);
  return NMI_DONE;
}

/** The #BP side: an int3 at the site under patch (poke_int3_native). Returns 1 if it was ours. */
export function pokeInt3Native(k: KernelContext, cpu: number, ip: bigint): Step<boolean> {
  return kfn(k, cpu, 'poke_int3_native', pokeInt3NativeBody(k, cpu, ip));
}

function* pokeInt3NativeBody(k: KernelContext, cpu: number, ip: bigint): Step<boolean> {
  // try_get_desc(&bp_desc): the published pointer, and a reference only while its
  // count is not zero; then is the int3 at this descriptor's site?
  const desc = yield* read(k.L.bpDescPtr, 8);
  if (desc === 0n) return false;
  const refs = desc + (k.L.bpDesc.refs - k.L.bpDesc.base);
  if (!(yield* atomicIncNotZero(refs, 4))) return false;
  const site = yield* read(desc + (k.L.bpDesc.addr - k.L.bpDesc.base), 8);
  if (site !== ip) {
    yield* xadd(refs, 4, -1n & 0xffffffffn); // put_desc()
    return false;
  }
  const bd = k.L.bpDesc;
  const primary = Number(yield* read(k.L.tps.primaryCpu, 4));
  if (cpu === primary) {
    // The primary hit its own int3 (from an NMI): finish the site here and
    // serialize locally; the state machine writes the same bytes again later.
    const len = Number(yield* read(bd.len, 1));
    const bytes = new Uint8Array(len);
    for (let i = 0; i < len; i++) bytes[i] = Number(yield* read(bd.opcode + BigInt(i), 1));
    // Through the poking alias, still mapped: the primary is inside text_poke_site.
    yield* textDoPoke(k, cpu, site + 1n, bytes.subarray(1), 'primary finishes its own site: tail');
    yield* textDoPoke(k, cpu, site, bytes.subarray(0, 1), 'primary finishes its own site: first byte');
    yield* syncOne(k, cpu);
  } else {
    const done = yield* textPokeSyncSite(k, cpu);
    // The series returns here without acknowledging the site's PATCH_SYNC_DONE,
    // leaving it to this CPU's text_poke_sync_finish loop — which, if it was waiting
    // for the state to leave PATCH_SYNC_DONE when this #BP came (from an NMI), never
    // sees the step and never acknowledges it. The corrected variant acknowledges here.
    if (k.variant === 'fixed') yield* ackStep(k, cpu, done, false, false);
  }
  yield* xadd(refs, 4, -1n & 0xffffffffn); // put_desc()
  return true;
}

export interface LateOptions {
  nmi: boolean;
}

/**
 * text_poke_late(): set up text_poke_state, register text_poke_nmi (NMI mode), run
 * patch_worker on every CPU under stop_machine, unregister.
 */
export function* textPokeLate(k: KernelContext, ctx: HostContext, opts: LateOptions): Step {
  const cpu = ctx.cpu;
  const t = k.L.tps;
  k.log.add(cpu, 'patch-start', `text_poke_late: ${k.plan.length} sites, nmi=${opts.nmi}, ${k.variant} ordering`);
  yield* write(t.numAcks, 4, BigInt(k.ncpus - (mutated(k, 'num-acks-short') ? 1 : 0)), 'num_acks');
  // Counted: the rendezvous is a step of its own, so that no acknowledgement from an
  // earlier run counts for it.
  yield* publishState(k, PATCH_SYNC_DONE);
  yield* write(t.primaryCpu, 4, BigInt(cpu), 'primary_cpu');
  yield* write(t.nmiContext, 4, opts.nmi ? 1n : 0n, 'nmi_context');
  // The series never clears sync_ack_map here: a second run starts with the previous
  // run's acks still set. The corrected variant starts from an empty map (counted acks
  // need none: the rendezvous is a new step).
  if (k.variant === 'fixed' && !countedAcks(k)) yield* clearAcks(k);
  if (opts.nmi) yield* registerNmiHandler(k, k.L.textPokeNmiAction, !mutated(k, 'nmi-handler-last'));
  ctx.status = 'stop_machine(patch_worker)';
  yield* stopMachine(k, cpu, function* (c: number): Step {
    yield* patchWorker(k, c, opts.nmi);
  });
  if (opts.nmi) yield* unregisterNmiHandler(k, k.L.textPokeNmiAction);
  yield* note('text_poke_late done');
  k.log.add(cpu, 'patch-done', 'text_poke_late finished');
}
