// System.map parsing: `nm -n` output of vmlinux, one `<hex address> <type> <name>`
// per line (e.g. `ffffffff81000000 T _text`). Parsed in one pass over the text with
// indexOf, since a kernel's map has ~100k-300k lines; the result feeds the emulator's
// SymbolTable, plus a typed list for callers that need symbol kinds (text vs data).

import * as fs from 'fs';
import * as path from 'path';
import { SymbolTable } from '../../emu/symbols';
import { LoadError } from './elf';

export interface MapSymbol {
  name: string;
  address: bigint;
  /** nm type letter: T/t text, D/d data, R/r read-only, B/b bss, W/w weak, A absolute, V … */
  type: string;
}

export interface SystemMap {
  symbols: SymbolTable;
  /** Every line, in file order (System.map is sorted by address). */
  entries: MapSymbol[];
}

/** True for nm's text-symbol types (T, t, and weak W/w, which in vmlinux are functions). */
export function isTextType(type: string): boolean {
  return type === 'T' || type === 't' || type === 'W' || type === 'w';
}

const HEX = /^[0-9a-fA-F]{1,16}$/;

function describe(line: string): string {
  return line.length > 60 ? JSON.stringify(line.slice(0, 60) + '…') : JSON.stringify(line);
}

/** Parses System.map text; `file` names the source in errors. */
export function parseSystemMap(text: string, file = 'System.map'): SystemMap {
  const symbols = new SymbolTable();
  const entries: MapSymbol[] = [];
  let pos = 0;
  let lineNo = 0;
  const n = text.length;
  while (pos < n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    lineNo++;
    let line = text.slice(pos, end);
    pos = end + 1;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.length === 0) continue;
    const s1 = line.indexOf(' ');
    const s2 = s1 < 0 ? -1 : line.indexOf(' ', s1 + 1);
    const addr = s1 < 0 ? '' : line.slice(0, s1);
    const type = s2 < 0 ? '' : line.slice(s1 + 1, s2);
    const name = s2 < 0 ? '' : line.slice(s2 + 1);
    if (!HEX.test(addr) || type.length !== 1 || name.length === 0 || name.includes(' ') || name.includes('\t')) {
      if (line.includes('The real System.map is in')) {
        throw new LoadError(`${file}: line ${lineNo}: this is Debian's stub System.map; the real one is in the linux-image-<version>-dbg package`);
      }
      throw new LoadError(`${file}: line ${lineNo}: expected '<hex address> <type letter> <name>', got ${describe(line)}`);
    }
    // Two 32-bit halves are much cheaper than BigInt('0x…') per line.
    const cut = addr.length > 8 ? addr.length - 8 : 0;
    const lo = parseInt(addr.slice(cut), 16);
    const hi = cut > 0 ? parseInt(addr.slice(0, cut), 16) : 0;
    const address = (BigInt(hi) << 32n) | BigInt(lo);
    symbols.add(name, address);
    entries.push({ name, address, type });
  }
  if (entries.length === 0) throw new LoadError(`${file}: no symbols`);
  return { symbols, entries };
}

/** Reads and parses a System.map file. */
export function loadSystemMap(file: string): SystemMap {
  let text: string;
  try {
    text = fs.readFileSync(file, 'latin1');
  } catch (e) {
    throw new LoadError(`${file}: cannot read: ${(e as Error).message}`);
  }
  return parseSystemMap(text, path.basename(file));
}
