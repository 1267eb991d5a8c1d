// Symbol table: name <-> address, and address -> symbol+offset for reports and
// listings. Kept sorted lazily; lookups are binary searches.

export interface SymbolEntry {
  name: string;
  address: bigint;
  /** Size in bytes when known (0 = unknown: extends to the next symbol). */
  size: number;
}

export class SymbolTable {
  private entries: SymbolEntry[] = [];
  private readonly byName = new Map<string, SymbolEntry>();
  private sorted = true;

  add(name: string, address: bigint, size = 0): void {
    const e = { name, address: BigInt.asUintN(64, address), size };
    if (!this.byName.has(name)) this.byName.set(name, e);
    this.entries.push(e);
    this.sorted = false;
  }

  get size(): number {
    return this.byName.size;
  }

  resolve(name: string): bigint | undefined {
    return this.byName.get(name)?.address;
  }

  entry(name: string): SymbolEntry | undefined {
    return this.byName.get(name);
  }

  names(): IterableIterator<string> {
    return this.byName.keys();
  }

  /** Every entry, aliases and repeated names included (symbol files want them all). */
  all(): readonly SymbolEntry[] {
    return this.entries;
  }

  private sort(): void {
    if (this.sorted) return;
    this.entries.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.name < b.name ? -1 : 1));
    this.sorted = true;
  }

  /** The symbol at or below `addr` (within its size when known), or undefined. */
  lookup(addr: bigint): { name: string; offset: bigint; address: bigint } | undefined {
    this.sort();
    const a = BigInt.asUintN(64, addr);
    const es = this.entries;
    let lo = 0;
    let hi = es.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (es[mid].address <= a) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (best < 0) return undefined;
    // Prefer the first name at that address (aliases sort by name).
    let k = best;
    while (k > 0 && es[k - 1].address === es[best].address) k--;
    const e = es[k];
    const off = a - e.address;
    if (e.size > 0 && off >= BigInt(e.size)) return undefined;
    if (off > 0x100000n) return undefined;
    return { name: e.name, offset: off, address: e.address };
  }

  /** "name+0x1f" or the bare hex address when no symbol covers it. */
  format(addr: bigint): string {
    const s = this.lookup(addr);
    if (!s) return '0x' + BigInt.asUintN(64, addr).toString(16);
    return s.offset === 0n ? s.name : `${s.name}+0x${s.offset.toString(16)}`;
  }
}
