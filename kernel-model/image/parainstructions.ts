// The `.parainstructions` table of a Linux 6.1 vmlinux: one record per paravirt call
// site, which the kernel patches at boot to the native instruction or a direct call.
//
// Layout (6.1, x86-64), 16 bytes per record, little-endian:
//   0  u64  instr     link address of the site
//   8  u8   type      pv_ops slot index (byte offset into pv_ops / 8)
//   9  u8   len       site length in bytes
//   10 u16  clobbers  registers the site may clobber (CLBR_* mask)
//   12 4 bytes of padding (zero from the linker)
// Anything that does not fit — a size that is not a whole number of records, a site
// outside executable text, a length no instruction can have, non-zero padding — is
// refused with a LoadError rather than parsed into nonsense.

import { LoadError, rangeHolding, type AddrRange } from './elf';

export const PARA_RECORD_SIZE = 16;
/** The longest x86 instruction; a pv site is one instruction (plus padding). */
export const MAX_INSN_LEN = 15;

export interface ParaSite {
  /** Record number in the table. */
  index: number;
  /** Link address of the site. */
  addr: bigint;
  /** pv_ops slot index. */
  type: number;
  len: number;
  clobbers: number;
  /** Executable section the site lies in (.text, .init.text …). */
  section: string;
}

export interface ParaParseOptions {
  /** File name for errors. */
  label?: string;
  /** File offset of the table, so errors can name the byte; omitted: offsets are table-relative. */
  fileOffset?: number;
  /** Where sites may lie: the executable sections. */
  code: readonly AddrRange[];
  /** Number of pv_ops slots, when known: a type at or above it is refused. */
  slots?: number;
}

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

export function parseParainstructions(buf: Uint8Array, opts: ParaParseOptions): ParaSite[] {
  const label = opts.label ?? 'vmlinux';
  const base = opts.fileOffset ?? 0;
  const where = opts.fileOffset === undefined ? 'table byte' : 'byte';
  if (buf.length % PARA_RECORD_SIZE !== 0) {
    throw new LoadError(`${label}: .parainstructions is ${hex(buf.length)} bytes, not a multiple of the ${PARA_RECORD_SIZE}-byte 6.1 record: unknown layout`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: ParaSite[] = [];
  for (let o = 0, i = 0; o < buf.length; o += PARA_RECORD_SIZE, i++) {
    const fail = (field: number, what: string): never => {
      throw new LoadError(`${label}: ${where} ${hex(base + o + field)}: .parainstructions record ${i}: ${what}`);
    };
    const addr = dv.getBigUint64(o, true);
    const type = buf[o + 8];
    const len = buf[o + 9];
    const clobbers = dv.getUint16(o + 10, true);
    if (dv.getUint32(o + 12, true) !== 0) fail(12, 'padding is not zero: unknown record layout');
    if (len === 0 || len > MAX_INSN_LEN) fail(9, `site length ${len} is not in 1..${MAX_INSN_LEN}`);
    if (opts.slots !== undefined && type >= opts.slots) fail(8, `type ${type} is not below the ${opts.slots} pv_ops slots`);
    const r = rangeHolding(opts.code, addr, len);
    if (!r) fail(0, `site ${hex(addr)} (+${len}) lies in no executable section`);
    out.push({ index: i, addr, type, len, clobbers, section: r!.name });
  }
  return out;
}

/** What a pv site's bytes are, as far as patching cares. */
export type ParaSiteForm =
  | { form: 'indirect-call'; /** address of the pointer called through (pv_ops + 8*type when unpatched) */ slot: bigint }
  | { form: 'direct-call'; target: bigint }
  | { form: 'other'; bytes: string };

/** Classifies the bytes of a site at `addr`: `ff 15 rel32` (unpatched), `e8 rel32`, or other. */
export function paraSiteForm(addr: bigint, bytes: Uint8Array): ParaSiteForm {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 6 && bytes[0] === 0xff && bytes[1] === 0x15) {
    return { form: 'indirect-call', slot: BigInt.asUintN(64, addr + 6n + BigInt(dv.getInt32(2, true))) };
  }
  if (bytes.length >= 5 && bytes[0] === 0xe8) {
    return { form: 'direct-call', target: BigInt.asUintN(64, addr + 5n + BigInt(dv.getInt32(1, true))) };
  }
  return { form: 'other', bytes: Buffer.from(bytes).toString('hex') };
}
