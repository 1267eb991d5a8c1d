// A CPU's guest call stack, innermost frame first, across its interrupt contexts
// (#BP inside NMI inside thread): what `bt` shows in the console and `monitor bt` in
// gdb.
//
// Two ways to find the caller, as the kernel's own unwinders do:
// - ORC (real kernels): the image's .orc_unwind tables say where the caller's stack
//   pointer and return address are for every instruction of kernel text (see
//   image/orc.ts). Such frames are reliable.
// - A stack scan everywhere else: the fixture kernels are hand-written assembly that
//   keeps no RBP frame chain (checked: no function pushes %rbp), and the harness and
//   entry code around a real kernel has no ORC entries. The scan reads the stack word
//   by word and takes a word as a return address when it points into text just after a
//   call instruction, or at a host routine's binding (host routines push their own
//   address when they call guest code). Like the kernel's `?` frames, a scanned frame
//   is marked unreliable unless the call it follows is a direct call into the function
//   of the frame above it.
// Between contexts the walk continues from the interrupted RIP and RSP the machine
// saved when it delivered the event.

import type { Machine } from '../../emu/machine';
import type { Cpu } from '../../emu/cpu';
import { RSP, RBP } from '../../emu/regs';
import { toBig } from '../../emu/u64';
import { decodeOne, isDecodeFailure } from '../../emu/decode';
import { splitAddr } from '../../emu/memory';
import type { KernelImage } from '../image/kernel-image';
import { OrcTable, ORC_REG, ORC_TYPE } from '../image/orc';
import type { VectorNamer } from './report';

export interface BacktraceFrame {
  /** The return address (or RIP for the innermost frame of a context). */
  address: bigint;
  symbol: string;
  /** How this frame was found. */
  how: 'rip' | 'orc' | 'scan' | 'interrupted';
  reliable: boolean;
  /** The context this frame runs in ("thread", "NMI", "#BP", …). */
  context: string;
  /** A host routine's name when the address is one's binding. */
  host?: string;
}

/** Where one context's frames end: below `limit`, and before a copy of the interrupted RIP. */
interface ContextEnd {
  limit: bigint | null;
  interrupted: bigint | null;
}

/** Words scanned per context when no unwind information leads further. */
const SCAN_WORDS = 96;

export class Unwinder {
  private readonly orc: OrcTable | null;
  private readonly text: { start: bigint; end: bigint }[];

  constructor(
    private readonly m: Machine,
    img: KernelImage,
    private readonly vectorName: VectorNamer,
  ) {
    this.orc = img.kind === 'vmlinux' ? OrcTable.fromImage(img) : null;
    this.text = img.sections.filter((s) => s.name === '.text' || s.name === '.noinstr.text').map((s) => ({ start: s.address, end: s.address + BigInt(s.size) }));
  }

  get hasOrc(): boolean {
    return this.orc !== null;
  }

  private inKernelText(a: bigint): boolean {
    return this.text.some((t) => a >= t.start && a < t.end);
  }

  private read64(a: bigint): bigint | null {
    try {
      return this.m.mem.readU64(a);
    } catch {
      return null;
    }
  }

  /** The call instruction that ends just before `ret`, if one does: its length and direct target. */
  private callBefore(ret: bigint): { direct: bigint | null } | null {
    for (const len of [5, 2, 3, 6, 7, 4]) {
      let bytes: Uint8Array;
      try {
        bytes = this.m.mem.readBytes(ret - BigInt(len), len);
      } catch {
        continue;
      }
      const [lo, hi] = splitAddr(ret - BigInt(len));
      const d = decodeOne(bytes, lo, hi);
      if (isDecodeFailure(d) || d.len !== len || d.name !== 'call') continue;
      const op = d.ops[0];
      return { direct: op && op.k === 'branch' ? toBig(op.lo, op.hi) : null };
    }
    return null;
  }

  private isCode(a: bigint): boolean {
    return this.m.symbols.lookup(a) !== undefined || this.m.hostAt(...splitAddr(a)) !== undefined;
  }

  private frame(address: bigint, how: BacktraceFrame['how'], reliable: boolean, context: string): BacktraceFrame {
    const b = this.m.hostAt(...splitAddr(address));
    return { address, symbol: this.m.symbolize(address), how, reliable, context, host: b?.name };
  }

  /** The call stack of `cpu`, innermost first. */
  backtrace(cpu: Cpu): BacktraceFrame[] {
    const out: BacktraceFrame[] = [];
    const names = ['thread', ...cpu.contexts.map((c) => this.vectorName(c.vector) ?? c.kind)];
    let ip = cpu.rip;
    let sp = toBig(cpu.r[RSP], cpu.r[RSP + 16]);
    let bp: bigint | null = toBig(cpu.r[RBP], cpu.r[RBP + 16]);
    for (let level = cpu.contexts.length; level >= 0; level--) {
      const ctx = names[level];
      out.push(this.frame(ip, level === cpu.contexts.length ? 'rip' : 'interrupted', true, ctx));
      // A context's own frames end where the event's hardware frame or the interrupted
      // stack begins, whichever comes first above its stack pointer.
      // The entry code's copy of the hardware frame (its saved RIP) ends them too.
      let limit: bigint | null = null;
      let interrupted: bigint | null = null;
      if (level > 0) {
        const c = cpu.contexts[level - 1];
        interrupted = toBig(c.ripLo, c.ripHi);
        for (const b of [toBig(c.frameLo, c.frameHi), toBig(c.rspLo, c.rspHi)]) if (b > sp && (limit === null || b < limit)) limit = b;
      }
      this.walk(ip, sp, bp, ctx, out, { limit, interrupted });
      if (level > 0) {
        const c = cpu.contexts[level - 1];
        ip = toBig(c.ripLo, c.ripHi);
        sp = toBig(c.rspLo, c.rspHi);
        bp = null;
      }
    }
    return out;
  }

  /** Callers of the frame at (ip, sp) within one context. */
  private walk(ip: bigint, sp: bigint, bp: bigint | null, ctx: string, out: BacktraceFrame[], end: ContextEnd): void {
    const limit = end.limit;
    let first = true;
    let scanFrom = sp;
    for (let guard = 0; guard < 64; guard++) {
      if (this.orc && this.inKernelText(ip)) {
        // Return addresses point after the call: look up the call itself.
        const e = this.orc.lookup(first ? ip : ip - 1n);
        if (!e || e.spReg === ORC_REG.UNDEFINED) return;
        let cfa: bigint | null;
        if (e.spReg === ORC_REG.SP) cfa = sp + BigInt(e.spOffset);
        else if (e.spReg === ORC_REG.BP && bp !== null) cfa = bp + BigInt(e.spOffset);
        else if (e.spReg === ORC_REG.SP_INDIRECT) {
          const v = this.read64(sp);
          cfa = v === null ? null : v + BigInt(e.spOffset);
        } else if (e.spReg === ORC_REG.BP_INDIRECT && bp !== null) cfa = this.read64(bp + BigInt(e.spOffset));
        else cfa = null;
        if (cfa === null) return;
        let nip: bigint | null;
        let nsp: bigint | null;
        if (e.type === ORC_TYPE.CALL) {
          nip = this.read64(cfa - 8n);
          nsp = cfa;
          if (e.bpReg === ORC_REG.PREV_SP) bp = this.read64(cfa + BigInt(e.bpOffset));
          else if (e.bpReg !== ORC_REG.BP) bp = null;
        } else if (e.type === ORC_TYPE.REGS) {
          // struct pt_regs at the CFA: bp at 4*8, ip at 16*8, sp at 19*8.
          nip = this.read64(cfa + 128n);
          nsp = this.read64(cfa + 152n);
          bp = this.read64(cfa + 32n);
        } else {
          // Only the iret frame: ip, cs, flags, sp, ss.
          nip = this.read64(cfa);
          nsp = this.read64(cfa + 24n);
        }
        if (nip === null || nsp === null || nsp <= sp || !this.isCode(nip) || (limit !== null && nsp > limit)) return;
        out.push(this.frame(nip, 'orc', true, ctx));
        ip = nip;
        sp = nsp;
        scanFrom = nsp;
        first = false;
        continue;
      }
      // No unwind information here: scan the stack for the next return address.
      const found = this.scan(scanFrom, out[out.length - 1]?.address ?? ip, limit);
      if (!found || found.ret === end.interrupted) return;
      out.push(this.frame(found.ret, 'scan', found.reliable, ctx));
      ip = found.ret;
      sp = found.slot + 8n;
      scanFrom = sp;
      bp = null;
      first = false;
    }
  }

  private scan(from: bigint, callee: bigint, limit: bigint | null): { ret: bigint; slot: bigint; reliable: boolean } | null {
    const calleeFn = this.m.symbols.lookup(callee);
    for (let i = 0; i < SCAN_WORDS; i++) {
      const slot = from + BigInt(8 * i);
      if (limit !== null && slot >= limit) return null;
      const w = this.read64(slot);
      if (w === null) return null;
      if (this.m.hostAt(...splitAddr(w))) return { ret: w, slot, reliable: true };
      if (!this.m.symbols.lookup(w)) continue;
      const call = this.callBefore(w);
      if (!call) continue;
      const target = call.direct === null ? undefined : this.m.symbols.lookup(call.direct);
      const reliable = target !== undefined && calleeFn !== undefined && target.address === calleeFn.address;
      return { ret: w, slot, reliable };
    }
    return null;
  }
}

/** One line per frame, gdb-style: `#0  0x… in symbol+off [context]`, `?` for an unreliable frame. */
export function formatBacktrace(frames: readonly BacktraceFrame[]): string[] {
  const out: string[] = [];
  let ctx = frames[0]?.context;
  frames.forEach((f, i) => {
    if (f.context !== ctx) {
      out.push(`    --- ${ctx} interrupted ${f.context} ---`);
      ctx = f.context;
    }
    const sym = f.host ? `${f.symbol} [host routine ${f.host}]` : f.symbol;
    out.push(`#${i.toString().padEnd(2)} ${f.reliable ? ' ' : '?'} 0x${f.address.toString(16)} in ${sym}${f.how === 'scan' || f.how === 'orc' ? `  (${f.how})` : ''}`);
  });
  return out;
}
