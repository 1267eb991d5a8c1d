// Lock ownership, observed rather than declared: the tracker watches each known lock
// word and records which CPU's write made it locked and whose made it free. Reports
// use it to say which CPU holds what, and the wait-for graph to point a CPU spinning
// on a lock at its holder.

import type { Machine } from '../../emu/machine';

export interface TrackedLock {
  name: string;
  address: bigint;
  owner: number | null;
  acquisitions: number;
  releases: number;
}

type LockState = [owner: number | null, acquisitions: number, releases: number, locked: boolean][];

export class LockTracker {
  readonly locks: TrackedLock[] = [];
  /** Whether each lock word was last seen locked (what the watch compares with). */
  private readonly locked: boolean[] = [];

  constructor(private readonly m: Machine) {
    // Ownership is machine history: it joins snapshots.
    m.addStatePart('locks', {
      saveState: (): LockState => this.locks.map((l, i) => [l.owner, l.acquisitions, l.releases, this.locked[i]]),
      loadState: (s: LockState) => s.forEach(([owner, a, r, locked], i) => {
        Object.assign(this.locks[i], { owner, acquisitions: a, releases: r });
        this.locked[i] = locked;
      }),
    });
    m.spinWaitsFor = (_cpu, reads) => {
      const out = new Set<number>();
      for (const r of reads) {
        const l = this.lockAt(r.addr);
        if (l && l.owner !== null) out.add(l.owner);
      }
      return [...out];
    };
  }

  /** Tracks the lock whose locked byte is at `address` (a qspinlock: byte 0). */
  track(name: string, address: bigint): void {
    const l: TrackedLock = { name, address, owner: null, acquisitions: 0, releases: 0 };
    const i = this.locks.push(l) - 1;
    this.locked[i] = this.m.mem.readU8(address) !== 0;
    this.m.mem.watch(address, 1, (cpu) => {
      const now = this.m.mem.readU8(address) !== 0;
      if (now && !this.locked[i]) {
        l.owner = cpu;
        l.acquisitions++;
      } else if (!now && this.locked[i]) {
        l.owner = null;
        l.releases++;
      }
      this.locked[i] = now;
    });
  }

  lockAt(addr: bigint): TrackedLock | undefined {
    return this.locks.find((l) => addr >= l.address && addr < l.address + 4n);
  }

  heldBy(cpu: number): string[] {
    return this.locks.filter((l) => l.owner === cpu).map((l) => l.name);
  }
}
