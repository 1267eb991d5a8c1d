// Turns the bytes at an address into an executable Insn: a host routine if one is
// bound there, otherwise iced-x86's decode compiled through the opcode table. Bytes
// that are invalid, or an instruction we do not implement, compile into a #UD that
// carries a diagnostic naming it, so the guest sees an exception and the host process
// never crashes.

import { decodeOne, isDecodeFailure } from './decode';
import { GuestException } from './fault';
import type { Cpu } from './cpu';
import type { Insn, Exec } from './insn';
import { OPTABLE } from './optable';
import { Unsupported } from './operands';
import { PageFault } from './memory';
import { hostExec } from './host';
import { breakpointExec } from './breakpoints';
import { orderedExec } from './ordering';
import type { Machine } from './machine';

export const VEC_UD = 6;

function raiseUd(detail: string): Exec {
  return () => {
    throw new GuestException(VEC_UD, null, detail);
  };
}

function hexBytes(b: Uint8Array, n: number): string {
  return Array.from(b.subarray(0, n), (x) => x.toString(16).padStart(2, '0')).join(' ');
}

export function compileAt(cpu: Cpu, ins: Insn, bytes: Uint8Array): void {
  const machine = cpu.machine;
  const host = machine.hostAt(ins.lo, ins.hi);
  if (host) {
    ins.len = 1;
    ins.nlo = ins.lo;
    ins.nhi = ins.hi;
    ins.name = host.name;
    ins.exec = hostExec(host);
  } else {
    compileBytes(machine, ins, bytes);
  }
  if (machine.hasBreakpoint(ins.lo, ins.hi)) ins.exec = breakpointExec(ins.exec);
}

function compileBytes(machine: Machine, ins: Insn, bytes: Uint8Array): void {
  const d = decodeOne(bytes, ins.lo, ins.hi);
  if (isDecodeFailure(d)) {
    ins.len = Math.max(1, Math.min(d.len, bytes.length));
    ins.nlo = ins.lo;
    ins.nhi = ins.hi;
    ins.name = '(bad)';
    if (d.error === 'truncated' && bytes.length < 15) {
      // The instruction runs into an unmapped page: fetching its tail faults there.
      const s = (ins.lo >>> 0) + bytes.length;
      const lo = s | 0;
      const hi = (ins.hi + (s > 0xffffffff ? 1 : 0)) | 0;
      ins.exec = () => {
        throw new PageFault(lo, hi, false, true);
      };
    } else {
      ins.exec = raiseUd(`invalid instruction bytes ${hexBytes(bytes, Math.min(bytes.length, 15))}`);
    }
    return;
  }
  ins.len = d.len;
  ins.nlo = d.nlo;
  ins.nhi = d.nhi;
  ins.mnemonic = d.mnemonic;
  ins.code = d.code;
  ins.name = d.name;
  const row = OPTABLE.get(d.mnemonic);
  if (!row) {
    ins.exec = raiseUd(`unimplemented instruction '${d.name}' (${hexBytes(bytes, d.len)})`);
    return;
  }
  try {
    ins.exec = orderedExec(machine, d, row.compile(d));
  } catch (e) {
    if (!(e instanceof Unsupported)) throw e;
    ins.exec = raiseUd(`unsupported form of '${d.name}' (${hexBytes(bytes, d.len)}): ${e.message}`);
  }
}
