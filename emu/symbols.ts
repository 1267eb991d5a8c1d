// Symbol table: name <-> address, and address -> symbol+offset for reports and
// listings. Kept sorted lazily; lookups are binary searches. A name can label several
// addresses (a real kernel has 12 static functions called type_show): `resolve` gives
// the first added, `pick` lets a user choose one with name@N and says how many there are.

export interface SymbolEntry {
  name: string;
  address: bigint;
  /** Size in bytes when known (0 = unknown: extends to the next symbol). */
  size: number;
}

export class SymbolTable {
  private entries: SymbolEntry[] = [];
  private readonly byName = new Map<string, SymbolEntry>();
  /** Every address of a name that labels more than one, in the order added. */
  private readonly dups = new Map<string, bigint[]>();
  private sorted = true;

  add(name: string, address: bigint, size = 0): void {
    const e = { name, address: BigInt.asUintN(64, address), size };
    const first = this.byName.get(name);
    if (!first) this.byName.set(name, e);
    else if (first.address !== e.address) {
      const list = this.dups.get(name) ?? [first.address];
      if (!list.includes(e.address)) list.push(e.address);
      this.dups.set(name, list);
    }
    this.entries.push(e);
    this.sorted = false;
  }

  /** Adds every entry of `other` (each address of a repeated name too), where `keep` says so. */
  addAll(other: SymbolTable, keep: (name: string) => boolean = () => true): void {
    for (const e of other.entries) if (keep(e.name)) this.add(e.name, e.address, e.size);
  }

  /** Every address `name` labels, lowest first. */
  addresses(name: string): bigint[] {
    const d = this.dups.get(name);
    if (d) return [...d].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const e = this.byName.get(name);
    return e ? [e.address] : [];
  }

  /**
   * A name as a user writes it: "name", or "name@N" for the Nth of the addresses the
   * name labels (1-based, lowest address first). `count` says how many there are, so
   * the caller can warn when a bare name was ambiguous; `address` is undefined when the
   * name is unknown or N is out of range.
   */
  pick(text: string): { name: string; address: bigint | undefined; index: number; count: number } {
    if (this.byName.has(text)) {
      const all = this.addresses(text);
      const first = this.byName.get(text)!.address;
      return { name: text, address: first, index: all.indexOf(first) + 1, count: all.length };
    }
    const m = /^(.+)@(\d+)$/.exec(text);
    if (!m) return { name: text, address: undefined, index: 0, count: 0 };
    const all = this.addresses(m[1]);
    const n = Number(m[2]);
    return { name: m[1], address: n >= 1 && n <= all.length ? all[n - 1] : undefined, index: n, count: all.length };
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
