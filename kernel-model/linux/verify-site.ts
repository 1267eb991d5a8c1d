// Verifying paravirt sites: does each site hold what the alternatives engine makes of
// its op's current pv_ops target? A site matches when its bytes equal the generated
// ones, or are equivalent: the same first instruction (the same call target, the
// same inline native code) followed only by NOPs, or all NOPs for the paravirt no-op.
// The equivalence covers the batch protocol's `call; 1-byte nop` forms and padding
// written by another NOP table.

import { decodeOne, isDecodeFailure } from '../../emu/decode';
import { Mnemonic } from 'iced-x86';
import type { PvSite } from '../image/kernel-image';
import { generatePatch, type PatchChoice } from './paravirt-patch';
import { hexBytes } from './kernel-context';

export interface SiteVerdict {
  ok: boolean;
  /** What generation gives for the slot's target. */
  expected: Uint8Array;
  /** 'exact', 'equivalent', or why not. */
  how: string;
}

const NOP_MNEMONICS = new Set<number>([Mnemonic.Nop]);

/** Splits bytes into instructions; null if they do not decode exactly. */
function decodeAll(bytes: Uint8Array, address: bigint): { mnemonic: number; len: number; target?: bigint }[] | null {
  const out: { mnemonic: number; len: number; target?: bigint }[] = [];
  let off = 0;
  while (off < bytes.length) {
    const a = address + BigInt(off);
    const d = decodeOne(bytes.subarray(off), Number(a & 0xffffffffn) | 0, Number(a >> 32n) | 0);
    if (isDecodeFailure(d) || off + d.len > bytes.length) return null;
    const br = d.ops.find((o) => o.k === 'branch');
    out.push({
      mnemonic: d.mnemonic,
      len: d.len,
      target: br && br.k === 'branch' ? (BigInt(br.hi >>> 0) << 32n) | BigInt(br.lo >>> 0) : undefined,
    });
    off += d.len;
  }
  return out;
}

export function verifySite(site: PvSite, actual: Uint8Array, choice: PatchChoice): SiteVerdict {
  return compareSite(site, actual, generatePatch(site.op, site.address, site.len, choice).bytes, choice);
}

/** Compares a site's bytes with the expected ones, accepting equivalent forms. */
export function compareSite(site: PvSite, actual: Uint8Array, expected: Uint8Array, choice: PatchChoice): SiteVerdict {
  if (hexBytes(actual) === hexBytes(expected)) return { ok: true, expected, how: 'exact' };
  const got = decodeAll(actual, site.address);
  const want = decodeAll(expected, site.address);
  if (!got || !want) return { ok: false, expected, how: 'bytes do not decode into whole instructions' };
  const body = (xs: typeof got): typeof got => xs.filter((x) => !NOP_MNEMONICS.has(x.mnemonic));
  const gb = body(got);
  const wb = body(want);
  // A direct call to the slot's own target is always correct code, even where boot
  // patching would inline the native version (the batch protocol cannot inline).
  if (!choice.nop && gb.length === 1 && got[0] === gb[0] && gb[0].mnemonic === Mnemonic.Call && gb[0].target === choice.target) {
    return { ok: true, expected, how: wb.length === 1 && wb[0].mnemonic === Mnemonic.Call ? 'equivalent (same call, other NOP padding)' : 'equivalent (a call to the pv_ops target; boot-time patching would inline it)' };
  }
  if (gb.length !== wb.length) return { ok: false, expected, how: `expected ${hexBytes(expected)}` };
  if (wb.length === 0) return { ok: true, expected, how: 'equivalent (all NOPs)' };
  // The real instructions must come first and match; only NOPs may follow.
  const leading = got.slice(0, gb.length);
  const sameBody = leading.every((x, i) => !NOP_MNEMONICS.has(x.mnemonic) && x.mnemonic === wb[i].mnemonic && x.target === wb[i].target);
  if (!sameBody) return { ok: false, expected, how: `expected ${hexBytes(expected)}` };
  // Inline code must be byte-identical (the templates are exact), calls only by target.
  let off = 0;
  for (const x of leading) {
    if (x.target === undefined && hexBytes(actual.subarray(off, off + x.len)) !== hexBytes(expected.subarray(off, off + x.len))) {
      return { ok: false, expected, how: `expected ${hexBytes(expected)}` };
    }
    off += x.len;
  }
  return { ok: true, expected, how: 'equivalent (same code, other NOP padding)' };
}
