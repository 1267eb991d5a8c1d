// A minimal client for QEMU's machine protocol (QMP) over a Unix socket: the greeting,
// capability negotiation, one command at a time, and waiting for an event. Only what
// booting a kernel and reading its memory back needs (boot-dump.ts); no dependency.
// Protocol: QEMU's docs/interop/qmp-spec — one JSON object per line, each reply is
// {"return": ...} or {"error": {...}}, events carry {"event": NAME} and may come between.

import * as net from 'net';

export interface QmpEvent {
  event: string;
  data?: unknown;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class QmpError extends Error {}

export class QmpClient {
  private buf = '';
  private pending: Pending[] = [];
  /** Replies that arrived before anyone asked (the greeting can beat the first read). */
  private early: { value?: unknown; error?: Error }[] = [];
  private readonly events: QmpEvent[] = [];
  private eventWaiters: { name: string; resolve: (e: QmpEvent) => void }[] = [];
  private closedWith: Error | null = null;

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    const fail = (e: Error): void => {
      this.closedWith ??= e;
      for (const p of this.pending.splice(0)) p.reject(e);
    };
    sock.on('error', (e) => fail(new QmpError(`QMP socket: ${e.message}`)));
    sock.on('close', () => fail(new QmpError('QMP socket closed by QEMU')));
  }

  /** Connects to `path`, retrying while QEMU has not yet created the socket; negotiates capabilities. */
  static async connect(path: string, timeoutMs: number, alive: () => boolean): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const c = new QmpClient(sock);
        await c.next(); // greeting: {"QMP": {...}}
        await c.execute('qmp_capabilities');
        return c;
      } catch (e) {
        if (!alive()) throw new QmpError('QEMU exited before its QMP socket answered');
        if (Date.now() > deadline) throw new QmpError(`no QMP answer on ${path} within ${timeoutMs} ms: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (typeof msg.event === 'string') {
        const ev: QmpEvent = { event: msg.event, data: msg.data };
        const w = this.eventWaiters.findIndex((x) => x.name === ev.event);
        if (w >= 0) this.eventWaiters.splice(w, 1)[0].resolve(ev);
        else this.events.push(ev);
        continue;
      }
      const err = msg.error as { class?: string; desc?: string } | undefined;
      const reply = err ? { error: new QmpError(`QMP: ${err.class ?? 'error'}: ${err.desc ?? line}`) } : { value: msg.return ?? msg };
      const p = this.pending.shift();
      if (!p) this.early.push(reply);
      else if (reply.error) p.reject(reply.error);
      else p.resolve(reply.value);
    }
  }

  private next(): Promise<unknown> {
    const r = this.early.shift();
    if (r) return r.error ? Promise.reject(r.error) : Promise.resolve(r.value);
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }

  /** Runs one command and returns its "return" value (or throws QmpError with QEMU's description). */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const p = this.next();
    this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    return p;
  }

  /** Resolves at the first event named `name` (one already received counts). */
  waitEvent(name: string): Promise<QmpEvent> {
    const i = this.events.findIndex((e) => e.event === name);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0]);
    return new Promise((resolve) => this.eventWaiters.push({ name, resolve }));
  }

  close(): void {
    this.sock.destroy();
  }
}
