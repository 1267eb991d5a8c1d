// Where the kernel model's shared state lives in guest memory: symbol addresses and
// field offsets taken from the image (fixture constants), so guest code, host
// routines, the CLI and a debugger all look at the same bytes.

import { type KernelImage, requireConstant, requireSymbol } from '../image/kernel-image';

/** enum patch_state of the RFC. PATCH_SYNC_x (4) is set in all three SYNC states and SYNC_DONE. */
export const PATCH_SYNC_x = 4;
export const PATCH_SYNC_0 = 4;
export const PATCH_SYNC_1 = 5;
export const PATCH_SYNC_2 = 6;
export const PATCH_SYNC_DONE = 7;
export const PATCH_DONE = 8;

export const PATCH_STATE_NAMES: Record<number, string> = {
  4: 'PATCH_SYNC_0',
  5: 'PATCH_SYNC_1',
  6: 'PATCH_SYNC_2',
  7: 'PATCH_SYNC_DONE',
  8: 'PATCH_DONE',
};

export const NMI_DONE = 0n;
export const NMI_HANDLED = 1n;

/** Offsets in struct pt_regs (x86-64), as the fixture's entry stubs build it. */
export const PT_REGS = { rdi: 112, orig_rax: 120, rip: 128, cs: 136, flags: 144, rsp: 152, ss: 160 } as const;

export class KernelLayout {
  readonly tps: { base: bigint; state: bigint; primaryCpu: bigint; numAcks: bigint; nmiWork: bigint; nmiContext: bigint; seq: bigint; ackMap: bigint; acked: bigint };
  readonly bpDesc: { base: bigint; addr: bigint; len: bigint; refs: bigint; opcode: bigint };
  /** The series' `struct bp_patching_desc *bp_desc`: NULL, or the descriptor of the site under patch. */
  readonly bpDescPtr: bigint;
  readonly tpVec: { base: bigint; nr: bigint; refs: bigint; entrySize: number; max: number; addr: number; len: number; opcode: number; target: number; text: number };
  readonly csd: { func: bigint; pending: bigint };
  readonly stopMachine: bigint;
  readonly nmiListHead: bigint;
  readonly textPokeNmiAction: bigint;
  readonly percpu: { base: bigint; size: number; cpu: number; preempt: number; nmiDepth: number; locks: number; nmis: number; oopsVector: number; oopsRip: number };
  /** The preempt count's NMI bits (in_nmi()). */
  readonly nmiMask: bigint;
  readonly vectors: { callFunction: number; stopMachine: number };
  readonly maxCpus: number;

  private readonly percpuBase: ((cpu: number) => bigint) | null;

  constructor(img: KernelImage) {
    this.percpuBase = img.percpuBase ? (cpu) => img.percpuBase!(cpu) : null;
    const s = (n: string): bigint => requireSymbol(img, n);
    const c = (n: string): number => requireConstant(img, n);
    const tps = s('text_poke_state');
    this.tps = {
      base: tps,
      state: tps + BigInt(c('TPS_STATE')),
      primaryCpu: tps + BigInt(c('TPS_PRIMARY_CPU')),
      numAcks: tps + BigInt(c('TPS_NUM_ACKS')),
      nmiWork: tps + BigInt(c('TPS_NMI_WORK')),
      nmiContext: tps + BigInt(c('TPS_NMI_CONTEXT')),
      seq: tps + BigInt(c('TPS_SEQ')),
      acked: tps + BigInt(c('TPS_ACKED')),
      ackMap: tps + BigInt(c('TPS_SYNC_ACK_MAP')),
    };
    const bpd = s('bp_desc');
    this.bpDesc = {
      base: bpd,
      addr: bpd + BigInt(c('BPD_ADDR')),
      len: bpd + BigInt(c('BPD_LEN')),
      refs: bpd + BigInt(c('BPD_REFS')),
      opcode: bpd + BigInt(c('BPD_OPCODE')),
    };
    this.bpDescPtr = s('bp_desc_ptr');
    this.tpVec = {
      base: s('tp_vec'),
      nr: s('tp_vec_nr'),
      refs: s('bp_refs'),
      entrySize: c('TPL_SIZE'),
      max: c('TP_VEC_MAX'),
      addr: c('TPL_ADDR'),
      len: c('TPL_LEN'),
      opcode: c('TPL_OPCODE'),
      target: c('TPL_TARGET'),
      text: c('TPL_TEXT'),
    };
    this.csd = { func: s('csd_func'), pending: s('csd_pending') };
    this.stopMachine = s('stop_machine_state');
    this.nmiListHead = s('nmi_list_head');
    this.textPokeNmiAction = s('text_poke_nmi_action');
    this.percpu = {
      base: img.symbols.resolve('percpu_areas') ?? 0n,
      size: c('PCPU_SIZE'),
      cpu: c('PCPU_CPU'),
      preempt: c('PCPU_PREEMPT'),
      nmiDepth: c('PCPU_NMI_DEPTH'),
      locks: c('PCPU_LOCKS'),
      nmis: c('PCPU_NMIS'),
      oopsVector: c('PCPU_OOPS_VECTOR'),
      oopsRip: c('PCPU_OOPS_RIP'),
    };
    this.nmiMask = BigInt(c('NMI_MASK'));
    this.vectors = { callFunction: c('CALL_FUNCTION_VECTOR'), stopMachine: c('STOP_MACHINE_VECTOR') };
    this.maxCpus = c('MAX_CPUS');
  }

  /** Address of a per-CPU field. */
  pcpu(cpu: number, offset: number): bigint {
    if (this.percpuBase) return this.percpuBase(cpu) + BigInt(offset);
    return this.percpu.base + BigInt(cpu * this.percpu.size + offset);
  }

  /** The 64-bit word of sync_ack_map holding `cpu`'s bit, and the bit. */
  ackWord(cpu: number): { addr: bigint; bit: bigint } {
    return { addr: this.tps.ackMap + BigInt(8 * (cpu >> 6)), bit: 1n << BigInt(cpu & 63) };
  }

  /** Bytes of sync_ack_map that hold `ncpus` bits (whole 64-bit words). */
  ackMapWords(ncpus: number): number {
    return Math.ceil(ncpus / 64);
  }
}
