// Instruction coverage: sweeps machine code (a kernel's .text function by function,
// or a blob linearly) and reports which share of instruction occurrences the opcode
// table implements, with the missing mnemonics and unsupported forms ranked by how
// often they occur — the to-do list for instruction semantics.
//
// "Implemented" means what the interpreter would do: the mnemonic has an OPTABLE row
// and the row's compile() accepts the decoded form (does not throw Unsupported); a form
// the row declares `unimplemented` (emu/forms.ts) is reported with its reason. Each
// distinct form is compiled once. A form is the iced Code plus the legacy prefixes
// that change semantics without changing the Code (lock, rep/repne, fs/gs, 0x67).
//
// Speed: one iced Decoder per chunk of bytes (a whole .text), repositioned per
// function, decoding into one reused Instruction; per instruction only code and
// length cross into WebAssembly, the rest is decided per distinct form afterwards.
//
// int3 bytes that cannot be reached by falling through (after ret/jmp/ud2, or after
// other such int3s) are padding — between functions or after returns (SLS
// hardening) — and are excluded from the counts.

import { Decoder, DecoderOptions, FlowControl, Instruction, Code } from 'iced-x86';
import { decodeOne, isDecodeFailure, CODE_NAMES } from './decode';
import { OPTABLE } from './optable';
import { Unsupported } from './operands';
import { unimplementedReason } from './forms';

export interface CoverageChunk {
  /** Address of bytes[0]. */
  base: bigint;
  bytes: Uint8Array;
  /**
   * Function extents as [start, end) offsets into `bytes`, swept independently.
   * Omitted: the whole chunk is one linear sweep.
   */
  functions?: readonly { start: number; end: number }[];
}

export interface MissingMnemonic {
  mnemonic: string;
  count: number;
  /** iced Code names seen for it, most frequent first. */
  codes: string[];
  example: bigint;
}

export interface UnsupportedForm {
  mnemonic: string;
  code: string;
  /** Prefixes that are part of the form ("lock", "rep", "gs", "addr32"), space-separated. */
  prefixes: string;
  reason: string;
  count: number;
  example: bigint;
  /** True when compile() threw something other than Unsupported: a bug in the row. */
  crashed: boolean;
}

/** Where the sweep lost sync: an undecodable byte, or an instruction running past its function. */
export interface CoverageAnomaly {
  kind: 'invalid' | 'overrun';
  address: bigint;
}

const MAX_ANOMALIES = 20;

export interface CoverageReport {
  /** Instruction occurrences counted (int3 padding excluded). */
  total: number;
  implemented: number;
  /** implemented / total (1 when total is 0). */
  share: number;
  /** int3 bytes excluded as padding. */
  int3Padding: number;
  /** Bytes that did not decode (skipped one at a time to resynchronise). */
  invalidBytes: number;
  /** Instructions that ran past the end of their function (out of sync; not counted). */
  overruns: number;
  functions: number;
  bytes: number;
  /** The first few places the sweep lost sync. */
  anomalies: CoverageAnomaly[];
  /** Distinct forms compiled. */
  forms: number;
  missing: MissingMnemonic[];
  unsupported: UnsupportedForm[];
  seconds: number;
}

const P_LOCK = 1;
const P_REP = 2;
const P_REPNE = 4;
const P_FS = 8;
const P_GS = 16;
const P_A32 = 32;
const P_BITS = 6;

/** Legacy-prefix bits of the instruction at `off` (the ones a Code does not capture). */
function prefixBits(b: Uint8Array, off: number, len: number): number {
  let p = 0;
  for (let k = off, end = off + len; k < end; k++) {
    const x = b[k];
    if (x === 0xf0) p |= P_LOCK;
    else if (x === 0xf3) p |= P_REP;
    else if (x === 0xf2) p |= P_REPNE;
    else if (x === 0x64) p |= P_FS;
    else if (x === 0x65) p |= P_GS;
    else if (x === 0x67) p |= P_A32;
    else if (!(x === 0x66 || x === 0x2e || x === 0x36 || x === 0x3e || x === 0x26)) break;
  }
  return p;
}

function prefixNames(p: number): string {
  const n: string[] = [];
  if (p & P_LOCK) n.push('lock');
  if (p & P_REP) n.push('rep');
  if (p & P_REPNE) n.push('repne');
  if (p & P_FS) n.push('fs');
  if (p & P_GS) n.push('gs');
  if (p & P_A32) n.push('addr32');
  return n.join(' ');
}

interface FormStats {
  count: number;
  chunk: number;
  offset: number;
  len: number;
}

/** Whether control can fall through past an instruction of this flow-control kind. */
function fallsThrough(fc: FlowControl): boolean {
  return !(
    fc === FlowControl.UnconditionalBranch ||
    fc === FlowControl.IndirectBranch ||
    fc === FlowControl.Return ||
    fc === FlowControl.Exception
  );
}

/** Sweeps the chunks and classifies every distinct instruction form against OPTABLE. */
export function sweepCoverage(chunks: readonly CoverageChunk[]): CoverageReport {
  const t0 = performance.now();
  const forms = new Map<number, FormStats>();
  // Per Code: does it fall through (iced's flow control depends only on the Code)?
  const flowByCode = new Map<number, boolean>();
  let int3Padding = 0;
  let invalidBytes = 0;
  let overruns = 0;
  let functions = 0;
  let bytes = 0;
  const anomalies: CoverageAnomaly[] = [];
  const ins = new Instruction();
  try {
    for (let ci = 0; ci < chunks.length; ci++) {
      const ch = chunks[ci];
      const buf = ch.bytes;
      bytes += buf.length;
      if (buf.length === 0) continue;
      const ranges = ch.functions ?? [{ start: 0, end: buf.length }];
      const dec = new Decoder(64, buf, DecoderOptions.None);
      try {
        for (const r of ranges) {
          if (r.end <= r.start) continue;
          functions++;
          dec.position = r.start;
          dec.ip = BigInt.asUintN(64, ch.base + BigInt(r.start));
          let flows = true;
          let pos = r.start;
          // The run of 0xCC bytes that ends the range: padding even after a call that
          // does not return (which falls through as far as the decoder knows).
          let tail = r.end;
          while (tail > r.start && buf[tail - 1] === 0xcc) tail--;
          while (pos < r.end) {
            dec.decodeOut(ins);
            const code = ins.code;
            const len = ins.length;
            if (code === Code.INVALID) {
              // Resynchronise one byte further on.
              invalidBytes++;
              if (anomalies.length < MAX_ANOMALIES) anomalies.push({ kind: 'invalid', address: ch.base + BigInt(pos) });
              pos++;
              dec.position = pos;
              dec.ip = BigInt.asUintN(64, ch.base + BigInt(pos));
              flows = true;
              continue;
            }
            if (pos + len > r.end) {
              overruns++;
              if (anomalies.length < MAX_ANOMALIES) anomalies.push({ kind: 'overrun', address: ch.base + BigInt(pos) });
              break;
            }
            if (code === Code.Int3 && (!flows || pos >= tail)) {
              int3Padding++;
              pos += len;
              continue;
            }
            let ft = flowByCode.get(code);
            if (ft === undefined) {
              ft = fallsThrough(ins.flowControl);
              flowByCode.set(code, ft);
            }
            flows = ft && code !== Code.Int3;
            const key = code * (1 << P_BITS) + prefixBits(buf, pos, len);
            const f = forms.get(key);
            if (f) f.count++;
            else forms.set(key, { count: 1, chunk: ci, offset: pos, len });
            pos += len;
          }
        }
      } finally {
        dec.free();
      }
    }
  } finally {
    ins.free();
  }
  return classify(chunks, forms, { int3Padding, invalidBytes, overruns, functions, bytes, anomalies }, t0);
}

function classify(
  chunks: readonly CoverageChunk[],
  forms: Map<number, FormStats>,
  sweep: { int3Padding: number; invalidBytes: number; overruns: number; functions: number; bytes: number; anomalies: CoverageAnomaly[] },
  t0: number,
): CoverageReport {
  let total = 0;
  let implemented = 0;
  const missing = new Map<string, { count: number; codes: Map<string, number>; example: bigint }>();
  const unsupported: UnsupportedForm[] = [];
  for (const [key, f] of forms) {
    total += f.count;
    const code = Math.floor(key / (1 << P_BITS));
    const pfx = key % (1 << P_BITS);
    const ch = chunks[f.chunk];
    const addr = BigInt.asUintN(64, ch.base + BigInt(f.offset));
    const d = decodeOne(ch.bytes.subarray(f.offset, f.offset + f.len), Number(addr & 0xffffffffn) | 0, Number(addr >> 32n) | 0);
    const codeName = CODE_NAMES[code] ?? `code${code}`;
    if (isDecodeFailure(d)) {
      // The shared decoder accepted it; a lone decode must too. Report rather than hide.
      unsupported.push({ mnemonic: '(bad)', code: codeName, prefixes: prefixNames(pfx), reason: `decodeOne: ${d.error}`, count: f.count, example: addr, crashed: true });
      continue;
    }
    const row = OPTABLE.get(d.mnemonic);
    if (!row) {
      const m = missing.get(d.name) ?? { count: 0, codes: new Map<string, number>(), example: addr };
      m.count += f.count;
      m.codes.set(codeName, (m.codes.get(codeName) ?? 0) + f.count);
      missing.set(d.name, m);
      continue;
    }
    const declared = unimplementedReason(row, d.code);
    if (declared !== null) {
      // The row says it leaves this form out (emu/forms.ts): its reason, no compile.
      unsupported.push({ mnemonic: d.name, code: codeName, prefixes: prefixNames(pfx), reason: declared, count: f.count, example: addr, crashed: false });
      continue;
    }
    try {
      row.compile(d);
      implemented += f.count;
    } catch (e) {
      const crashed = !(e instanceof Unsupported);
      const reason = e instanceof Error ? (crashed ? `${e.name}: ${e.message}` : e.message) : String(e);
      unsupported.push({ mnemonic: d.name, code: codeName, prefixes: prefixNames(pfx), reason, count: f.count, example: addr, crashed });
    }
  }
  const missingList: MissingMnemonic[] = [...missing].map(([mnemonic, m]) => ({
    mnemonic,
    count: m.count,
    codes: [...m.codes].sort((a, b) => b[1] - a[1]).map(([c]) => c),
    example: m.example,
  }));
  missingList.sort((a, b) => b.count - a.count || (a.mnemonic < b.mnemonic ? -1 : 1));
  unsupported.sort((a, b) => b.count - a.count || (a.code < b.code ? -1 : 1));
  return {
    total,
    implemented,
    share: total === 0 ? 1 : implemented / total,
    ...sweep,
    forms: forms.size,
    missing: missingList,
    unsupported,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The report as JSON-safe data (addresses as hex strings). */
export function coverageToJson(r: CoverageReport, symbolize?: (a: bigint) => string): unknown {
  const where = (a: bigint): string => '0x' + a.toString(16) + (symbolize ? ` ${symbolize(a)}` : '');
  return {
    ...r,
    sharePercent: Number((r.share * 100).toFixed(3)),
    anomalies: r.anomalies.map((a) => ({ kind: a.kind, address: where(a.address) })),
    missing: r.missing.map((m) => ({ ...m, share: m.count / Math.max(1, r.total), example: where(m.example) })),
    unsupported: r.unsupported.map((u) => ({ ...u, share: u.count / Math.max(1, r.total), example: where(u.example) })),
  };
}

function pct(n: number, total: number): string {
  return ((100 * n) / Math.max(1, total)).toFixed(3) + '%';
}

/** Human-readable report; `top` limits each ranked list (default: all). */
export function formatCoverage(r: CoverageReport, opts: { top?: number; symbolize?: (a: bigint) => string; title?: string } = {}): string {
  const top = opts.top ?? Infinity;
  const sym = opts.symbolize ?? ((a: bigint): string => '0x' + a.toString(16));
  const n = (x: number): string => x.toLocaleString('en-US');
  const lines: string[] = [];
  if (opts.title) lines.push(opts.title);
  lines.push(
    `instructions: ${n(r.total)} in ${n(r.functions)} range(s), ${n(r.bytes)} bytes ` +
      `(excluded: ${n(r.int3Padding)} int3 padding, ${n(r.invalidBytes)} undecodable bytes, ${n(r.overruns)} overruns)`,
  );
  lines.push(`implemented: ${n(r.implemented)} of ${n(r.total)} = ${(r.share * 100).toFixed(3)}% (${n(r.forms)} distinct forms, ${r.seconds.toFixed(2)} s)`);
  if (r.anomalies.length) {
    lines.push(`lost sync at: ${r.anomalies.slice(0, 5).map((a) => `${a.kind} ${sym(a.address)}`).join('; ')}${r.anomalies.length > 5 ? '; …' : ''}`);
  }
  const missingTotal = r.missing.reduce((s, m) => s + m.count, 0);
  lines.push(`missing mnemonics (no OPTABLE row): ${r.missing.length}, ${n(missingTotal)} occurrences (${pct(missingTotal, r.total)})`);
  for (const m of r.missing.slice(0, top)) {
    lines.push(`  ${n(m.count).padStart(10)}  ${pct(m.count, r.total).padStart(8)}  ${m.mnemonic.padEnd(12)} ${m.codes.slice(0, 3).join(', ')}${m.codes.length > 3 ? ', …' : ''}  e.g. ${sym(m.example)}`);
  }
  if (r.missing.length > top) lines.push(`  … ${r.missing.length - top} more`);
  const unsTotal = r.unsupported.reduce((s, u) => s + u.count, 0);
  lines.push(`unsupported forms (row throws Unsupported): ${r.unsupported.length}, ${n(unsTotal)} occurrences (${pct(unsTotal, r.total)})`);
  for (const u of r.unsupported.slice(0, top)) {
    const pf = u.prefixes ? ` [${u.prefixes}]` : '';
    lines.push(`  ${n(u.count).padStart(10)}  ${pct(u.count, r.total).padStart(8)}  ${u.mnemonic.padEnd(12)} ${u.code}${pf}: ${u.crashed ? 'CRASH ' : ''}${u.reason}  e.g. ${sym(u.example)}`);
  }
  if (r.unsupported.length > top) lines.push(`  … ${r.unsupported.length - top} more`);
  return lines.join('\n');
}
