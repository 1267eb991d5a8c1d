// Loading a fixture kernel: the committed blob and its JSON manifest (see
// scripts/build-fixtures.ts). The manifest is validated field by field, and the blob
// against the manifest's size and hash, so a damaged file is named precisely.

import { createHash } from 'crypto';
import { existsSync, readFileSync } from 'fs';
import { basename, dirname, join, resolve } from 'path';
import type { Machine } from '../../emu/machine';
import { SymbolTable } from '../../emu/symbols';
import { parseU64 } from '../../emu/u64';
import type { FixtureManifest } from './fixture-manifest';
import { ImageError, type ImageSection, type KernelImage, type PvSite } from './kernel-image';

export const FIXTURES_DIR = resolve(__dirname, '..', '..', '..', 'fixtures');

function field<T>(obj: unknown, key: string, where: string, check: (v: unknown) => v is T, expected: string): T {
  const v = (obj as Record<string, unknown>)[key];
  if (!check(v)) throw new ImageError(`${where}: field '${key}' must be ${expected} (got ${JSON.stringify(v)?.slice(0, 60)})`);
  return v;
}
const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isArr = (v: unknown): v is unknown[] => Array.isArray(v);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function addr(v: unknown, where: string): bigint {
  const a = typeof v === 'string' ? parseU64(v) : undefined;
  if (a === undefined) throw new ImageError(`${where}: expected an address like "0xffffffff81000000" (got ${JSON.stringify(v)})`);
  return a;
}

export class FixtureImage implements KernelImage {
  readonly kind = 'fixture' as const;
  readonly symbols = new SymbolTable();
  readonly sections: ImageSection[];
  readonly pvOps: { address: bigint; slots: string[] };
  readonly sites: PvSite[];
  readonly constants: Record<string, number>;
  readonly base: bigint;
  readonly entry: string;
  readonly maxCpus: number;

  constructor(
    readonly path: string,
    readonly manifest: FixtureManifest,
    readonly blob: Uint8Array,
  ) {
    this.base = addr(manifest.base, `${path}: field 'base'`);
    this.entry = manifest.entry;
    this.maxCpus = manifest.maxCpus;
    this.sections = manifest.sections.map((s, i) => ({
      name: s.name,
      address: addr(s.address, `${path}: sections[${i}].address`),
      size: s.size,
      loaded: s.loaded,
    }));
    for (const s of this.sections) {
      if (s.loaded && (s.address < this.base || s.address + BigInt(s.size) > this.base + BigInt(blob.length))) {
        throw new ImageError(`${path}: section ${s.name} lies outside the blob (${blob.length} bytes from ${manifest.base}); is the blob truncated?`);
      }
    }
    for (const [k, v] of Object.entries(manifest.symbols)) this.symbols.add(k, addr(v, `${path}: symbols.${k}`));
    this.constants = manifest.constants;
    // An empty symbol: a harness without a pv_ops table of its own.
    const pvAddr = manifest.pvOps.symbol === '' ? 0n : this.symbols.resolve(manifest.pvOps.symbol);
    if (pvAddr === undefined) throw new ImageError(`${path}: pvOps.symbol '${manifest.pvOps.symbol}' is not a symbol`);
    this.pvOps = { address: pvAddr, slots: manifest.pvOps.slots };
    this.sites = manifest.sites.map((s, i) => ({
      address: addr(s.address, `${path}: sites[${i}].address`),
      slot: s.slot,
      op: s.op,
      len: s.len,
    }));
  }

  read(address: bigint, len: number): Uint8Array {
    const off = Number(address - this.base);
    if (off < 0 || off + len > this.blob.length) {
      throw new ImageError(`${this.path}: no bytes at 0x${address.toString(16)} (+${len}) in the blob`);
    }
    return this.blob.slice(off, off + len);
  }

  mapInto(m: Machine): void {
    for (const s of this.sections) {
      m.mem.map(s.address, Math.max(1, s.size));
      if (s.loaded && s.size > 0) m.mem.writeBytes(s.address, this.read(s.address, s.size));
    }
    const text = this.sections.find((s) => s.name === '.text');
    if (text) m.mem.markCode(text.address, text.size);
    m.symbols.addAll(this.symbols);
  }
}

function parseManifest(json: unknown, where: string): FixtureManifest {
  if (!isObj(json)) throw new ImageError(`${where}: expected a JSON object`);
  const format = field(json, 'format', where, isStr, 'a string');
  if (format !== 'textpoke-fixture/1') throw new ImageError(`${where}: field 'format' must be "textpoke-fixture/1" (got "${format}")`);
  field(json, 'name', where, isStr, 'a string');
  field(json, 'blob', where, isStr, 'a file name');
  field(json, 'blobSha256', where, isStr, 'a hex string');
  field(json, 'base', where, isStr, 'an address');
  field(json, 'entry', where, isStr, 'a symbol name');
  field(json, 'maxCpus', where, isNum, 'a number');
  const sections = field(json, 'sections', where, isArr, 'an array');
  sections.forEach((s, i) => {
    const w = `${where}: sections[${i}]`;
    field(s, 'name', w, isStr, 'a string');
    field(s, 'address', w, isStr, 'an address');
    field(s, 'size', w, isNum, 'a number');
    field(s, 'loaded', w, (v): v is boolean => typeof v === 'boolean', 'true or false');
  });
  field(json, 'symbols', where, isObj, 'an object of name: address');
  field(json, 'constants', where, isObj, 'an object of name: number');
  const pv = field(json, 'pvOps', where, isObj, 'an object');
  field(pv, 'symbol', `${where}: pvOps`, (v): v is string => typeof v === 'string', 'a symbol name (or "")');
  field(pv, 'slots', `${where}: pvOps`, isArr, 'an array of op names');
  const sites = field(json, 'sites', where, isArr, 'an array');
  sites.forEach((s, i) => {
    const w = `${where}: sites[${i}]`;
    field(s, 'address', w, isStr, 'an address');
    field(s, 'slot', w, isNum, 'a slot index');
    field(s, 'op', w, isStr, 'an op name');
    field(s, 'len', w, isNum, 'a length');
  });
  return json as unknown as FixtureManifest;
}

/**
 * Loads a fixture from its manifest path, its blob path (the manifest sits beside
 * it), or a bare fixture name ("minikernel").
 */
export function loadFixture(pathOrName: string): FixtureImage {
  let manifestPath = pathOrName;
  if (!pathOrName.includes('/') && !pathOrName.includes('.')) manifestPath = join(FIXTURES_DIR, `${pathOrName}.json`);
  else if (pathOrName.endsWith('.bin')) manifestPath = pathOrName.replace(/\.bin$/, '.json');
  if (!existsSync(manifestPath)) throw new ImageError(`${manifestPath}: no such fixture manifest`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (e) {
    throw new ImageError(`${manifestPath}: not valid JSON (${(e as Error).message})`);
  }
  const manifest = parseManifest(json, manifestPath);
  const blobPath = join(dirname(manifestPath), basename(manifest.blob));
  if (!existsSync(blobPath)) throw new ImageError(`${blobPath}: blob named by ${manifestPath} does not exist`);
  const blob = new Uint8Array(readFileSync(blobPath));
  const sha = createHash('sha256').update(blob).digest('hex');
  if (sha !== manifest.blobSha256) {
    throw new ImageError(`${blobPath}: ${blob.length} bytes whose sha256 does not match the manifest (truncated or changed? rebuild with npm run fixtures)`);
  }
  return new FixtureImage(manifestPath, manifest, blob);
}
