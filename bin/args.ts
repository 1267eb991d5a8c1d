// Parsing of argument values shared by several commands: schedules, --op lists,
// integer ranges and input files. Each error names the option and what it expects.

import { accessSync, constants, existsSync, statSync } from 'fs';
import { dirname, resolve } from 'path';
import type { Schedule } from '../emu/scheduler';
import { parseScenario } from '../kernel-model/scenario/scenario-file';
import type { OpChange } from '../kernel-model/linux/kernel-model';
import { refuseOverwritingInputs } from '../kernel-model/image/output-file';
import { UserError } from './errors';

export function checkInt(v: number | undefined, what: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new UserError(`${what}: expected an integer from ${min} to ${max} (got ${Number.isNaN(v) ? 'something that is not a number' : v})`);
  return v;
}

/** A positive number of seconds (or other real quantity); NaN from yargs is named as such. */
export function checkPositive(v: number | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isFinite(v) || v <= 0) throw new UserError(`${what}: expected a number greater than 0 (got ${Number.isNaN(v) ? 'something that is not a number' : v})`);
  return v;
}

/**
 * --schedule: "rr:<quantum>", "random:<seed>[:<maxQuantum>]", or a JSON schedule as
 * in scenario files ({"kind": "list", "slots": [[0, 10], [1, 5]], …}).
 */
export function parseScheduleArg(text: string, ncpus: number): Schedule {
  const t = text.trim();
  if (t.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(t);
    } catch (e) {
      throw new UserError(`--schedule: not valid JSON (${(e as Error).message})`);
    }
    // The scenario validator checks it field by field, naming what is wrong.
    return parseScenario({ cpus: ncpus, work: Array.from({ length: ncpus }, () => ({ entry: 'workload_idle' })), schedule: json }, '--schedule').schedule;
  }
  const num = (s: string | undefined, what: string, min: number, max: number): number => {
    const v = s !== undefined && /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(v) || v < min || v > max) throw new UserError(`--schedule ${text}: ${what} must be an integer from ${min} to ${max}`);
    return v;
  };
  const [kind, a, b, ...rest] = t.split(':');
  if (rest.length === 0) {
    if ((kind === 'rr' || kind === 'round-robin') && a !== undefined && b === undefined) return { kind: 'round-robin', quantum: num(a, 'the quantum', 1, 1e9) };
    if (kind === 'random' && a !== undefined) return { kind: 'random', seed: num(a, 'the seed', 0, 0xffffffff), maxQuantum: b === undefined ? 4 : num(b, 'maxQuantum', 1, 1e9) };
  }
  throw new UserError(`--schedule: expected rr:<quantum>, random:<seed>[:<maxQuantum>] or a JSON schedule (got "${text}")`);
}

/** --seed N: a random schedule with the scenario's maxQuantum (or 4). */
export function seedSchedule(seed: number, base: Schedule): Schedule {
  checkInt(seed, '--seed', 0, 0xffffffff);
  return { kind: 'random', seed, maxQuantum: base.kind === 'random' ? base.maxQuantum : 4 };
}

export function scheduleOverride(a: { seed?: number; schedule?: string }, base: Schedule, ncpus: number): Schedule | undefined {
  if (a.seed !== undefined && a.schedule !== undefined) throw new UserError('--seed and --schedule: give one or the other');
  if (a.seed !== undefined) return seedSchedule(a.seed, base);
  if (a.schedule !== undefined) return parseScheduleArg(a.schedule, ncpus);
  return undefined;
}

/** --op name=native|paravirt (repeatable). */
export function parseOps(list: readonly string[]): OpChange[] {
  return list.map((x) => {
    const m = /^([^=\s]+)=(native|paravirt)$/.exec(x.trim());
    if (!m) throw new UserError(`--op ${x}: expected <op>=native or <op>=paravirt, e.g. lock.queued_spin_unlock=native`);
    return { op: m[1], mode: m[2] as OpChange['mode'] };
  });
}

/**
 * An input path must name a readable file. Bare names without '/' or '.' are left to
 * the library (fixture names such as "minikernel").
 */
export function inputFile(path: string, what: string): string {
  if (!path.includes('/') && !path.includes('.') && !existsSync(path)) return path;
  if (!existsSync(path)) throw new UserError(`${path}: no such file (${what})`);
  if (!statSync(path).isFile()) throw new UserError(`${path}: not a file (${what})`);
  return path;
}

/**
 * An output path whose directory exists and can be written to, and that names none
 * of `inputs` (checked before any work, so failures write nothing). The write itself
 * still goes through a temporary file (kernel-model/image/output-file.ts).
 */
export function outputFile(path: string, what: string, inputs: readonly { path: string; what: string }[] = []): string {
  const dir = dirname(resolve(path));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`${what} ${path}: directory ${dir} does not exist`);
  if (existsSync(path) && statSync(path).isDirectory()) throw new UserError(`${what} ${path}: is a directory`);
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new UserError(`${what} ${path}: cannot write to ${dir} (${(e as NodeJS.ErrnoException).code ?? 'not writable'})`);
  }
  refuseOverwritingInputs(what, [path], inputs);
  return path;
}
