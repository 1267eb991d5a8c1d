// Verifying paravirt sites: does each site hold what the alternatives engine makes of
// its op's current pv_ops target? Bytes are compared exactly. Two other forms are
// correct code the kernel itself can leave at a site, and each is accepted only in
// its one exact spelling, under a named rule (EQUIVALENT_FORMS):
//
//  - call-for-inline: `call rel32` to the op's target, then the kernel's NOP padding,
//    where boot-time patching would inline the native code. The batch protocol
//    (text_poke_bp_batch) writes this: int3 emulation can stand in for a call but not
//    for inline code.
//  - nop5-for-nop: the 5-byte NOP, then the kernel's NOP padding, where boot-time
//    patching writes the paravirt no-op as the longest NOPs that fit. The batch
//    protocol writes this too, for the same reason.
//
// Anything else, however close (`0f 1f 01` for `0f 1f 00`, a changed last byte, NOP
// padding from another table, a call to another target), is a mismatch.

import type { PvSite } from '../image/kernel-image';
import { generatePatch, encodeCall, type PatchChoice } from './paravirt-patch';
import { hexBytes } from './kernel-context';
import { addNops, X86_NOPS } from './nops';

export interface SiteVerdict {
  ok: boolean;
  /** What generation gives for the slot's target. */
  expected: Uint8Array;
  /** 'exact', 'equivalent (<rule>: …)', or why not. */
  how: string;
}

export interface EquivalentForm {
  /** The rule's name, as it appears in verdicts. */
  name: string;
  /** Why the form is correct code. */
  why: string;
  /** The one byte string this rule accepts at a site, or null where it does not apply. */
  bytes(site: PvSite, expected: Uint8Array, choice: PatchChoice): Uint8Array | null;
}

/** `head` followed by the kernel's NOP padding (add_nops) to the site's length. */
function padded(head: Uint8Array, len: number): Uint8Array | null {
  if (head.length > len) return null;
  const b = new Uint8Array(len);
  b.set(head, 0);
  addNops(b, head.length, len - head.length);
  return b;
}

/**
 * Boot-time patching inlines code here: the expected bytes are neither the paravirt
 * no-op nor a call (the fixture's native templates, or a 6.1 ALTERNATIVE's code).
 */
function inlinedByBoot(expected: Uint8Array, choice: PatchChoice): boolean {
  return !choice.nop && expected[0] !== 0xe8;
}

export const EQUIVALENT_FORMS: readonly EquivalentForm[] = [
  {
    name: 'call-for-inline',
    why: 'a call to the pv_ops target where boot-time patching would inline it (the batch protocol cannot write inline code)',
    bytes: (site, expected, choice) => (inlinedByBoot(expected, choice) ? padded(encodeCall(site.address, choice.target), site.len) : null),
  },
  {
    name: 'nop5-for-nop',
    why: 'the 5-byte NOP and padding where boot-time patching writes the paravirt no-op as the longest NOPs (int3 emulation stands in for a 5-byte NOP only)',
    bytes: (site, _expected, choice) => (choice.nop ? padded(X86_NOPS[5], site.len) : null),
  },
];

export function verifySite(site: PvSite, actual: Uint8Array, choice: PatchChoice): SiteVerdict {
  return compareSite(site, actual, generatePatch(site.op, site.address, site.len, choice).bytes, choice);
}

/** Compares a site's bytes with the expected ones: exactly, or one named equivalent form exactly. */
export function compareSite(site: PvSite, actual: Uint8Array, expected: Uint8Array, choice: PatchChoice): SiteVerdict {
  const have = hexBytes(actual);
  if (have === hexBytes(expected)) return { ok: true, expected, how: 'exact' };
  for (const f of EQUIVALENT_FORMS) {
    const b = f.bytes(site, expected, choice);
    if (b && hexBytes(b) === have) return { ok: true, expected, how: `equivalent (${f.name}: ${f.why})` };
  }
  return { ok: false, expected, how: `expected ${hexBytes(expected)}` };
}
