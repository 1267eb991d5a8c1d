// The kernel model on a machine: binds the host routines to the image's stubs
// (poke_int3_handler, text_poke_nmi, multi_cpu_stop, the call-function IPI handler,
// the patch request), plans a runtime patch of pv ops, and keeps what reports need
// (the log, lock ownership, the plan).

import { type MutationName, mutated } from './mutations';
import type { Machine } from '../../emu/machine';
import type { HostContext, HostGen } from '../../emu/host';
import type { KernelImage } from '../image/kernel-image';
import { requireSymbol } from '../image/kernel-image';
import { KernelLayout, PT_REGS } from './kernel-layout';
import { type KernelContext, type PlannedSite, type ProtocolVariant, KernelLog, KernelCalls } from './kernel-context';
import { PvOps, type OpMode } from './pv-ops';
import { generatePatch, encodeCall } from './paravirt-patch';
import { compareSite } from './verify-site';
import { X86_NOPS } from './nops';
import { LockTracker } from './lock-tracker';
import { textPokeLate, textPokeNmi, pokeInt3Native } from './text-poke-late';
import { textPokeBpBatch, pokeInt3Emulate, genericSmpCallFunctionInterrupt } from './text-poke-bp';
import { multiCpuStop } from './stop-machine';
import { type Step, read, write, writeBytes } from './hostlib';
import { disasmInline } from '../image/disasm';
import { textPokeLocInit, encodePokeInsn, TextPokeLocError } from './text-poke-loc';
import { type PokingMm, textPoke } from './text-poke-mm';
import { SharedCell, MODEL_WORDS, protocolShared, type GuestRange } from './shared-state';
import { SM_QUEUED } from './stop-machine';

/** Whether bytes start with a 5-byte `call rel32` or the 5-byte NOP (what text_poke_bp emulates). */
function firstInsnIsCallOrNop5(b: Uint8Array): boolean {
  if (b[0] === 0xe8) return true;
  return b[0] === 0x0f && b[1] === 0x1f && b[2] === 0x44 && b[3] === 0x00 && b[4] === 0x00;
}

/**
 * Writes each site's new bytes with plain stores, no int3 and no sync: the hazard.
 * With page tables the text is read-only, so the stores go through one text_poke()
 * per site (poking_mm), still byte by byte while other CPUs run.
 */
function* naivePoke(k: KernelModel, cpu: number, plan: PlannedSite[]): Step {
  k.log.add(cpu, 'patch-start', `naive poke: ${plan.length} sites, plain stores`);
  for (const s of plan) {
    if (k.poking) yield* textPoke(k, cpu, s.address, s.new, 'memcpy into live text');
    else yield* writeBytes(s.address, s.new, 'memcpy into live text');
    k.log.add(cpu, 'site-done', `${s.op} at 0x${s.address.toString(16)} (naive)`, s.address);
  }
  k.log.add(cpu, 'patch-done', 'naive poke finished');
}

/**
 * batch: mainline text_poke_bp_batch. stop-machine: the RFC's text_poke_late.
 * naive: plain stores of the new bytes while other CPUs run (what not to do; the XMC
 * checker reports it).
 */
export type Protocol = 'batch' | 'stop-machine' | 'naive';

export interface OpChange {
  op: string;
  mode: OpMode;
}

export interface PatchRequest {
  ops: OpChange[];
  protocol: Protocol;
  /** NMI-safe mode of the stop_machine protocol (the RFC's patch 19). */
  nmi: boolean;
  /** Ops for a second text_poke_late right after the first (stop-machine only). */
  again?: OpChange[] | null;
  /** Single instructions to text_poke_bp (batch only): at symbol[+offset], e.g. "jne8 label". */
  pokes?: PokeRequest[];
}

export interface PokeRequest {
  at: string;
  insn: string;
  /** Bytes to poke: the instruction padded with INT3 (RET and JMP only, as 6.1 allows). */
  len?: number;
}

export class PatchRequestError extends Error {}

export interface KernelModelOptions {
  variant?: ProtocolVariant;
  /** A seeded protocol bug (mutations.ts). */
  mutate?: MutationName | null;
  /** Locks to track for reports: name -> symbol (default: shared_lock, nmi_lock, nmi_reason_lock when present). */
  locks?: Record<string, string>;
  /** poking_mm, when the machine booted with page tables (kernel-model/scenario/fixture-mm.ts); absent: flat. */
  poking?: PokingMm | null;
}

interface KernelModelState {
  plan: PlannedSite[];
  stopFn: KernelModel['stopFn'];
  request: PatchRequest | null;
  patchDone: boolean;
  active: Protocol | null;
}

export class KernelModel implements KernelContext {
  readonly L: KernelLayout;
  readonly ncpus: number;
  readonly variant: ProtocolVariant;
  readonly mutation: MutationName | null;
  readonly log: KernelLog;
  readonly calls: KernelCalls;
  readonly pv: PvOps;
  readonly locks: LockTracker;
  readonly poking: PokingMm | null;
  // Read and written by host routines on several CPUs (the primary sets them, every
  // CPU's stopper or int3 handler reads them): each access is a pseudo-word of the
  // explorer's step footprint (shared-state.ts).
  private readonly planCell: SharedCell<PlannedSite[]>;
  private readonly stopFnCell: SharedCell<((cpu: number) => Step) | null>;
  private readonly requestCell: SharedCell<PatchRequest | null>;
  private readonly patchDoneCell: SharedCell<boolean>;
  private readonly activeCell: SharedCell<Protocol | null>;

  get plan(): PlannedSite[] {
    return this.planCell.get();
  }
  set plan(v: PlannedSite[]) {
    this.planCell.set(v);
  }
  get stopFn(): ((cpu: number) => Step) | null {
    return this.stopFnCell.get();
  }
  set stopFn(v: ((cpu: number) => Step) | null) {
    this.stopFnCell.set(v);
  }
  get request(): PatchRequest | null {
    return this.requestCell.get();
  }
  set request(v: PatchRequest | null) {
    this.requestCell.set(v);
  }
  /** Set when the patch request has run to the end. */
  get patchDone(): boolean {
    return this.patchDoneCell.get();
  }
  set patchDone(v: boolean) {
    this.patchDoneCell.set(v);
  }
  /** The protocol in progress ('batch' decides how the int3 handler reads an int3). */
  private get active(): Protocol | null {
    return this.activeCell.get();
  }
  private set active(v: Protocol | null) {
    this.activeCell.set(v);
  }

  constructor(
    readonly m: Machine,
    readonly img: KernelImage,
    opts: KernelModelOptions = {},
  ) {
    this.planCell = new SharedCell(m.mem, MODEL_WORDS.plan, []);
    this.stopFnCell = new SharedCell<((cpu: number) => Step) | null>(m.mem, MODEL_WORDS.stopFn, null);
    this.requestCell = new SharedCell<PatchRequest | null>(m.mem, MODEL_WORDS.request, null);
    this.patchDoneCell = new SharedCell(m.mem, MODEL_WORDS.patchDone, false);
    this.activeCell = new SharedCell<Protocol | null>(m.mem, MODEL_WORDS.active, null);
    this.L = new KernelLayout(img);
    this.ncpus = m.cpus.length;
    if (this.ncpus > this.L.maxCpus) throw new Error(`${img.path} supports at most ${this.L.maxCpus} CPUs`);
    this.variant = opts.variant ?? 'rfc';
    this.mutation = opts.mutate ?? null;
    this.poking = opts.poking ?? null;
    this.log = new KernelLog(m);
    this.calls = new KernelCalls(this.ncpus, m.mem);
    this.pv = new PvOps(img);
    this.locks = new LockTracker(m);
    const locks = opts.locks ?? { shared_lock: 'shared_lock', nmi_lock: 'nmi_lock', nmi_reason_lock: 'nmi_reason_lock' };
    for (const [name, sym] of Object.entries(locks)) {
      const a = img.symbols.resolve(sym);
      if (a !== undefined) this.locks.track(name, a);
    }
    this.bind();
    // The plan, the stop_machine function and the protocol in progress are read by the
    // host routines' bodies: they join snapshots, and each routine's start (emu/host.ts).
    // Saved and loaded without noting an access: a routine's start saves them for its
    // replay, not because its body reads them.
    m.addStatePart('kernel-model', {
      saveState: (): KernelModelState => ({
        plan: this.planCell.raw(), stopFn: this.stopFnCell.raw(), request: this.requestCell.raw(), patchDone: this.patchDoneCell.raw(), active: this.activeCell.raw(),
      }),
      loadState: (st: KernelModelState) => {
        this.planCell.load(st.plan);
        this.stopFnCell.load(st.stopFn);
        this.requestCell.load(st.request);
        this.patchDoneCell.load(st.patchDone);
        this.activeCell.load(st.active);
      },
    }, { readByHostRoutines: true });
    // Which kernel functions each CPU is in joins snapshots. A restore loads the
    // host-read parts before replaying each routine (so 'kernel-calls-replay' marks the
    // replay) and every part once at the end, 'kernel-calls' last: the replay is over.
    m.addStatePart('kernel-calls-replay', {
      saveState: (): null => null,
      loadState: () => {
        this.calls.replaying = true;
      },
    }, { readByHostRoutines: true });
    m.addStatePart('kernel-calls', {
      saveState: (): string[][] => this.calls.saveStacks(),
      loadState: (st: string[][]) => {
        this.calls.loadStacks(st);
        this.calls.replaying = false;
      },
    });
    // The log is only appended to: its length is its state.
    m.addStatePart('kernel-log', {
      saveState: (): number => this.log.events.length,
      loadState: (n: number) => {
        this.log.events.length = n;
      },
    });
  }

  private bind(): void {
    const at = (name: string): bigint => requireSymbol(this.img, name);
    // The protocol's guest-memory state, shared by design (shared-state.ts: protocolShared).
    const L = this.L;
    const r = (start: bigint, len: number | bigint): GuestRange => ({ start, end: start + BigInt(len) });
    const ranges = [
      r(L.tps.base, L.tps.acked - L.tps.base + BigInt(4 * this.ncpus)),
      r(L.bpDesc.base, L.bpDesc.opcode - L.bpDesc.base + 15n),
      r(L.bpDescPtr, 8),
      r(L.tpVec.base, L.tpVec.entrySize * L.tpVec.max),
      r(L.tpVec.nr, 4),
      r(L.tpVec.refs, 4),
      r(L.csd.func, 8),
      r(L.csd.pending, 8),
      r(L.stopMachine, SM_QUEUED + BigInt(8 * Math.ceil(this.ncpus / 64))),
      r(L.nmiListHead, 8),
      r(L.textPokeNmiAction, 16),
    ];
    // And the text under patch: the primary reads back what it wrote (BUG_ON(memcmp)),
    // a secondary's NMI runs it. (Without it, each word a readback relied on restarted
    // the first NMI pass when a secondary first ran the site.)
    let planned: PlannedSite[] | null = null;
    let withSites: GuestRange[] = ranges;
    const current = (): readonly GuestRange[] => {
      const plan = this.planCell.raw();
      if (plan !== planned) {
        planned = plan;
        withSites = [...ranges, ...plan.map((s) => r(s.address, s.len))];
      }
      return withSites;
    };
    const routine = (fn: (ctx: HostContext) => Step<bigint | void>) => (ctx: HostContext): HostGen => protocolShared(this.m.mem, current, fn(ctx));
    this.m.bindHost(at('poke_int3_handler'), 'poke_int3_handler', routine((ctx) => this.pokeInt3Handler(ctx)));
    this.m.bindHost(at('text_poke_nmi'), 'text_poke_nmi', routine((ctx) => textPokeNmi(this, ctx)));
    this.m.bindHost(at('multi_cpu_stop'), 'multi_cpu_stop', routine((ctx) => multiCpuStop(this, ctx)));
    this.m.bindHost(
      at('generic_smp_call_function_interrupt'),
      'generic_smp_call_function_interrupt',
      routine(() => genericSmpCallFunctionInterrupt(this)),
    );
    this.m.bindHost(at('textpoke_patch_request'), 'textpoke_patch_request', routine((ctx) => this.patchRequest(ctx)));
  }

  /** poke_int3_handler(regs): 1 if the int3 belonged to a patch in progress. */
  private *pokeInt3Handler(ctx: HostContext): Step<bigint> {
    const regs = ctx.args[0];
    const ip = (yield* read(regs + BigInt(PT_REGS.rip), 8)) - 1n;
    ctx.status = `#BP at ${this.m.symbolize(ip)}`;
    if (this.active === 'batch') {
      const ok = yield* pokeInt3Emulate(this, regs, ip);
      return ok ? 1n : 0n;
    }
    const ours = yield* pokeInt3Native(this, ctx.cpu, ip);
    if (!ours) return 0n;
    // Run the (now complete) new instruction on return.
    if (!mutated(this, 'bp-no-rewind')) yield* write(regs + BigInt(PT_REGS.rip), 8, ip, 'regs->ip -= 1');
    return 1n;
  }

  /** The scenario's patch request, run by the CPU that calls textpoke_patch_request. */
  private *patchRequest(ctx: HostContext): Step {
    const req = this.request;
    if (!req) return;
    ctx.label = 'patcher';
    // pv_ops first: the slots say what the sites should become.
    for (const c of req.ops) yield* write(this.pv.slotAddress(c.op), 8, this.pv.target(c.op, c.mode), `pv_ops.${c.op}`);
    this.plan = this.planSites(req);
    this.active = req.protocol;
    if (req.protocol === 'stop-machine') {
      ctx.label = 'stop_machine';
      yield* textPokeLate(this, ctx, { nmi: req.nmi });
      if (req.again) {
        const second = { ...req, ops: req.again, again: null };
        for (const c of second.ops) yield* write(this.pv.slotAddress(c.op), 8, this.pv.target(c.op, c.mode), `pv_ops.${c.op}`);
        this.plan = this.planSites(second);
        yield* textPokeLate(this, ctx, { nmi: req.nmi });
      }
    } else if (req.protocol === 'batch') {
      yield* textPokeBpBatch(this, ctx, this.plan);
    } else {
      yield* naivePoke(this, ctx.cpu, this.plan);
    }
    this.active = null;
    ctx.label = '';
    this.patchDone = true;
  }

  /** Validates a request against the image (one-line errors naming the op). */
  check(req: PatchRequest): void {
    for (const c of req.ops) {
      if (!this.img.pvOps.slots.includes(c.op)) {
        throw new PatchRequestError(`unknown op '${c.op}' (known: ${this.img.pvOps.slots.filter((s) => s).join(', ')})`);
      }
      this.pv.target(c.op, c.mode);
    }
    if (req.protocol !== 'stop-machine' && req.nmi) throw new PatchRequestError('nmi mode belongs to the stop-machine protocol');
    if (req.pokes?.length && req.protocol !== 'batch') throw new PatchRequestError('pokes of single instructions belong to the batch protocol (text_poke_bp)');
    for (const p of req.pokes ?? []) this.pokeSite(p);
    for (const c of req.again ?? []) {
      if (!this.img.pvOps.slots.includes(c.op)) throw new PatchRequestError(`unknown op '${c.op}' in the second run`);
      this.pv.target(c.op, c.mode);
    }
  }

  /**
   * The sites the request touches and their new bytes. stop-machine: exactly what
   * boot-time patching would generate for the new targets (inline native code
   * included). batch: only what int3 emulation can stand in for, so a site becomes
   * `call rel32` (or a 5-byte NOP for the paravirt no-op) and keeps its last byte.
   */
  planSites(req: PatchRequest): PlannedSite[] {
    const out: PlannedSite[] = [];
    // A real kernel's own rules (6.1: paravirt call or nothing, then the ALTERNATIVE
    // replacement when its feature condition holds) decide the new bytes there.
    const targets = new Map(req.ops.map((c) => [c.op, this.pv.target(c.op, c.mode)]));
    const kernelBytes = this.img.generateSites ? this.img.generateSites(targets, (op) => this.pv.read(this.m, op)) : null;
    for (const c of req.ops) {
      const target = this.pv.target(c.op, c.mode);
      for (const s of this.img.sites.filter((x) => x.op === c.op)) {
        const old = this.m.mem.readBytes(s.address, s.len);
        let bytes: Uint8Array;
        let form: PlannedSite['form'];
        let emulate: PlannedSite['emulate'];
        if (kernelBytes && req.protocol !== 'batch') {
          bytes = kernelBytes.get(s.address)!;
          form = bytes[0] === 0xe8 ? 'call' : this.pv.choice(c.op, target).nop ? 'nop' : 'inline';
        } else if (req.protocol !== 'batch') {
          const g = generatePatch(c.op, s.address, s.len, this.pv.choice(c.op, target));
          bytes = g.bytes;
          form = g.form;
        } else {
          // int3 emulation stands in for one 5-byte call or NOP; the bytes after it stay.
          // Anything else (inline code, a 6-byte NOP) could be mid-execution on another
          // CPU at an instruction boundary the new bytes do not have. A site already in
          // the requested state needs no patch, whatever its form.
          const choice = this.pv.choice(c.op, target);
          const wanted = kernelBytes?.get(s.address) ?? generatePatch(s.op, s.address, s.len, choice).bytes;
          if (compareSite(s, old, wanted, choice).ok) continue;
          if (!firstInsnIsCallOrNop5(old)) {
            throw new PatchRequestError(
              `the batch protocol cannot patch ${c.op} at 0x${s.address.toString(16)}: it holds ${disasmInline(old, s.address, null)}, ` +
                'and int3 emulation can only replace a 5-byte call or NOP (use the stop-machine protocol)',
            );
          }
          const head = choice.nop ? X86_NOPS[5] : encodeCall(s.address, target);
          bytes = old.slice();
          bytes.set(head, 0);
          form = choice.nop ? 'nop' : 'call';
          emulate = textPokeLocInit(s.address, head);
        }
        if (Buffer.compare(Buffer.from(old), Buffer.from(bytes)) === 0) continue;
        out.push({ address: s.address, len: s.len, op: c.op, old, new: bytes, form, emulate });
      }
    }
    for (const p of req.pokes ?? []) out.push(this.pokeSite(p));
    // paravirt_worker walks the sites in their table order (.parainstructions.runtime),
    // patching each for whichever staged op it belongs to; text_poke_bp_batch wants
    // its vector sorted by address (6.1's text_poke_queue, for the bsearch).
    const order = new Map(this.img.sites.map((s, i) => [s.address, i]));
    if (req.protocol === 'batch') out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    else out.sort((a, b) => order.get(a.address)! - order.get(b.address)!);
    return out;
  }

  /** A text_poke_bp of one instruction at a symbol: its new bytes and what the int3 handler emulates. */
  private pokeSite(p: PokeRequest): PlannedSite {
    const resolve = (name: string): bigint => {
      const m = /^([\w.$]+)(?:\+(0x[0-9a-fA-F]+|\d+))?$/.exec(name);
      const base = m ? this.img.symbols.resolve(m[1]) : undefined;
      if (base === undefined) throw new PatchRequestError(`poke: unknown symbol '${name}' in ${this.img.path}`);
      return base + BigInt(m![2] ?? 0);
    };
    const address = resolve(p.at);
    try {
      const bytes = encodePokeInsn(p.insn, address, p.len, resolve);
      const emulate = textPokeLocInit(address, bytes);
      return { address, len: bytes.length, op: `poke ${p.insn}`, old: this.m.mem.readBytes(address, bytes.length), new: bytes, form: 'inline', emulate };
    } catch (e) {
      if (e instanceof TextPokeLocError) throw new PatchRequestError(`poke at ${p.at}: ${e.message}`);
      throw e;
    }
  }

  /** Whether any CPU recorded an oops (an unexpected exception in the guest). */
  oopses(): { cpu: number; vector: number; rip: bigint }[] {
    const out: { cpu: number; vector: number; rip: bigint }[] = [];
    for (let c = 0; c < this.ncpus; c++) {
      const v = this.m.mem.readU64(this.L.pcpu(c, this.L.percpu.oopsVector));
      if (v !== 0n) out.push({ cpu: c, vector: Number(v) - 1, rip: this.m.mem.readU64(this.L.pcpu(c, this.L.percpu.oopsRip)) });
    }
    return out;
  }
}
