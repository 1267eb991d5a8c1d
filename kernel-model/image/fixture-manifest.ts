// The JSON manifest committed beside each fixture blob (written by
// scripts/build-fixtures.ts): where each section goes, every symbol, the constants
// the source exports (per-CPU and protocol-state field offsets, vectors), the pv_ops
// slot names and the paravirt site table.

export interface FixtureManifest {
  format: 'textpoke-fixture/1';
  name: string;
  source: string;
  sourceSha256: string;
  blob: string;
  blobSha256: string;
  /** Address of the blob's first byte. */
  base: string;
  entry: string;
  maxCpus: number;
  sections: { name: string; address: string; size: number; loaded: boolean }[];
  symbols: Record<string, string>;
  constants: Record<string, number>;
  pvOps: { symbol: string; slots: string[] };
  sites: { address: string; slot: number; op: string; len: number }[];
}
