// Patch generation for a paravirt site: the bytes a site of `len` bytes becomes for
// an op whose pv_ops slot holds `target`. An op that runs natively and has a short
// native form gets it inline; an op whose target is the paravirt no-op becomes all
// NOPs; anything else becomes a direct `call rel32` to the target. The rest of the
// site is padded with the kernel's NOPs.

import { Code, Instruction } from 'iced-x86';
import { encodeAt } from './encode';
import { addNops } from './nops';
import { NATIVE_TEMPLATES } from './templates';

export type PatchForm = 'inline' | 'call' | 'nop';

export interface PatchChoice {
  /** The op's current pv_ops target. */
  target: bigint;
  /** The target is the op's native implementation. */
  native: boolean;
  /** The target is the paravirt no-op. */
  nop: boolean;
}

export interface GeneratedPatch {
  bytes: Uint8Array;
  form: PatchForm;
}

export class PatchError extends Error {}

/** `call rel32` from `at` to `target`, encoded by iced-x86. */
export function encodeCall(at: bigint, target: bigint): Uint8Array {
  return encodeAt(Instruction.createBranch(Code.Call_rel32_64, BigInt.asUintN(64, target)), at);
}

export function generatePatch(op: string, address: bigint, len: number, c: PatchChoice): GeneratedPatch {
  const buf = new Uint8Array(len);
  if (c.nop) {
    addNops(buf, 0, len);
    return { bytes: buf, form: 'nop' };
  }
  const tmpl = c.native ? NATIVE_TEMPLATES.get(op) : undefined;
  if (tmpl && tmpl.length <= len) {
    buf.set(tmpl, 0);
    addNops(buf, tmpl.length, len - tmpl.length);
    return { bytes: buf, form: 'inline' };
  }
  const call = encodeCall(address, c.target);
  if (call.length > len) {
    throw new PatchError(`site 0x${address.toString(16)} (${op}) is ${len} bytes: too short for a ${call.length}-byte call`);
  }
  buf.set(call, 0);
  addNops(buf, call.length, len - call.length);
  return { bytes: buf, form: 'call' };
}
