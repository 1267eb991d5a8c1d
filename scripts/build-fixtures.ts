// Builds the fixture kernels: fixtures/<name>.S -> fixtures/<name>.bin (the loaded
// bytes from the first section's address) and fixtures/<name>.json (the manifest:
// sections, symbols, constants, pv_ops slot names, paravirt sites). Both are
// committed; test/fixtures.test.ts rebuilds them and checks they match.
//
//   npm run fixtures            rebuild every fixture
//   node dist/scripts/build-fixtures.js --check   exit 1 if a committed file differs

import { createHash } from 'crypto';
import { readFileSync, readdirSync, existsSync } from 'fs';
import { join, resolve } from 'path';
import { assemble } from './gas';
import type { FixtureManifest } from '../kernel-model/image/fixture-manifest';
import { writeOutputs } from '../kernel-model/image/output-file';

/** Linux 6.1's .parainstructions record: {u64 instr; u8 type; u8 len; u16 clobbers; u32 pad}. */
const PARAINSTR_RECORD_SIZE = 16;
function parseParainstructions(b: Uint8Array): { instr: bigint; type: number; len: number }[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = [];
  for (let o = 0; o + PARAINSTR_RECORD_SIZE <= b.length; o += PARAINSTR_RECORD_SIZE) {
    out.push({ instr: v.getBigUint64(o, true), type: v.getUint8(o + 8), len: v.getUint8(o + 9) });
  }
  return out;
}

export const FIXTURE_DIR = resolve(__dirname, '..', '..', 'fixtures');

function sha256(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

const hex = (v: bigint): string => '0x' + v.toString(16);

export interface BuiltFixture {
  name: string;
  blob: Uint8Array;
  manifest: FixtureManifest;
}

export function buildFixture(name: string, dir = FIXTURE_DIR): BuiltFixture {
  const source = readFileSync(join(dir, `${name}.S`), 'utf8');
  const script = readFileSync(join(dir, `${name}.ld`), 'utf8');
  const a = assemble(source, { linkerScript: script, name, includeDir: dir });
  const slotNames: string[] = [];
  for (const [sym, v] of a.absolutes) {
    const m = /^PVOP__(\w+?)__(\w+)$/.exec(sym);
    if (m) slotNames[Number(v)] = `${m[1]}.${m[2]}`;
  }
  // A harness that runs beside a real kernel has no paravirt sites of its own.
  const para = a.sections.find((s) => s.name === '.parainstructions');
  const paraBytes = para ? a.bytes.subarray(Number(para.address - a.base), Number(para.address - a.base) + para.size) : new Uint8Array(0);
  if (para && para.size % PARAINSTR_RECORD_SIZE !== 0) throw new Error(`${name}: .parainstructions size ${para.size} is not a multiple of 16`);
  const sites = parseParainstructions(paraBytes).map((r) => ({
    address: hex(r.instr),
    slot: r.type,
    op: slotNames[r.type] ?? `slot${r.type}`,
    len: r.len,
  }));
  const symbols: Record<string, string> = {};
  for (const [k, v] of a.symbols) symbols[k] = hex(v);
  const constants: Record<string, number> = {};
  for (const [k, v] of a.absolutes) if (!k.startsWith('PVOP__')) constants[k] = Number(v);
  const manifest: FixtureManifest = {
    format: 'textpoke-fixture/1',
    name,
    source: `${name}.S`,
    sourceSha256: sha256(source),
    blob: `${name}.bin`,
    blobSha256: sha256(a.bytes),
    base: hex(a.base),
    entry: 'startup_64',
    maxCpus: constants.MAX_CPUS ?? 64,
    sections: a.sections.map((s) => ({ name: s.name, address: hex(s.address), size: s.size, loaded: s.loaded })),
    symbols,
    constants,
    pvOps: { symbol: a.symbols.has('pv_ops') ? 'pv_ops' : '', slots: slotNames },
    sites,
  };
  return { name, blob: a.bytes, manifest };
}

export function fixtureNames(dir = FIXTURE_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.S') && existsSync(join(dir, f.replace(/\.S$/, '.ld'))))
    .map((f) => f.replace(/\.S$/, ''))
    .sort();
}

function main(argv: string[]): number {
  const check = argv.includes('--check');
  let bad = 0;
  for (const name of fixtureNames()) {
    const f = buildFixture(name);
    const json = JSON.stringify(f.manifest, null, 2) + '\n';
    const binPath = join(FIXTURE_DIR, `${name}.bin`);
    const jsonPath = join(FIXTURE_DIR, `${name}.json`);
    if (check) {
      const same =
        existsSync(binPath) &&
        existsSync(jsonPath) &&
        Buffer.compare(readFileSync(binPath), Buffer.from(f.blob)) === 0 &&
        readFileSync(jsonPath, 'utf8') === json;
      process.stdout.write(`${name}: ${same ? 'matches its source' : 'DIFFERS from its source (run npm run fixtures)'}\n`);
      if (!same) bad++;
    } else {
      writeOutputs([{ path: binPath, data: f.blob }, { path: jsonPath, data: json }]);
      process.stdout.write(`${name}: ${f.blob.length} bytes, ${f.manifest.sites.length} paravirt sites\n`);
    }
  }
  return bad ? 1 : 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
