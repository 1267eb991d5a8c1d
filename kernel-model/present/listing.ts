// objdump-style listings of kernel text (address, bytes, instruction, symbol+offset)
// with paravirt sites annotated by op and by what their bytes say about them:
// still the original indirect call through pv_ops, what boot patching makes of
// them, patched at runtime, under patch (int3), or something else. Bytes come
// from a reader, so a listing can show an image file (no machine, nothing mapped)
// or a running machine's memory (int3s and all).

import { disassemble } from '../../emu/decode';
import type { SymbolTable } from '../../emu/symbols';
import type { KernelImage, PvSite } from '../image/kernel-image';
import { annotate } from '../image/disasm';
import { hexBytes } from '../linux/kernel-context';
import { compareSite, type SiteVerdict } from '../linux/verify-site';
import { bootPatchImage } from '../linux/boot-patch';
import { PvOps } from '../linux/pv-ops';

export type SiteStateKind = 'original' | 'boot-patched' | 'runtime-patched' | 'under-patch' | 'other';

export interface SiteState {
  kind: SiteStateKind;
  /** For people: "original (indirect call through pv_ops)", "boot-patched", … */
  text: string;
}

export interface SiteFacts {
  /** pv_ops' address: an `ff 15` through the site's own slot is the original call. */
  pvOpsAddress: bigint;
  /** What boot-time patching writes into the site, when known. */
  bootFinal?: Uint8Array;
  /** The site checked against the op's current pv_ops target, when known. */
  verdict?: SiteVerdict;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Classifies a site by its bytes. */
export function siteState(site: PvSite, bytes: Uint8Array, f: SiteFacts): SiteState {
  if (bytes[0] === 0xff && bytes[1] === 0x15 && bytes.length >= 6) {
    const disp = new DataView(bytes.buffer, bytes.byteOffset + 2, 4).getInt32(0, true);
    const slot = BigInt.asUintN(64, site.address + 6n + BigInt(disp));
    if (slot === f.pvOpsAddress + 8n * BigInt(site.slot)) return { kind: 'original', text: 'original (indirect call through pv_ops)' };
    return { kind: 'other', text: `other (indirect call through 0x${slot.toString(16)}, not its pv_ops slot)` };
  }
  if (bytes[0] === 0xcc) return { kind: 'under-patch', text: 'under patch (int3 at byte 0)' };
  if (f.bootFinal && same(bytes, f.bootFinal)) return { kind: 'boot-patched', text: 'boot-patched' };
  if (f.verdict?.ok) return { kind: 'runtime-patched', text: `runtime-patched (matches pv_ops: ${f.verdict.how})` };
  const expected = f.verdict?.expected ?? f.bootFinal;
  return { kind: 'other', text: `other (does not match pv_ops${expected ? `; expected ${hexBytes(expected)}` : ''})` };
}

export interface ListingLine {
  address: bigint;
  bytes: Uint8Array;
  text: string;
  /** symbol+offset of the address ('' when no symbol covers it). */
  symbol: string;
  /** Set on the first instruction of a paravirt site. */
  site?: { op: string; len: number; state: SiteState };
  /** Inside a site, after its first instruction. */
  inSite?: boolean;
}

export interface ListingOptions {
  /** Bytes at an address; may return fewer than asked (end of a section), or none. */
  read: (address: bigint, len: number) => Uint8Array;
  start: bigint;
  /** Instructions to list at most. */
  count: number;
  /** List no instruction at or past this address. */
  end?: bigint;
  symbols: SymbolTable | null;
  /** Paravirt sites, any order. */
  sites: readonly PvSite[];
  siteFacts: (site: PvSite, bytes: Uint8Array) => SiteFacts;
  syntax?: 'gas' | 'intel';
}

/** Decodes forward from `start`: one line per instruction. */
export function listing(o: ListingOptions): ListingLine[] {
  const byAddr = new Map(o.sites.map((s) => [s.address, s]));
  const out: ListingLine[] = [];
  let a = o.start;
  let siteEnd = -1n;
  while (out.length < o.count && (o.end === undefined || a < o.end)) {
    let want = 16;
    if (o.end !== undefined && o.end - a < 16n) want = Number(o.end - a);
    const buf = o.read(a, want);
    if (buf.length === 0) break;
    const d = disassemble(buf, a, o.syntax ?? 'gas');
    const len = Math.max(1, Math.min(d.len, buf.length));
    const line: ListingLine = {
      address: a,
      bytes: buf.slice(0, len),
      text: annotate(d.text, o.symbols),
      symbol: o.symbols ? symbolOf(o.symbols, a) : '',
    };
    const site = byAddr.get(a);
    if (site) {
      const sb = o.read(a, site.len);
      line.site = { op: site.op, len: site.len, state: siteState(site, sb, o.siteFacts(site, sb)) };
      siteEnd = a + BigInt(site.len);
    } else if (a < siteEnd) {
      line.inSite = true;
    }
    out.push(line);
    a += BigInt(len);
  }
  return out;
}

function symbolOf(symbols: SymbolTable, a: bigint): string {
  const f = symbols.format(a);
  return f.startsWith('0x') ? '' : f;
}

/** A reader over an image's loaded sections: never past a section's end, nothing outside them. */
export function imageReader(img: KernelImage): (address: bigint, len: number) => Uint8Array {
  return (address, len) => {
    const s = img.sections.find((x) => x.loaded && address >= x.address && address < x.address + BigInt(x.size));
    if (!s) return new Uint8Array(0);
    const n = Math.min(len, Number(s.address + BigInt(s.size) - address));
    return img.read(address, n);
  };
}

export interface FormatListingOptions {
  /** Marks the line at this address with "=>" (the console's current RIP). */
  mark?: bigint;
  /** Prints "<symbol>:" headers where a symbol starts, as objdump does (off by default: every line names its symbol+offset). */
  headers?: boolean;
}

/** The listing as text, objdump style, site annotations at the end of the line. */
export function formatListing(lines: readonly ListingLine[], o: FormatListingOptions = {}): string {
  const out: string[] = [];
  const bytesWidth = Math.min(24, Math.max(...lines.map((l) => l.bytes.length * 3), 6));
  const textWidth = Math.max(...lines.map((l) => l.text.length), 10);
  const symWidth = Math.max(...lines.map((l) => 17 + (l.symbol ? l.symbol.length + 3 : 0)));
  for (const l of lines) {
    if (o.headers === true && l.symbol && !l.symbol.includes('+')) out.push(`${o.mark !== undefined ? '   ' : ''}${l.address.toString(16)} <${l.symbol}>:`);
    const mark = o.mark === undefined ? '' : l.address === o.mark ? '=> ' : '   ';
    const where = `${l.address.toString(16)}${l.symbol ? ` <${l.symbol}>` : ''}:`;
    let note = '';
    if (l.site) note = `   # pv site ${l.site.op} (${l.site.len} bytes): ${l.site.state.text}`;
    else if (l.inSite) note = '   #   (rest of the site)';
    out.push(`${mark}${where.padEnd(symWidth)}  ${hexBytes(l.bytes).padEnd(bytesWidth)}  ${note ? l.text.padEnd(textWidth) : l.text}${note}`.trimEnd());
  }
  return out.join('\n');
}

/**
 * Site facts from an image file: the boot-patched bytes for its pv_ops, and the
 * check `verify` makes. Boot patching is computed once, and only when a listed site
 * does not hold the original call (it is a pass over every site of the image).
 */
export function imageSiteFacts(img: KernelImage): (site: PvSite, bytes: Uint8Array) => SiteFacts {
  let boot: Map<bigint, Uint8Array> | undefined;
  const pv = new PvOps(img);
  return (site, bytes) => {
    const facts: SiteFacts = { pvOpsAddress: img.pvOps.address };
    if (bytes[0] === 0xff && bytes[1] === 0x15) return facts;
    boot ??= bootPatchImage(img).writes;
    facts.bootFinal = boot.get(site.address);
    if (facts.bootFinal) facts.verdict = compareSite(site, bytes, facts.bootFinal, pv.choice(site.op, pv.initialTarget(site.op)));
    return facts;
  };
}
