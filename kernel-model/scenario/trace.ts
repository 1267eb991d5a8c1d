// The execution trace: one line per executed instruction or host-routine step —
// machine step, CPU, context stack, RIP, symbol+offset, and the disassembly (or,
// for a host routine, what its step did). Installed as the machine's probe only
// when a trace is asked for, so untraced runs keep the unprobed step loop.

import type { Machine } from '../../emu/machine';
import type { Cpu } from '../../emu/cpu';
import type { Insn } from '../../emu/insn';
import type { Probe } from '../../emu/probe';
import { disassemble } from '../../emu/decode';
import { annotate } from '../image/disasm';
import { OutputFile } from '../image/output-file';
import { contextStack, type VectorNamer } from './report';

export interface TraceLine {
  step: number;
  cpu: number;
  context: string[];
  rip: bigint;
  symbol: string;
  /** Disassembly, or "[host name] what the step did". */
  text: string;
}

export function formatTraceLine(t: TraceLine): string {
  return `${t.step.toString().padStart(9)}  cpu${t.cpu}  ${t.context.join('>').padEnd(28)}  ${t.rip.toString(16).padStart(16, '0')}  ${t.symbol.padEnd(36)}  ${t.text}`;
}

export interface TraceProbeOptions {
  syntax?: 'gas' | 'intel';
  /** Trace only these CPUs (default all). */
  cpus?: readonly number[];
}

export class TraceProbe implements Probe {
  private readonly texts = new WeakMap<Insn, { bytes: Uint8Array | null; text: string }>();
  private readonly only: Set<number> | null;

  constructor(
    private readonly m: Machine,
    private readonly vectorName: VectorNamer,
    private readonly sink: (line: TraceLine) => void,
    private readonly opts: TraceProbeOptions = {},
  ) {
    this.only = opts.cpus ? new Set(opts.cpus) : null;
  }

  onStep(cpu: Cpu, ins: Insn, hostDepth: number): void {
    if (this.only && !this.only.has(cpu.id)) return;
    const rip = ins.address;
    this.sink({
      // The probed loop counts the step before calling us: this one is the step before.
      step: this.m.currentStep(cpu) - 1,
      cpu: cpu.id,
      context: contextStack(cpu, this.vectorName),
      rip,
      symbol: this.m.symbolize(rip),
      text: this.describe(cpu, ins, hostDepth),
    });
  }

  private describe(cpu: Cpu, ins: Insn, hostDepth: number): string {
    const b = this.m.hostAt(ins.lo, ins.hi);
    if (b) {
      const frames = cpu.hostFrames;
      const top = frames[frames.length - 1];
      // A routine that finished popped its frame: the step was its return.
      const what = frames.length >= hostDepth && top?.binding === b ? top.last : 'return';
      return `[host ${b.name}] ${what}`;
    }
    const cached = this.texts.get(ins);
    if (cached && cached.bytes === ins.bytes && ins.bytes !== null) return cached.text;
    let bytes = ins.bytes;
    if (!bytes) {
      try {
        bytes = this.m.mem.readBytes(ins.address, 15);
      } catch {
        return '(unmapped)';
      }
    }
    const text = annotate(disassemble(bytes, ins.address, this.opts.syntax ?? 'gas').text, this.m.symbols);
    this.texts.set(ins, { bytes: ins.bytes, text });
    return text;
  }
}

/**
 * A buffered trace file written through an OutputFile (a temporary name renamed into
 * place by `close`), so a failed run leaves nothing behind (`abort` removes it).
 */
export class TraceFile {
  private readonly out: OutputFile;
  private chunks: string[] = [];
  private size = 0;
  lines = 0;

  constructor(readonly path: string) {
    this.out = new OutputFile(path);
  }

  write(line: string): void {
    this.chunks.push(line);
    this.size += line.length + 1;
    this.lines++;
    if (this.size >= 1 << 20) this.flush();
  }

  private flush(): void {
    if (this.chunks.length === 0) return;
    this.out.write(this.chunks.join('\n') + '\n');
    this.chunks = [];
    this.size = 0;
  }

  close(): void {
    this.flush();
    this.out.commit();
  }

  abort(): void {
    this.out.abort();
  }
}
