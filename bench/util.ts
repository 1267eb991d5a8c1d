// Shared pieces of the benchmarks: options, the clock, and small statistics. Timing is
// wall time from process.hrtime.bigint() (monotonic, nanoseconds), never Date.

export interface BenchOptions {
  /** Short runs for a smoke test: the figures are not meaningful, only that the code runs. */
  quick: boolean;
  /** Timed trials per figure; tables report the median (and the best where it helps). */
  trials: number;
  /** Minimum timed seconds per trial of a throughput figure. */
  minSeconds: number;
  /** Progress lines (stderr in the CLI), so stdout stays the table or the JSON. */
  log: (line: string) => void;
}

export function benchOptions(quick: boolean, log: (line: string) => void = () => {}): BenchOptions {
  // Three trials of half a second each put every throughput figure over 1 s of timed
  // running, which averages out V8's tiering and the scheduler noise of a 2-core VM.
  return quick ? { quick, trials: 1, minSeconds: 0.02, log } : { quick, trials: 3, minSeconds: 0.5, log };
}

export const now = (): bigint => process.hrtime.bigint();

/** Seconds from `from` to `to` (default: now). */
export function seconds(from: bigint, to: bigint = now()): number {
  return Number(to - from) / 1e9;
}

/** Runs `fn` and returns its value with the seconds it took. */
export function timed<T>(fn: () => T): { value: T; seconds: number } {
  const t0 = now();
  const value = fn();
  return { value, seconds: seconds(t0) };
}

export async function timedAsync<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const t0 = now();
  const value = await fn();
  return { value, seconds: seconds(t0) };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Runs `trial` `n` times (after `warm` untimed runs) and returns the seconds of each
 * run and their median. For fixed workloads whose single run is the figure.
 */
export function repeatTimed<T>(n: number, warm: number, trial: () => T): { last: T; runs: number[]; median: number } {
  let last: T | undefined;
  for (let i = 0; i < warm; i++) last = trial();
  const runs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = timed(trial);
    runs.push(t.seconds);
    last = t.value;
  }
  return { last: last as T, runs, median: median(runs) };
}

/**
 * The exponent k in time ∝ x^k fitted through the first and last points (log-log
 * slope): 1 means linear growth, 2 quadratic. NaN when it cannot be computed.
 */
export function growthExponent(points: readonly { x: number; y: number }[]): number {
  const p = points.filter((q) => q.x > 0 && q.y > 0);
  if (p.length < 2) return NaN;
  const a = p[0];
  const b = p[p.length - 1];
  if (a.x === b.x) return NaN;
  return Math.log(b.y / a.y) / Math.log(b.x / a.x);
}

/** Ratio per doubling of x between two points: (y1/y0)^(1/log2(x1/x0)). */
export function perDoubling(x0: number, y0: number, x1: number, y1: number): number {
  if (!(x0 > 0 && x1 > x0 && y0 > 0 && y1 > 0)) return NaN;
  return Math.pow(y1 / y0, 1 / Math.log2(x1 / x0));
}

/** Thrown from a progress callback to end a run that exceeds its time budget. */
export class BudgetExceeded extends Error {
  constructor(readonly budgetSeconds: number) {
    super(`over the time budget of ${budgetSeconds} s`);
    this.name = 'BudgetExceeded';
  }
}

/**
 * A run's clock, sampled from the machine's progress callback (after every scheduler
 * slice): machine step -> wall time, so the wall time between two steps of a run (the
 * patch's start and end events) can be read afterwards. It also enforces a budget:
 * once `budgetSeconds` have passed, the next sample throws BudgetExceeded.
 */
export class Timeline {
  private readonly t0 = now();
  private readonly limit: bigint;
  private readonly steps: number[] = [];
  private readonly nanos: number[] = [];

  constructor(readonly budgetSeconds: number) {
    this.limit = BigInt(Math.round(budgetSeconds * 1e9));
  }

  /** The progress callback. One clock read per slice: a few percent at quantum 50. */
  readonly onProgress = (steps: number): void => {
    const dt = now() - this.t0;
    this.steps.push(steps);
    this.nanos.push(Number(dt));
    if (dt > this.limit) throw new BudgetExceeded(this.budgetSeconds);
  };

  /** Wall seconds from the first sample at or after step `a` to the first at or after step `b`; NaN without samples. */
  secondsBetween(a: number, b: number): number {
    const at = (s: number): number => {
      let lo = 0;
      let hi = this.steps.length - 1;
      if (hi < 0 || this.steps[hi] < s) return NaN;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.steps[mid] >= s) hi = mid;
        else lo = mid + 1;
      }
      return this.nanos[lo];
    };
    return (at(b) - at(a)) / 1e9;
  }
}

export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
