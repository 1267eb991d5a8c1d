// Writing output files, the one way every output is written (patched images, traces,
// bench results): into a temporary file beside the target, renamed over it only when
// complete, so a failed or interrupted write leaves the target as it was and no
// partial file. Also the guard that an output never names one of the inputs.
//
// Errors here are the user's (a directory they cannot write to, a full disk, an
// output that is an input): OutputError, which the CLI reports as exit status 2
// with the path.

import { closeSync, existsSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from 'fs';
import { basename, dirname, join, relative, resolve, sep } from 'path';
import { FIXTURES_DIR } from './fixture-image';

export class OutputError extends Error {}

function why(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ?? err.message ?? String(e);
}

/** An output being written: a temporary file until commit() renames it over `path`. */
export class OutputFile {
  readonly tmp: string;
  private fd: number | null;

  constructor(readonly path: string, opts: { copyOf?: string } = {}) {
    this.tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
    try {
      this.fd = openSync(this.tmp, 'w');
    } catch (e) {
      throw new OutputError(`${path}: cannot write here (${why(e)})`);
    }
    if (opts.copyOf !== undefined) {
      try {
        const src = openSync(opts.copyOf, 'r');
        try {
          const buf = Buffer.allocUnsafe(1 << 20);
          let pos = 0;
          for (;;) {
            const n = readSync(src, buf, 0, buf.length, pos);
            if (n === 0) break;
            this.write(buf.subarray(0, n));
            pos += n;
          }
        } finally {
          closeSync(src);
        }
      } catch (e) {
        this.abort();
        throw e instanceof OutputError ? e : new OutputError(`${path}: cannot copy ${opts.copyOf} (${why(e)})`);
      }
    }
  }

  /** Appends (or, with `at`, writes at a file offset). */
  write(data: Uint8Array | string, at?: number): void {
    if (this.fd === null) throw new OutputError(`${this.path}: written after commit or abort`);
    try {
      if (typeof data === 'string') writeSync(this.fd, data, at ?? null);
      else writeSync(this.fd, data, 0, data.length, at ?? null);
    } catch (e) {
      this.abort();
      throw new OutputError(`${this.path}: write failed (${why(e)}); nothing written`);
    }
  }

  /** Closes and renames the temporary file over the target. */
  commit(): void {
    if (this.fd === null) throw new OutputError(`${this.path}: committed twice or after abort`);
    try {
      closeSync(this.fd);
      this.fd = null;
      renameSync(this.tmp, this.path);
    } catch (e) {
      this.abort();
      throw new OutputError(`${this.path}: cannot write (${why(e)}); nothing written`);
    }
  }

  /** Drops the temporary file; the target stays as it was. Safe to call twice. */
  abort(): void {
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {
        // Already unusable; the file goes below either way.
      }
      this.fd = null;
    }
    rmSync(this.tmp, { force: true });
  }
}

/** Writes whole files: all are renamed into place only once every one is written. */
export function writeOutputs(files: { path: string; data: Uint8Array | string }[]): void {
  const open: OutputFile[] = [];
  try {
    for (const f of files) {
      const o = new OutputFile(f.path);
      open.push(o);
      o.write(f.data);
    }
    for (const o of open) o.commit();
  } catch (e) {
    for (const o of open) o.abort();
    throw e;
  }
}

/** Writes one whole file through a temporary file. */
export function writeOutput(path: string, data: Uint8Array | string): void {
  writeOutputs([{ path, data }]);
}

function sameFile(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  if (!existsSync(a) || !existsSync(b)) return false;
  const sa = statSync(a);
  const sb = statSync(b);
  return sa.dev === sb.dev && sa.ino === sb.ino;
}

/**
 * Refuses outputs that would overwrite an input of the same command (`inputs`, each
 * with what it is) or a fixture committed with textpoke (`fixtures/`): overwriting
 * them loses the very file the run was about.
 */
export function refuseOverwritingInputs(what: string, outputs: readonly string[], inputs: readonly { path: string; what: string }[]): void {
  for (const out of outputs) {
    for (const inp of inputs) {
      if (sameFile(out, inp.path)) throw new OutputError(`${what} ${out}: is the ${inp.what} (${inp.path}); refusing to overwrite an input`);
    }
    const rel = relative(FIXTURES_DIR, resolve(out));
    if (existsSync(out) && rel !== '' && !rel.startsWith('..') && !rel.startsWith(sep) && !rel.includes(':')) {
      throw new OutputError(`${what} ${out}: is a fixture committed with textpoke; refusing to overwrite it (write elsewhere)`);
    }
  }
}
