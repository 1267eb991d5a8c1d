// Assembling with GNU binutils (as, ld, objcopy, nm): the fixture kernels and the
// tests' guest snippets are real assembler source, not hand-written bytes. Each call
// works in a private temporary directory.

import { execFileSync } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

export interface Section {
  name: string;
  address: bigint;
  size: number;
  /** False for NOBITS sections (.bss): mapped zeroed, not stored in the blob. */
  loaded: boolean;
}

export interface Assembled {
  /** Bytes from the lowest loaded address to the end of the last loaded section. */
  bytes: Uint8Array;
  base: bigint;
  sections: Section[];
  symbols: Map<string, bigint>;
  /** Absolute symbols (`.set NAME, value` exported with .globl): constants, struct offsets. */
  absolutes: Map<string, bigint>;
}

function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} failed: ${(err.stderr ?? err.message).trim()}`);
  }
}

/**
 * Assembles and links `source`. With `linkerScript`, that script places the sections;
 * otherwise .text starts at `base` and everything else follows it.
 */
export function assemble(source: string, opts: { base?: bigint; linkerScript?: string; name?: string; includeDir?: string } = {}): Assembled {
  const dir = mkdtempSync(join(tmpdir(), 'textpoke-gas-'));
  try {
    const name = opts.name ?? 'snippet';
    writeFileSync(join(dir, `${name}.S`), source);
    run('as', ['--64', ...(opts.includeDir ? ['-I', opts.includeDir] : []), '-o', `${name}.o`, `${name}.S`], dir);
    const ldArgs = ['-m', 'elf_x86_64', '--no-warn-rwx-segments', '-nostdlib', '-static', '-o', `${name}.elf`];
    if (opts.linkerScript) {
      writeFileSync(join(dir, `${name}.ld`), opts.linkerScript);
      ldArgs.push('-T', `${name}.ld`);
    } else {
      ldArgs.push('-Ttext', '0x' + (opts.base ?? 0x401000n).toString(16), '-e', '0');
    }
    ldArgs.push(`${name}.o`);
    run('ld', ldArgs, dir);
    const sections = readSections(run('readelf', ['-SW', `${name}.elf`], dir));
    const symbols = new Map<string, bigint>();
    const absolutes = new Map<string, bigint>();
    for (const line of run('nm', ['-n', `${name}.elf`], dir).split('\n')) {
      const m = /^([0-9a-f]+) (\S) (\S+)$/.exec(line.trim());
      if (!m) continue;
      if (m[2] === 'A' || m[2] === 'a') absolutes.set(m[3], BigInt('0x' + m[1]));
      else symbols.set(m[3], BigInt('0x' + m[1]));
    }
    const loaded = sections.filter((s) => s.loaded && s.size > 0);
    if (loaded.length === 0) return { bytes: new Uint8Array(0), base: opts.base ?? 0n, sections, symbols, absolutes };
    const base = loaded.reduce((a, s) => (s.address < a ? s.address : a), loaded[0].address);
    const end = loaded.reduce((a, s) => (s.address + BigInt(s.size) > a ? s.address + BigInt(s.size) : a), 0n);
    const bytes = new Uint8Array(Number(end - base));
    for (const s of loaded) {
      run('objcopy', ['-O', 'binary', `--only-section=${s.name}`, `${name}.elf`, `${name}.${s.name.replace(/[^\w]/g, '_')}.bin`], dir);
      const b = readFileSync(join(dir, `${name}.${s.name.replace(/[^\w]/g, '_')}.bin`));
      bytes.set(b.subarray(0, s.size), Number(s.address - base));
    }
    return { bytes, base, sections, symbols, absolutes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function readSections(readelf: string): Section[] {
  const out: Section[] = [];
  for (const line of readelf.split('\n')) {
    // [Nr] Name Type Address Off Size ES Flg Lk Inf Al
    const m = /^\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*)\s+\d+/.exec(line);
    if (!m) continue;
    const [, name, type, addr, size, flags] = m;
    if (!flags.includes('A')) continue; // not allocated at run time
    out.push({ name, address: BigInt('0x' + addr), size: parseInt(size, 16), loaded: type !== 'NOBITS' });
  }
  return out;
}

/** Assembles an AT&T-syntax snippet and returns its bytes (for tests of single instructions). */
export function asmBytes(source: string, base = 0x401000n): Uint8Array {
  return assemble(`.text\n${source}\n`, { base }).bytes;
}
