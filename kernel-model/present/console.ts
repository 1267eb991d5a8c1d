// The stepping console's command interpreter: one command line in, text (and the
// same facts as JSON-ready data) out, no I/O, so it can be driven by the CLI's
// readline loop, by a pipe, by scripted --cmd lists or by tests. It works on a
// prepared scenario run: the machine, the kernel model and its injections as
// `prepareScenario` set them up, so `continue` runs exactly what `run` would.

import { readFileSync } from 'fs';
import { basename } from 'path';
import type { Cpu } from '../../emu/cpu';
import { GPR_NAMES } from '../../emu/regs';
import { readFlags, CF, PF, AF, ZF, SF, TF, IF, DF, OF } from '../../emu/flags';
import { PageFault } from '../../emu/memory';
import { ProbeSet } from '../../emu/probe';
import type { SymbolTable } from '../../emu/symbols';
import { loadScenario, parseScenario, type Scenario } from '../scenario/scenario-file';
import { prepareScenario, explain, vectorNamer, type RunOverrides, type ScenarioRun, type RunReport } from '../scenario/run';
import { machineReport, contextStack } from '../scenario/report';
import { PATCH_STATE_NAMES } from '../linux/kernel-layout';
import { ImageError, type PvSite } from '../image/kernel-image';
import { verifySite } from '../linux/verify-site';
import { hexBytes } from '../linux/kernel-context';
import { listing, formatListing, type ListingLine, type SiteFacts } from './listing';
import { TraceProbe, formatTraceLine, type TraceLine } from '../scenario/trace';
import { formatRunReport } from './demo';
import { Unwinder, formatBacktrace } from '../scenario/backtrace';

/** A command's answer: text for people, data for --json; `error` for a command that failed. */
export interface ConsoleReply {
  text: string;
  data: unknown;
  error?: string;
  quit?: boolean;
  /** Things the command did that the user may not have meant (an ambiguous symbol). */
  warnings?: string[];
}

/** Bad console input (unknown command, bad argument): reported, the session goes on. */
export class ConsoleError extends Error {}

export interface ConsoleOptions {
  syntax?: 'gas' | 'intel';
}

interface Breakpoint {
  id: number;
  address: bigint;
  where: string;
  remove: () => void;
}

interface Command {
  usage: string;
  help: string;
  run: (args: string[], fmt: string) => ConsoleReply;
}

const FLAG_NAMES: [number, string][] = [
  [CF, 'CF'], [PF, 'PF'], [AF, 'AF'], [ZF, 'ZF'], [SF, 'SF'], [TF, 'TF'], [IF, 'IF'], [DF, 'DF'], [OF, 'OF'],
];

const hex = (v: bigint | number): string => '0x' + v.toString(16);
const hex16 = (v: bigint): string => '0x' + v.toString(16).padStart(16, '0');

function parseIntArg(s: string | undefined, what: string, min: number, max: number): number {
  if (s === undefined) throw new ConsoleError(`${what}: missing`);
  const v = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? parseInt(s, 10) : NaN;
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new ConsoleError(`${what}: expected an integer from ${min} to ${max}, got '${s}'`);
  return v;
}

/**
 * An address expression: a symbol (name@N for the Nth of several with one name), a
 * hex address, a register of the current CPU ($rip, $rsp, $rdi …), each optionally
 * followed by +/- an offset. A bare name that labels several symbols resolves to the
 * first and adds a line to `warnings`.
 */
export function resolveAddress(expr: string, symbols: SymbolTable, cpu?: Cpu, warnings?: string[]): bigint {
  const m = /^(.+?)\s*([+-])\s*(0x[0-9a-f]+|\d+)$/i.exec(expr.trim());
  if (m) {
    const base = resolveAddress(m[1], symbols, cpu, warnings);
    const off = BigInt(m[3]);
    return BigInt.asUintN(64, m[2] === '+' ? base + off : base - off);
  }
  const e = expr.trim();
  if (/^0x[0-9a-f]+$/i.test(e)) return BigInt.asUintN(64, BigInt(e));
  if (e.startsWith('$')) {
    const r = e.slice(1).toLowerCase();
    if (!cpu) throw new ConsoleError(`${e}: registers need a CPU`);
    if (r === 'rip' || r === 'pc') return cpu.rip;
    const i = (GPR_NAMES as readonly string[]).indexOf(r);
    if (i < 0) throw new ConsoleError(`${e}: unknown register (expected one of $rip, ${GPR_NAMES.map((g) => '$' + g).join(', ')})`);
    return cpu.getReg(i);
  }
  const p = symbols.pick(e);
  if (p.address === undefined) {
    if (p.count > 0) throw new ConsoleError(`${e}: '${p.name}' names ${p.count} symbols; give ${p.name}@1 to ${p.name}@${p.count} (lowest address first)`);
    throw new ConsoleError(`unknown symbol '${e}' (give a symbol, a 0x… address or a $register)`);
  }
  if (p.count > 1 && p.name === e) {
    warnings?.push(`'${e}' names ${p.count} symbols; using the one at 0x${p.address.toString(16)} (${e}@${p.index}); give ${e}@1 to ${e}@${p.count} or an address for another`);
  }
  return p.address;
}

/** Which file a target names: a scenario, or a kernel image to boot with idle CPUs. */
export function consoleScenario(target: string, cpus = 2): { scenario: Scenario; file: string } {
  if (target.endsWith('.json')) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(target, 'utf8'));
    } catch {
      // loadScenario names the file and the problem.
      return { scenario: loadScenario(target), file: target };
    }
    const isFixture = typeof json === 'object' && json !== null && (json as Record<string, unknown>).format === 'textpoke-fixture/1';
    if (!isFixture) return { scenario: loadScenario(target), file: target };
  }
  // Through the validator, so every field gets its default as in a scenario file.
  const scenario = parseScenario(
    {
      name: basename(target).replace(/\.(json|bin)$/, ''),
      description: `${target} booted with idle CPUs`,
      image: target,
      cpus,
      work: Array.from({ length: cpus }, () => ({ entry: 'workload_idle' })),
      schedule: { kind: 'round-robin', quantum: 100 },
      maxSteps: 10_000_000,
    },
    target,
  );
  return { scenario, file: target };
}

/** Loads a scenario (or boots an image) and returns a console on it. */
export function openConsole(target: string, opts: ConsoleOptions & { cpus?: number; overrides?: RunOverrides } = {}): StepConsole {
  const { scenario, file } = consoleScenario(target, opts.cpus);
  return new StepConsole(prepareScenario(scenario, opts.overrides ?? {}, file), opts);
}

export class StepConsole {
  readonly prompt = '(textpoke) ';
  /** The CPU commands default to: the last one named. */
  cpu = 0;
  private readonly breakpoints: Breakpoint[] = [];
  private nextBreakpoint = 1;
  /** Warnings of the command being run (see ConsoleReply.warnings). */
  private warnings: string[] = [];
  /** Each site as boot patching left it: the machine has not run yet when the console opens. */
  private readonly bootBytes: Map<bigint, Uint8Array>;
  private readonly commands: Map<string, Command>;
  private readonly aliases = new Map<string, string>([
    ['s', 'step'], ['si', 'step'], ['stepi', 'step'], ['c', 'continue'], ['cont', 'continue'], ['b', 'break'],
    ['d', 'delete'], ['r', 'regs'], ['info', 'regs'], ['q', 'quit'], ['exit', 'quit'], ['backtrace', 'bt'], ['?', 'help'],
  ]);

  constructor(
    readonly run: ScenarioRun,
    private readonly opts: ConsoleOptions = {},
  ) {
    this.bootBytes = new Map(run.img.sites.map((x) => [x.address, run.m.mem.readBytes(x.address, x.len)]));
    this.commands = new Map<string, Command>([
      ['step', { usage: 'step [cpu] [n]', help: 'run n instructions (default 1) on one CPU (default: the last one named); the others stay put', run: (a) => this.step(a) }],
      ['continue', { usage: 'continue', help: "run the scenario's schedule until a breakpoint, the end, a deadlock or the step limit", run: () => this.cont() }],
      ['regs', { usage: 'regs [cpu]', help: 'general registers, rip and rflags (decoded) of a CPU', run: (a) => this.regs(a) }],
      ['x', { usage: 'x/Nxb <addr>', help: 'examine memory: N units of b (1 byte), h (2), w (4) or g (8) at a symbol, 0x… address or $register (+/- offset)', run: (a, f) => this.examine(a, f) }],
      ['disas', { usage: 'disas [addr] [n]', help: 'disassemble n instructions at addr (default: around the current RIP), pv sites annotated', run: (a) => this.disas(a) }],
      ['break', { usage: 'break [addr|symbol]', help: 'stop any CPU in front of the instruction at addr (no argument: list breakpoints)', run: (a) => this.brk(a) }],
      ['delete', { usage: 'delete <n>', help: 'remove breakpoint n', run: (a) => this.del(a) }],
      ['nmi', { usage: 'nmi <cpu>', help: 'send an NMI to a CPU (taken at its next instruction boundary, or latched while it is in one)', run: (a) => this.nmi(a) }],
      ['irq', { usage: 'irq <cpu> <vector>', help: 'raise a fixed-mode interrupt on a CPU', run: (a) => this.irq(a) }],
      ['cpu', { usage: 'cpu <n>', help: 'select the CPU that step, regs and disas default to', run: (a) => this.selectCpu(a) }],
      ['cpus', { usage: 'cpus', help: 'context stack, RIP and state of each CPU', run: () => this.cpus() }],
      ['state', { usage: 'state', help: 'text_poke_state fields by name, the ack mask in binary, bp_desc and the patch request', run: () => this.state() }],
      ['bt', { usage: 'bt [cpu]', help: "the CPU's guest call stack across its contexts (ORC on real kernels, a stack scan on fixtures; ? marks a frame the scan cannot vouch for)", run: (a) => this.bt(a) }],
      ['where', { usage: 'where', help: 'the wait-for graph: who waits for whom and why, and the cycle if there is one', run: () => this.where() }],
      ['log', { usage: 'log [n]', help: 'the last n kernel-model events and fired injections (default 20)', run: (a) => this.log(a) }],
      ['help', { usage: 'help', help: 'this list', run: () => this.help() }],
      ['quit', { usage: 'quit', help: 'leave the console', run: () => ({ text: '', data: { quit: true }, quit: true }) }],
    ]);
  }

  get machine(): ScenarioRun['m'] {
    return this.run.m;
  }

  /** Runs one command line. Bad input comes back as a reply with `error` set. */
  exec(line: string): ConsoleReply {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return { text: '', data: null };
    const [head, ...args] = t.split(/\s+/);
    const slash = head.indexOf('/');
    const name0 = (slash >= 0 ? head.slice(0, slash) : head).toLowerCase();
    const fmt = slash >= 0 ? head.slice(slash + 1) : '';
    const name = this.aliases.get(name0) ?? name0;
    const cmd = this.commands.get(name);
    this.warnings = [];
    try {
      if (!cmd) throw new ConsoleError(`unknown command '${name0}' (type help for the list)`);
      if (fmt && name !== 'x') throw new ConsoleError(`${name0}: takes no /format`);
      const r = cmd.run(args, fmt);
      return this.warnings.length ? { ...r, warnings: this.warnings } : r;
    } catch (e) {
      if (e instanceof ConsoleError || e instanceof ImageError) return { text: '', data: { error: e.message }, error: e.message };
      if (e instanceof PageFault) {
        const msg = `cannot access memory at ${hex((BigInt(e.hi >>> 0) << 32n) | BigInt(e.lo >>> 0))}`;
        return { text: '', data: { error: msg }, error: msg };
      }
      throw e;
    }
  }

  /** A CPU argument; naming one makes it the default for later commands unless `select` is false. */
  private cpuArg(s: string | undefined, select = true): number {
    if (s === undefined) return this.cpu;
    const c = parseIntArg(s, 'cpu', 0, this.machine.cpus.length - 1);
    if (select) this.cpu = c;
    return c;
  }

  private where1(cpu: Cpu): string {
    const ctx = contextStack(cpu, vectorNamer(this.run.k)).join(' > ');
    return `CPU${cpu.id} [${ctx}] at ${this.machine.symbolize(cpu.rip)}`;
  }

  /** The instruction a CPU is about to run (or its host routine's state). */
  private here(cpu: Cpu): string {
    const m = this.machine;
    const b = m.hostAt(cpu.insn.lo, cpu.insn.hi);
    if (b) {
      const f = cpu.hostFrames[cpu.hostFrames.length - 1];
      return `${this.where1(cpu)}: host routine ${b.name}${f && f.binding === b ? ` (last: ${f.last})` : ''}`;
    }
    const lines = this.list(cpu.rip, 1);
    return `${this.where1(cpu)}: ${lines.length ? `${hexBytes(lines[0].bytes)}  ${lines[0].text}` : '(unmapped)'}`;
  }

  private runState(cpu: Cpu): string {
    if (cpu.shutdown) return `CPU${cpu.id} is shut down: ${cpu.shutdown.detail}`;
    const info = this.machine.blockInfo.get(cpu.id);
    if (cpu.blocked) return `CPU${cpu.id} is ${cpu.blocked.reason === 'spin' ? 'spinning' : 'waiting'}: ${info?.detail ?? cpu.blocked.detail}${info?.waitsFor.length ? ` (waits for ${info.waitsFor.map((w) => `CPU${w}`).join(', ')})` : ''}`;
    if (cpu.halted) return `CPU${cpu.id} is halted`;
    return '';
  }

  // ---- Commands ----

  private step(a: string[]): ConsoleReply {
    const m = this.machine;
    const cpu = this.cpuArg(a[0]);
    const n = a[1] === undefined ? 1 : parseIntArg(a[1], 'n', 1, 100_000_000);
    const lines: TraceLine[] = [];
    const keep = 20;
    let total = 0;
    const probe = new TraceProbe(m, vectorNamer(this.run.k), (l) => {
      total++;
      lines.push(l);
      if (lines.length > keep) lines.shift();
    }, { cpus: [cpu], syntax: this.opts.syntax });
    const prev = m.probe;
    m.probe = prev ? new ProbeSet([prev, probe]) : probe;
    let r;
    try {
      r = m.step(cpu, n);
    } finally {
      m.probe = prev;
    }
    const c = m.cpu(cpu);
    const out: string[] = [];
    if (total > lines.length) out.push(`  … ${total - lines.length} earlier step(s)`);
    out.push(...lines.map(formatTraceLine));
    let stop = '';
    if (r.stop === 'breakpoint') {
      const bp = this.breakpoints.find((x) => x.address === c.rip);
      stop = `breakpoint${bp ? ` ${bp.id}` : ''} at ${m.symbolize(c.rip)}`;
      out.push(`stopped at ${stop}`);
    }
    const st = this.runState(c);
    if (st) out.push(st);
    out.push(this.here(c));
    return { text: out.join('\n'), data: { cpu, steps: total, stop: r.stop === 'deadlock' ? 'blocked' : r.stop, machineSteps: r.steps, rip: c.rip, symbol: m.symbolize(c.rip), context: contextStack(c, vectorNamer(this.run.k)), trace: lines } };
  }

  private cont(): ConsoleReply {
    const m = this.machine;
    const r = m.run({ schedule: this.run.schedule, maxSteps: this.run.maxSteps });
    if (r.stop === 'breakpoint' && r.cpu !== null) {
      const c = m.cpu(r.cpu);
      this.cpu = r.cpu;
      const bp = this.breakpoints.find((x) => x.address === c.rip);
      const text = `Breakpoint${bp ? ` ${bp.id}` : ''}, ${this.here(c)}  (machine step ${r.steps})`;
      return { text, data: { stop: 'breakpoint', breakpoint: bp?.id ?? null, cpu: r.cpu, steps: r.steps, rip: c.rip, symbol: m.symbolize(c.rip) } };
    }
    const report: RunReport = explain(this.run, r);
    return { text: formatRunReport(report), data: report };
  }

  private regs(a: string[]): ConsoleReply {
    const cpu = this.machine.cpu(this.cpuArg(a[0]));
    const regs: Record<string, bigint> = {};
    const out: string[] = [this.where1(cpu)];
    GPR_NAMES.forEach((g, i) => (regs[g] = cpu.getReg(i)));
    for (let i = 0; i < GPR_NAMES.length; i += 4) {
      out.push(GPR_NAMES.slice(i, i + 4).map((g) => `${g.padStart(3)} ${hex16(regs[g])}`).join('  '));
    }
    const fl = readFlags(cpu);
    const set = FLAG_NAMES.filter(([bit]) => (fl & bit) !== 0).map(([, nm]) => nm);
    out.push(`rip ${hex16(cpu.rip)} <${this.machine.symbolize(cpu.rip)}>`);
    out.push(`rflags ${hex(fl)} [${set.length ? ` ${set.join(' ')} ` : ' '}]  IOPL=${(fl >> 12) & 3}`);
    const gs = (BigInt(cpu.gsHi >>> 0) << 32n) | BigInt(cpu.gsLo >>> 0);
    out.push(`cs ${hex(cpu.cs)}  ss ${hex(cpu.ss)}  gs_base ${hex(gs)}  nmi ${cpu.nmiBlocked ? 'blocked (in an NMI)' : 'unblocked'}${cpu.nmiPending ? ', one pending' : ''}`);
    const st = this.runState(cpu);
    if (st) out.push(st);
    return {
      text: out.join('\n'),
      data: { cpu: cpu.id, context: contextStack(cpu, vectorNamer(this.run.k)), regs, rip: cpu.rip, symbol: this.machine.symbolize(cpu.rip), rflags: fl, flags: set, gsBase: gs, nmiBlocked: cpu.nmiBlocked, nmiPending: cpu.nmiPending },
    };
  }

  private examine(a: string[], fmt: string): ConsoleReply {
    const f = /^(\d*)([xdu]?)([bhwg]?)$/.exec(fmt);
    if (!f) throw new ConsoleError(`x/${fmt}: expected x/<count><format><unit>, e.g. x/16xb or x/4xg`);
    const count = f[1] ? parseIntArg(f[1], 'count', 1, 4096) : f[3] === 'g' ? 4 : 16;
    const radix = f[2] || 'x';
    const unit = ({ b: 1, h: 2, w: 4, g: 8 } as const)[(f[3] || 'b') as 'b' | 'h' | 'w' | 'g'];
    if (a.length === 0) throw new ConsoleError('x: give an address, a symbol or a $register');
    const cpu = this.machine.cpu(this.cpu);
    const addr = resolveAddress(a.join(' '), this.machine.symbols, cpu, this.warnings);
    const bytes = this.machine.mem.readBytes(addr, count * unit);
    const values: bigint[] = [];
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < count; i++) {
      const o = i * unit;
      values.push(unit === 1 ? BigInt(bytes[o]) : unit === 2 ? BigInt(dv.getUint16(o, true)) : unit === 4 ? BigInt(dv.getUint32(o, true)) : dv.getBigUint64(o, true));
    }
    const perLine = unit === 8 ? 2 : unit === 4 ? 4 : 8;
    const show = (v: bigint): string => (radix === 'x' ? '0x' + v.toString(16).padStart(unit * 2, '0') : radix === 'd' ? BigInt.asIntN(unit * 8, v).toString() : v.toString());
    const out: string[] = [];
    for (let i = 0; i < count; i += perLine) {
      const at = addr + BigInt(i * unit);
      out.push(`${hex(at)} <${this.machine.symbolize(at)}>:\t${values.slice(i, i + perLine).map(show).join('\t')}`);
    }
    return { text: out.join('\n'), data: { address: addr, unit, values, bytes } };
  }

  private reader = (address: bigint, len: number): Uint8Array => {
    const mem = this.machine.mem;
    try {
      return mem.readBytes(address, len);
    } catch (e) {
      if (!(e instanceof PageFault)) throw e;
      // Up to the first unmapped byte.
      let n = 0;
      while (n < len) {
        try {
          mem.readBytes(address + BigInt(n), 1);
        } catch {
          break;
        }
        n++;
      }
      return n ? mem.readBytes(address, n) : new Uint8Array(0);
    }
  };

  private siteFacts = (site: PvSite, bytes: Uint8Array): SiteFacts => {
    const { img, k, m } = this.run;
    let verdict;
    try {
      verdict = verifySite(site, bytes, k.pv.choice(site.op, k.pv.read(m, site.op)));
    } catch {
      // An op this image cannot generate code for: judged by the boot bytes alone.
      verdict = undefined;
    }
    return { pvOpsAddress: img.pvOps.address, bootFinal: this.bootBytes.get(site.address), verdict };
  };

  private list(start: bigint, count: number): ListingLine[] {
    return listing({
      read: this.reader, start, count, symbols: this.machine.symbols, sites: this.run.img.sites, siteFacts: this.siteFacts, syntax: this.opts.syntax,
    });
  }

  private disas(a: string[]): ConsoleReply {
    const cpu = this.machine.cpu(this.cpu);
    if (a.length > 0) {
      const n = a.length > 1 && /^\d+$/.test(a[a.length - 1]) ? parseIntArg(a.pop(), 'n', 1, 10000) : 10;
      const at = resolveAddress(a.join(' '), this.machine.symbols, cpu, this.warnings);
      const lines = this.list(at, n);
      if (lines.length === 0) throw new ConsoleError(`cannot access memory at ${hex(at)}`);
      return { text: formatListing(lines, { mark: cpu.rip }), data: { lines } };
    }
    // Around RIP: decode from the start of the function (x86 cannot be decoded
    // backwards) and show a few instructions before RIP and more after it.
    const rip = cpu.rip;
    const sym = this.machine.symbols.lookup(rip);
    let lines: ListingLine[] = [];
    if (sym && sym.offset > 0n && sym.offset <= 0x1000n) {
      const all = this.list(sym.address, 4096);
      const i = all.findIndex((l) => l.address === rip);
      if (i >= 0) lines = all.slice(Math.max(0, i - 4), i + 7);
    }
    if (lines.length === 0) lines = this.list(rip, 8);
    const out = [formatListing(lines, { mark: rip })];
    const b = this.machine.hostAt(cpu.insn.lo, cpu.insn.hi);
    if (b) out.push(`(CPU${cpu.id} is in host routine ${b.name}: the bytes above are its stub)`);
    return { text: out.join('\n'), data: { cpu: cpu.id, rip, lines } };
  }

  private brk(a: string[]): ConsoleReply {
    const m = this.machine;
    if (a.length === 0) {
      const text = this.breakpoints.length ? this.breakpoints.map((b) => `${b.id}: ${hex(b.address)} <${b.where}>`).join('\n') : 'no breakpoints';
      return { text, data: { breakpoints: this.breakpoints.map((b) => ({ id: b.id, address: b.address, symbol: b.where })) } };
    }
    const addr = resolveAddress(a.join(' '), m.symbols, m.cpu(this.cpu), this.warnings);
    const id = this.nextBreakpoint++;
    const remove = m.addHook(addr, () => 'stop');
    const bp = { id, address: addr, where: m.symbolize(addr), remove };
    this.breakpoints.push(bp);
    return { text: `Breakpoint ${id} at ${hex(addr)} <${bp.where}>`, data: { id, address: addr, symbol: bp.where } };
  }

  private del(a: string[]): ConsoleReply {
    const id = parseIntArg(a[0], 'breakpoint', 1, Number.MAX_SAFE_INTEGER);
    const i = this.breakpoints.findIndex((b) => b.id === id);
    if (i < 0) throw new ConsoleError(`no breakpoint ${id}`);
    this.breakpoints[i].remove();
    this.breakpoints.splice(i, 1);
    return { text: `deleted breakpoint ${id}`, data: { deleted: id } };
  }

  private nmi(a: string[]): ConsoleReply {
    if (a[0] === undefined) throw new ConsoleError('nmi: name the CPU (nmi <cpu>)');
    const id = this.cpuArg(a[0], false);
    const c = this.machine.cpu(id);
    const dropped = c.nmiPending;
    this.machine.nmi(id);
    const text = dropped
      ? `CPU${id} already has an NMI latched: this one is lost`
      : c.nmiBlocked
        ? `NMI latched on CPU${id}: it is in an NMI, so it takes this one after its next iret`
        : `NMI pending on CPU${id}: taken at its next instruction boundary`;
    return { text, data: { cpu: id, latched: c.nmiBlocked, dropped } };
  }

  private irq(a: string[]): ConsoleReply {
    if (a.length !== 2) throw new ConsoleError('irq: usage irq <cpu> <vector>');
    const id = this.cpuArg(a[0], false);
    const v = parseIntArg(a[1], 'vector', 16, 255);
    this.machine.interrupt(id, v);
    return { text: `interrupt ${v} pending on CPU${id}`, data: { cpu: id, vector: v } };
  }

  private selectCpu(a: string[]): ConsoleReply {
    if (a[0] === undefined) return { text: `current CPU: ${this.cpu}`, data: { cpu: this.cpu } };
    const c = this.cpuArg(a[0]);
    return { text: this.here(this.machine.cpu(c)), data: { cpu: c } };
  }

  private report() {
    return machineReport(this.machine, this.run.k.locks, vectorNamer(this.run.k));
  }

  private cpus(): ConsoleReply {
    const rep = this.report();
    const w = Math.max(...rep.cpus.map((c) => c.context.join(' > ').length));
    const out = rep.cpus.map((c) => {
      const cur = c.cpu === this.cpu ? '*' : ' ';
      const extra = [c.holds.length ? `holds ${c.holds.join(', ')}` : '', c.waiting, c.status && !c.waiting ? c.status : ''].filter((x) => x).join('; ');
      return `${cur}CPU${c.cpu}  ${c.context.join(' > ').padEnd(w)}  ${hex16(c.rip)} <${c.symbol}>  ${c.state}${extra ? `  ${extra}` : ''}`;
    });
    return { text: out.join('\n'), data: { cpus: rep.cpus, current: this.cpu } };
  }

  private state(): ConsoleReply {
    const { m, k } = this.run;
    const L = k.L;
    const u32 = (a: bigint): number => m.mem.readU32(a);
    const ncpus = m.cpus.length;
    const words: bigint[] = [];
    for (let w = 0; w < L.ackMapWords(ncpus); w++) words.push(m.mem.readU64(L.tps.ackMap + BigInt(8 * w)));
    const acked: number[] = [];
    for (let c = 0; c < ncpus; c++) if ((words[c >> 6] >> BigInt(c & 63)) & 1n) acked.push(c);
    let bits = '';
    for (let c = ncpus - 1; c >= 0; c--) bits += acked.includes(c) ? '1' : '0';
    const stateVal = u32(L.tps.state);
    const stateName = PATCH_STATE_NAMES[stateVal] ?? (stateVal === 0 ? '(not set)' : '(unknown)');
    const bpAddr = m.mem.readU64(L.bpDesc.addr);
    const bpLen = m.mem.readU8(L.bpDesc.len);
    const bpRefs = u32(L.bpDesc.refs);
    const bpOpcode = bpLen > 0 && bpLen <= 16 ? m.mem.readBytes(L.bpDesc.opcode, bpLen) : new Uint8Array(0);
    const tps = {
      state: stateVal, stateName, primaryCpu: u32(L.tps.primaryCpu), numAcks: u32(L.tps.numAcks), nmiWork: u32(L.tps.nmiWork), nmiContext: u32(L.tps.nmiContext),
      syncAckMap: words, acked,
    };
    const done = k.log.events.filter((e) => e.kind === 'site-done').length;
    const out = [
      `text_poke_state @ ${hex(L.tps.base)}:`,
      `  state         ${tps.state} (${stateName})`,
      `  primary_cpu   ${tps.primaryCpu}`,
      `  num_acks      ${tps.numAcks}`,
      `  nmi_work      ${tps.nmiWork}`,
      `  nmi_context   ${tps.nmiContext}`,
      `  sync_ack_map  0b${bits} (bit n = CPUn; acked: ${acked.length ? acked.map((c) => `CPU${c}`).join(', ') : 'none'})`,
      `bp_desc @ ${hex(L.bpDesc.base)}: ${bpAddr === 0n ? 'addr NULL (no site under patch)' : `addr ${hex(bpAddr)} <${m.symbolize(bpAddr)}>, len ${bpLen}, refs ${bpRefs}, new bytes ${hexBytes(bpOpcode)}`}`,
    ];
    const req = k.request;
    out.push(req ? `patch request: ${req.protocol}${req.protocol === 'stop-machine' ? `, nmi=${req.nmi}` : ''}; ${k.plan.length} site(s) planned, ${done} done${k.patchDone ? '; finished' : ''}` : 'patch request: none');
    return {
      text: out.join('\n'),
      data: { textPokeState: { address: L.tps.base, ...tps }, bpDesc: { address: L.bpDesc.base, addr: bpAddr, len: bpLen, refs: bpRefs, opcode: bpOpcode }, request: req, planned: k.plan.length, done, patchDone: k.patchDone },
    };
  }

  private where(): ConsoleReply {
    const rep = this.report();
    const out: string[] = [];
    for (const c of rep.cpus) {
      const head = `CPU${c.cpu} [${c.context.join(' > ')}] at ${c.symbol} (${c.state})`;
      const held = c.holds.length ? `, holds ${c.holds.join(', ')}` : '';
      if (c.waitsFor.length) out.push(`${head}${held} -> waits for ${c.waitsFor.map((w) => `CPU${w}`).join(', ')}: ${c.waiting}`);
      else out.push(`${head}${held}${c.waiting ? `: ${c.waiting}` : ''}`);
    }
    if (rep.cycle) {
      out.push(`wait-for cycle: ${[...rep.cycle, rep.cycle[0]].map((c) => `CPU${c}`).join(' -> ')}`);
      out.push(...rep.cycleText.map((t) => `  ${t}`));
    } else {
      out.push('no wait-for cycle');
    }
    return { text: out.join('\n'), data: rep };
  }

  private unwinder: Unwinder | null = null;

  private bt(a: string[]): ConsoleReply {
    const cpu = this.machine.cpu(this.cpuArg(a[0]));
    this.unwinder ??= new Unwinder(this.machine, this.run.img, vectorNamer(this.run.k));
    const frames = this.unwinder.backtrace(cpu);
    return { text: [this.where1(cpu), ...formatBacktrace(frames)].join('\n'), data: { cpu: cpu.id, frames } };
  }

  private log(a: string[]): ConsoleReply {
    const n = a[0] === undefined ? 20 : parseIntArg(a[0], 'n', 1, 1_000_000);
    const ev = [
      ...this.run.k.log.events.map((e) => ({ step: e.step, text: `CPU${e.cpu} ${e.kind}: ${e.text}` })),
      ...this.run.injections.map((i) => ({ step: i.step, text: `inject: ${i.action} (${i.trigger})` })),
    ].sort((x, y) => x.step - y.step);
    const tail = ev.slice(-n);
    return { text: tail.length ? tail.map((e) => `${e.step.toString().padStart(9)}  ${e.text}`).join('\n') : 'nothing logged yet', data: { events: tail } };
  }

  private help(): ConsoleReply {
    const w = Math.max(...[...this.commands.values()].map((c) => c.usage.length));
    const lines = [...this.commands.values()].map((c) => `  ${c.usage.padEnd(w)}  ${c.help}`);
    lines.push('Addresses: a symbol, 0x…, or $rip/$rsp/… of the current CPU, with an optional +/-offset.');
    lines.push('Aliases: s/si = step, c = continue, b = break, d = delete, r = regs, backtrace = bt, q = quit.');
    return { text: lines.join('\n'), data: { commands: [...this.commands.values()].map((c) => ({ usage: c.usage, help: c.help })) } };
  }
}
