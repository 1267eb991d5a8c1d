// The remote protocol below what gdb's batch mode reaches: framing and checksums,
// Ctrl-C while the machine runs, read and access watchpoints, per-thread vCont steps,
// error replies. A small client speaks to the stub over loopback TCP.

import { connect, type Socket } from 'net';
import { RspParser, frame, unescape, fromHex, hexToText, textToHex, leBytes, fromLe } from '../../debug/rsp';
import { GdbSession } from '../../debug/gdb-session';
import { serveGdb } from '../../debug/gdb-server';
import { REGISTERS, REG_PC, REGISTER_BLOCK_BYTES } from '../../debug/registers';
import { prepare, prepareImage, prepareLongRun } from './gdb-driver';

class Client {
  private readonly parser = new RspParser();
  private readonly packets: string[] = [];
  private waiting: ((p: string) => void) | null = null;
  constructor(private readonly sock: Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      for (const ev of this.parser.feed(d)) {
        if (ev.kind !== 'packet') continue;
        sock.write('+');
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = null;
          w(ev.payload);
        } else this.packets.push(ev.payload);
      }
    });
  }
  static open(port: number): Promise<Client> {
    return new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => resolve(new Client(s)));
    });
  }
  next(): Promise<string> {
    const p = this.packets.shift();
    if (p !== undefined) return Promise.resolve(p);
    return new Promise((r) => (this.waiting = r));
  }
  async ask(payload: string): Promise<string> {
    this.sock.write(frame(payload), 'latin1');
    return this.next();
  }
  raw(s: string): void {
    this.sock.write(s, 'latin1');
  }
  close(): void {
    this.sock.end();
  }
}

describe('RSP framing', () => {
  it('frames with a checksum and escapes the reserved bytes; the parser undoes both across chunks', () => {
    expect(frame('OK')).toBe('$OK#9a');
    const f = frame('a#b$c}d*e');
    expect(f).not.toMatch(/[^$]\$|#.*#/);
    const p = new RspParser();
    const evs = [...p.feed(f.slice(0, 4)), ...p.feed(f.slice(4) + '+\x03$bad#00')];
    expect(evs).toEqual([{ kind: 'packet', payload: 'a#b$c}d*e' }, { kind: 'ack' }, { kind: 'interrupt' }, { kind: 'bad-checksum' }]);
    expect(unescape('}\x03')).toBe('#');
    expect(fromHex('0aff')).toEqual(new Uint8Array([10, 255]));
    expect(fromHex('0g')).toBeNull();
    expect(hexToText(textToHex('CPU1 thread > NMI'))).toBe('CPU1 thread > NMI');
    expect(fromLe(leBytes(0xffffffff81000000n, 8))).toBe(0xffffffff81000000n);
  });
});

describe('the stub over TCP', () => {
  it('stops a long run on Ctrl-C with SIGINT, and the machine has advanced', async () => {
    const run = prepareLongRun();
    const server = await serveGdb(run, { port: 0 });
    const c = await Client.open(server.port);
    try {
      expect(await c.ask('qSupported:multiprocess+;swbreak+')).toMatch(/qXfer:features:read\+/);
      const reply = c.ask('vCont;c');
      // Ctrl-C once the machine is running (a loaded host may take a while to start it).
      const poll = setInterval(() => {
        if (run.m.steps > 0) {
          clearInterval(poll);
          c.raw('\x03');
        }
      }, 5);
      expect(await reply).toMatch(/^T02thread:[12];$/);
      expect(run.m.steps).toBeGreaterThan(0);
      expect(run.m.steps).toBeGreaterThanOrEqual(1_000_000); // at least one whole chunk ran before the ^C was seen
    } finally {
      c.close();
      await server.finished;
    }
  });

  it('answers a resent packet after a bad checksum, and acknowledges nothing after QStartNoAckMode', async () => {
    const run = prepareImage('minikernel', 1);
    const server = await serveGdb(run, { port: 0 });
    const c = await Client.open(server.port);
    try {
      c.raw('$qC#00');
      c.raw(frame('qC'));
      expect(await c.next()).toBe('QC1');
      expect(await c.ask('QStartNoAckMode')).toBe('OK');
      expect(await c.ask('qfThreadInfo')).toBe('m1');
      expect(await c.ask('qsThreadInfo')).toBe('l');
    } finally {
      c.close();
      await server.finished;
    }
  });
});

describe('GdbSession packets', () => {
  it('g carries every register of the Hg thread; p and P read and write one', () => {
    const run = prepare('nmi-deadlock-primary');
    const s = new GdbSession(run);
    expect(s.handle('Hg2')).toEqual({ kind: 'reply', payload: 'OK' });
    const g = s.handle('g');
    expect(g.kind === 'reply' && g.payload.length).toBe(REGISTER_BLOCK_BYTES * 2);
    expect(s.handle(`P${REG_PC.toString(16)}=${Buffer.from(leBytes(0xffffffff81000010n, 8)).toString('hex')}`)).toEqual({ kind: 'reply', payload: 'OK' });
    expect(run.m.cpus[1].rip).toBe(0xffffffff81000010n);
    expect(run.m.cpus[0].rip).not.toBe(0xffffffff81000010n);
    const rax = REGISTERS.findIndex((r) => r.name === 'rax');
    expect(s.handle(`P${rax}=0102030405060708`)).toEqual({ kind: 'reply', payload: 'OK' });
    expect(run.m.cpus[1].getReg(0)).toBe(0x0807060504030201n);
    expect(s.handle('p' + rax.toString(16))).toEqual({ kind: 'reply', payload: '0102030405060708' });
    expect(s.handle('P1=00')).toEqual({ kind: 'reply', payload: 'E01' });
    expect(s.handle('Hg9')).toEqual({ kind: 'reply', payload: 'E01' });
  });

  it('m reads up to the first unmapped byte and E14 when none is mapped; M writes through the loader path', () => {
    const run = prepare('nmi-deadlock-primary');
    const s = new GdbSession(run);
    const lock = run.m.symbols.resolve('nmi_lock')!;
    expect(s.handle(`M${lock.toString(16)},4:deadbeef`)).toEqual({ kind: 'reply', payload: 'OK' });
    expect(run.m.mem.readU32(lock)).toBe(0xefbeadde);
    expect(s.handle(`m${lock.toString(16)},4`)).toEqual({ kind: 'reply', payload: 'deadbeef' });
    expect(s.handle('m10,4')).toEqual({ kind: 'reply', payload: 'E14' });
  });

  it('a read watchpoint (Z3) stops the CPU whose instruction read the word; an access watchpoint (Z4) too; z removes them', () => {
    const run = prepare('nmi-deadlock-primary');
    const s = new GdbSession(run);
    const lock = run.m.symbols.resolve('shared_lock')!;
    expect(s.handle(`Z3,${lock.toString(16)},4`)).toEqual({ kind: 'reply', payload: 'OK' });
    const stop = s.target.resume({ stepCpu: null });
    expect(stop?.kind).toBe('watch');
    expect(stop && s.stopReply(stop)).toMatch(new RegExp(`^T05thread:[12];rwatch:${lock.toString(16)};$`));
    expect(s.handle(`z3,${lock.toString(16)},4`)).toEqual({ kind: 'reply', payload: 'OK' });
    expect(s.handle(`z3,${lock.toString(16)},4`)).toEqual({ kind: 'reply', payload: 'E01' });
    expect(s.handle(`Z4,${lock.toString(16)},4`)).toEqual({ kind: 'reply', payload: 'OK' });
    const stop2 = s.target.resume({ stepCpu: null });
    expect(stop2?.kind).toBe('watch');
    expect(stop2 && s.stopReply(stop2)).toMatch(/awatch:/);
  });

  it('vCont steps the named thread by one instruction while the schedule runs the others', () => {
    const run = prepare('nmi-deadlock-primary');
    const s = new GdbSession(run);
    const act = s.handle('vCont;s:2;c');
    expect(act).toEqual({ kind: 'resume', resume: { stepCpu: 1 } });
    const retired = run.m.cpus[1].retired;
    const stop = s.target.resume({ stepCpu: 1 });
    expect(stop).toEqual({ kind: 'step', cpu: 1 });
    expect(run.m.cpus[1].retired).toBe(retired + 1);
    expect(s.handle('vCont;x')).toEqual({ kind: 'reply', payload: 'E01' });
    expect(s.handle('vCont?')).toEqual({ kind: 'reply', payload: 'vCont;c;C;s;S' });
  });

  it('qThreadExtraInfo names the CPU and its context; qXfer serves target.xml in pieces', () => {
    const run = prepare('nmi-deadlock-primary');
    const s = new GdbSession(run);
    const r = s.handle('qThreadExtraInfo,2');
    expect(r.kind === 'reply' && hexToText(r.payload)).toBe('CPU1 thread');
    const a = s.handle('qXfer:features:read:target.xml:0,40');
    expect(a.kind === 'reply' && a.payload[0]).toBe('m');
    const b = s.handle('qXfer:features:read:target.xml:0,ffff');
    expect(b.kind === 'reply' && b.payload.startsWith('l<?xml')).toBe(true);
    expect(b.kind === 'reply' && b.payload).toContain('<architecture>i386:x86-64</architecture>');
    expect(s.handle('qXfer:features:read:other.xml:0,10')).toEqual({ kind: 'reply', payload: 'E00' });
  });
});

describe('observing does not move the race', () => {
  const files = ['nmi-deadlock-primary', 'nmi-deadlock-secondaries', 'nmi-safe-primary', 'batch-poke'];
  it.each(files)('%s: breakpoints, per-CPU steps and watchpoints end where a plain run ends, at the same step', (name) => {
    const plain = prepare(name);
    const ref = plain.m.run({ schedule: plain.schedule, maxSteps: plain.maxSteps });
    const run = prepare(name);
    const s = new GdbSession(run);
    const sym = (n: string): string => run.m.symbols.resolve(n)!.toString(16);
    expect(s.handle(`Z0,${sym('queued_spin_unlock')},1`)).toEqual({ kind: 'reply', payload: 'OK' });
    expect(s.handle(`Z2,${run.k.L.tps.state.toString(16)},4`)).toEqual({ kind: 'reply', payload: 'OK' });
    let stops = 0;
    for (let i = 0; i < 10_000; i++) {
      // Every third stop, step the stopped CPU once instead of continuing.
      const stop = s.target.resume({ stepCpu: stops % 3 === 2 ? s.target.last.cpu : null });
      if (!stop) continue;
      stops++;
      if (stop.kind === 'end') break;
      if (stops === 40) s.handle(`z0,${sym('queued_spin_unlock')},1`);
    }
    expect(stops).toBeGreaterThan(3);
    expect(s.target.last.kind).toBe('end');
    expect(s.target.lastResult).toEqual(ref);
  });
});
