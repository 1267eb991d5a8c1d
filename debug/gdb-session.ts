// One GDB connection's protocol state: a packet's payload in, the reply's payload out
// (or a request to resume the machine, which the server runs in chunks so a Ctrl-C
// can arrive). No sockets here, so tests can drive it packet by packet.
//
// Conventions follow QEMU's system-mode gdbstub: each CPU is a thread whose id is its
// index + 1; `Hg` picks the thread registers and memory are read for, `Hc` the one
// legacy `s`/`c` act on; stop replies are `T05thread:<id>;` (with `watch:<addr>;` and
// friends for watchpoints); `qThreadExtraInfo` names the CPU's context stack.
// Sources: docs/notes/gdb-remote.md.

import type { ScenarioRun } from '../kernel-model/scenario/run';
import { explain, vectorNamer } from '../kernel-model/scenario/run';
import { contextStack } from '../kernel-model/scenario/report';
import { formatRunReport } from '../kernel-model/present/demo';
import { StepConsole } from '../kernel-model/present/console';
import { PageFault } from '../emu/memory';
import { REGISTERS, registerBytes, setRegisterBytes, targetXml } from './registers';
import { fromHex, hexToText, textToHex, toHex } from './rsp';
import { DebugTarget, type DebugStop, type Resume, type WatchType } from './execution';

/** What the server should do with a packet's answer. */
export type SessionAction =
  | { kind: 'reply'; payload: string; output?: string[] }
  | { kind: 'resume'; resume: Resume }
  | { kind: 'close'; payload?: string };

/** GDB's own signal numbers (include/gdb/signals.def), which the remote protocol carries. */
export const GDB_SIGNAL = { INT: 2, TRAP: 5, STOP: 17 } as const;

/** Monitor commands passed to the stepping console (the ones that do not run the machine). */
const CONSOLE_MONITOR = new Set(['nmi', 'irq', 'state', 'where', 'bt', 'backtrace', 'cpus', 'log', 'regs', 'x', 'disas', 'help']);

const MAX_PACKET = 0x4000;

export class GdbSession {
  readonly target: DebugTarget;
  readonly console: StepConsole;
  /** CPU for register and memory packets (Hg). */
  private gCpu = 0;
  /** CPU for legacy s/c (Hc); -1: all. */
  private cCpu = -1;
  noAck = false;

  constructor(readonly run: ScenarioRun) {
    this.target = new DebugTarget(run);
    this.console = new StepConsole(run);
  }

  private get ncpus(): number {
    return this.run.m.cpus.length;
  }

  /** Thread id (hex) of a CPU. */
  static tid(cpu: number): string {
    return (cpu + 1).toString(16);
  }

  /** A thread id from a packet: -1 all, 0 any (the first CPU), else a CPU; undefined when malformed or unknown. */
  private parseTid(s: string): number | undefined {
    if (s === '-1') return -1;
    if (!/^[0-9a-fA-F]+$/.test(s)) return undefined;
    const t = parseInt(s, 16);
    if (t === 0) return 0;
    return t >= 1 && t <= this.ncpus ? t - 1 : undefined;
  }

  handle(p: string): SessionAction {
    const reply = (payload: string, output?: string[]): SessionAction => ({ kind: 'reply', payload, output });
    try {
      if (p.startsWith('qSupported')) {
        return reply(`PacketSize=${MAX_PACKET.toString(16)};qXfer:features:read+;vContSupported+;QStartNoAckMode+;swbreak+;hwbreak+;ReverseStep+;ReverseContinue+`);
      }
      if (p === 'QStartNoAckMode') {
        this.noAck = true;
        return reply('OK');
      }
      if (p === '?') return reply(this.stopReply(this.target.last));
      if (p === 'qAttached') return reply('1');
      if (p === 'qC') return reply(`QC${GdbSession.tid(this.gCpu)}`);
      if (p === 'qfThreadInfo') return reply('m' + this.run.m.cpus.map((c) => GdbSession.tid(c.id)).join(','));
      if (p === 'qsThreadInfo') return reply('l');
      if (p.startsWith('qThreadExtraInfo,')) {
        const cpu = this.parseTid(p.slice('qThreadExtraInfo,'.length));
        if (cpu === undefined || cpu < 0) return reply('E01');
        return reply(textToHex(this.threadInfo(cpu)));
      }
      if (p.startsWith('qXfer:features:read:')) return reply(this.xferFeatures(p.slice('qXfer:features:read:'.length)));
      if (p.startsWith('qRcmd,')) {
        const cmd = hexToText(p.slice(6));
        if (cmd === null) return reply('E01');
        const out = this.monitor(cmd.trim());
        return reply('OK', [out.endsWith('\n') || out === '' ? out : out + '\n']);
      }
      if (p.startsWith('H')) {
        const cpu = this.parseTid(p.slice(2));
        if (cpu === undefined) return reply('E01');
        if (p[1] === 'g') this.gCpu = Math.max(0, cpu);
        else if (p[1] === 'c') this.cCpu = cpu === 0 ? -1 : cpu;
        else return reply('');
        return reply('OK');
      }
      if (p.startsWith('T')) {
        const cpu = this.parseTid(p.slice(1));
        return reply(cpu === undefined || cpu < 0 || this.run.m.cpus[cpu].shutdown ? 'E01' : 'OK');
      }
      if (p === 'g') return reply(REGISTERS.map((_, i) => toHex(registerBytes(this.cpuG(), i))).join(''));
      if (p.startsWith('G')) return reply(this.writeAllRegisters(p.slice(1)));
      if (p.startsWith('p')) {
        const i = parseInt(p.slice(1), 16);
        if (!(i >= 0 && i < REGISTERS.length)) return reply('E01');
        return reply(toHex(registerBytes(this.cpuG(), i)));
      }
      if (p.startsWith('P')) return reply(this.writeRegister(p.slice(1)));
      if (p.startsWith('m')) return reply(this.readMemory(p.slice(1)));
      if (p.startsWith('M')) return reply(this.writeMemory(p.slice(1)));
      if (p.startsWith('Z') || p.startsWith('z')) return reply(this.breakOrWatch(p));
      if (p === 'vCont?') return reply('vCont;c;C;s;S');
      if (p.startsWith('vCont;')) {
        const r = this.parseVCont(p.slice(6));
        return r ? { kind: 'resume', resume: r } : reply('E01');
      }
      if (p === 'c' || p.startsWith('C')) return { kind: 'resume', resume: { stepCpu: null } };
      if (p === 's' || p.startsWith('S')) return { kind: 'resume', resume: { stepCpu: this.cCpu < 0 ? this.gCpu : this.cCpu } };
      // Going back (GDB manual, "Packets": bs, bc) runs at once: replaying is part of answering.
      if (p === 'bs') return reply(this.stopReply(this.target.reverseStep(this.cCpu < 0 ? this.gCpu : this.cCpu)));
      if (p === 'bc') return reply(this.stopReply(this.target.reverseContinue(this.cCpu < 0 ? this.gCpu : this.cCpu)));
      if (p === 'D' || p.startsWith('D;')) return { kind: 'close', payload: 'OK' };
      if (p === 'k') return { kind: 'close' };
      // Unknown packets get the empty reply (GDB manual: "not supported").
      return reply('');
    } catch (e) {
      if (e instanceof PageFault) return reply('E14');
      throw e;
    }
  }

  private cpuG() {
    return this.run.m.cpus[this.gCpu];
  }

  /** "CPU1 thread > stop_machine > NMI > #BP (waiting)": what `info threads` shows. */
  threadInfo(cpu: number): string {
    const c = this.run.m.cpus[cpu];
    const ctx = contextStack(c, vectorNamer(this.run.k)).join(' > ');
    const state = c.shutdown ? 'shut down' : c.blocked ? (c.blocked.reason === 'spin' ? 'spinning' : 'waiting') : c.halted ? 'halted' : '';
    return `CPU${cpu} ${ctx}${state ? ` (${state})` : ''}`;
  }

  /** The stop reply for a stop; like QEMU, the stopped CPU becomes the Hg and Hc thread (gdb assumes so). */
  stopReply(s: DebugStop): string {
    this.gCpu = s.cpu;
    this.cCpu = s.cpu;
    const t = `thread:${GdbSession.tid(s.cpu)};`;
    switch (s.kind) {
      case 'breakpoint':
        return `T05${t}swbreak:;`;
      case 'step':
        return `T05${t}`;
      case 'watch':
        return `T05${t}${s.type}:${s.address.toString(16)};`;
      case 'interrupt':
        return `T0${GDB_SIGNAL.INT}${t}`;
      case 'end':
        return `T${GDB_SIGNAL.STOP.toString(16).padStart(2, '0')}${t}`;
      case 'history-start':
        return `T05${t}replaylog:begin;`;
    }
  }

  /** A line for gdb's console when a stop needs words (the run ended). */
  stopMessage(s: DebugStop): string | null {
    if (s.kind !== 'end') return null;
    const r = s.result;
    const tail = r.stop === 'deadlock' ? '; `monitor where` shows the wait-for cycle, `monitor explain` the full report' : '; `monitor explain` for the report';
    return `textpoke: the run ended: ${r.stop} at machine step ${r.steps}${tail}\n`;
  }

  private xferFeatures(args: string): string {
    const m = /^([^:]+):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(args);
    if (!m) return 'E01';
    if (m[1] !== 'target.xml') return 'E00';
    const doc = targetXml();
    const off = parseInt(m[2], 16);
    const len = parseInt(m[3], 16);
    const part = doc.slice(off, off + len);
    return (off + len >= doc.length ? 'l' : 'm') + part;
  }

  private writeAllRegisters(hex: string): string {
    const b = fromHex(hex);
    if (!b) return 'E01';
    const cpu = this.cpuG();
    let off = 0;
    for (let i = 0; i < REGISTERS.length && off < b.length; i++) {
      const n = REGISTERS[i].bits / 8;
      if (off + n > b.length) break;
      setRegisterBytes(cpu, i, b.subarray(off, off + n));
      off += n;
    }
    return 'OK';
  }

  private writeRegister(arg: string): string {
    const m = /^([0-9a-fA-F]+)=([0-9a-fA-F]*)$/.exec(arg);
    if (!m) return 'E01';
    const i = parseInt(m[1], 16);
    const b = fromHex(m[2]);
    if (!(i >= 0 && i < REGISTERS.length) || !b || b.length !== REGISTERS[i].bits / 8) return 'E01';
    setRegisterBytes(this.cpuG(), i, b);
    return 'OK';
  }

  /** `m addr,len`: up to the first unmapped byte; E14 (EFAULT) when there is none. */
  private readMemory(arg: string): string {
    const m = /^([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(arg);
    if (!m) return 'E01';
    const addr = BigInt('0x' + m[1]);
    const len = Math.min(parseInt(m[2], 16), (MAX_PACKET - 4) / 2);
    const mem = this.run.m.mem;
    let n = 0;
    while (n < len && mem.isMapped(addr + BigInt(n))) n = Math.min(len, n + (4096 - Number((addr + BigInt(n)) & 0xfffn)));
    if (n === 0) return 'E14';
    return toHex(mem.readBytes(addr, n));
  }

  /** `M addr,len:bytes`: written as the debugger (writer -1): decoded copies of the bytes are refreshed. */
  private writeMemory(arg: string): string {
    const m = /^([0-9a-fA-F]+),([0-9a-fA-F]+):([0-9a-fA-F]*)$/.exec(arg);
    if (!m) return 'E01';
    const b = fromHex(m[3]);
    if (!b || b.length !== parseInt(m[2], 16)) return 'E01';
    this.run.m.mem.writeBytes(BigInt('0x' + m[1]), b, -1);
    return 'OK';
  }

  private breakOrWatch(p: string): string {
    const m = /^([Zz])([0-4]),([0-9a-fA-F]+),([0-9a-fA-F]+)/.exec(p);
    if (!m) return 'E01';
    const insert = m[1] === 'Z';
    const type = Number(m[2]);
    const addr = BigInt('0x' + m[3]);
    const len = parseInt(m[4], 16);
    if (type <= 1) {
      if (insert) this.target.insertBreakpoint(addr);
      else if (!this.target.removeBreakpoint(addr)) return 'E01';
      return 'OK';
    }
    const wt: WatchType = type === 2 ? 'watch' : type === 3 ? 'rwatch' : 'awatch';
    if (!(len >= 1 && len <= 4096)) return 'E01';
    if (insert) {
      if (!this.run.m.mem.isMapped(addr)) return 'E14';
      this.target.insertWatchpoint(wt, addr, len);
    } else if (!this.target.removeWatchpoint(wt, addr, len)) return 'E01';
    return 'OK';
  }

  /**
   * `vCont;action[:thread]…`: at most one stepping thread is honoured (the first);
   * every resumption runs the machine's schedule (see execution.ts for why CPUs the
   * debugger leaves "stopped" still take their turns).
   */
  private parseVCont(args: string): Resume | null {
    let stepCpu: number | null = null;
    for (const part of args.split(';')) {
      const [act, tidText] = part.split(':');
      if (!/^([cs]|[CS][0-9a-fA-F]{2})$/.test(act)) return null;
      let cpu = -1;
      if (tidText !== undefined) {
        const c = this.parseTid(tidText);
        if (c === undefined) return null;
        cpu = c;
      }
      if ((act[0] === 's' || act[0] === 'S') && stepCpu === null) stepCpu = cpu < 0 ? this.gCpu : cpu;
    }
    return { stepCpu };
  }

  /** `monitor …`: textpoke's own commands on the stopped machine. */
  monitor(cmd: string): string {
    const [head] = cmd.split(/\s+/);
    const name = head.toLowerCase();
    if (name === 'explain') {
      const res = this.target.lastResult ?? { stop: 'stopped' as const, steps: this.run.m.steps, cpu: null };
      const text = formatRunReport(explain(this.run, res));
      return this.target.lastResult ? text : `(the run has not ended; the machine is paused at step ${this.run.m.steps})\n${text}`;
    }
    if (name === '' || !CONSOLE_MONITOR.has(name.split('/')[0])) {
      return `textpoke monitor commands: bt [cpu], where, state, cpus, nmi <cpu>, irq <cpu> <vector>, log [n], regs [cpu], x/FMT <addr>, disas [addr] [n], explain, help\n`;
    }
    this.console.cpu = this.gCpu;
    const r = this.console.exec(cmd);
    return r.error ? `error: ${r.error}` : r.text;
  }
}
