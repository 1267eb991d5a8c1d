// The TCP side of the gdb stub: listens on 127.0.0.1, serves one connection at a time
// with a GdbSession, and runs resumptions in chunks of machine steps with a turn of
// the event loop between them, so a Ctrl-C (0x03) from gdb stops the machine at the
// next chunk boundary. The machine itself stays deterministic: chunks end at slice
// boundaries and nothing here reads the clock.

import { createServer, type Server, type Socket } from 'net';
import type { ScenarioRun } from '../kernel-model/scenario/run';
import { GdbSession } from './gdb-session';
import { RspParser, frame, textToHex } from './rsp';
import type { Resume } from './execution';

export interface GdbServerOptions {
  /** 0: an ephemeral port (the listening port is in `port` once `listen` resolves). */
  port?: number;
  /** Packet log for --verbose: each line as it goes in or out. */
  log?: (line: string) => void;
}

export class GdbServer {
  private readonly server: Server;
  private session: GdbSession | null = null;
  port = 0;
  /** Resolves when the first connection ends (gdb detached, killed, or went away). */
  readonly finished: Promise<void>;
  private finish!: () => void;

  constructor(
    readonly run: ScenarioRun,
    private readonly opts: GdbServerOptions = {},
  ) {
    this.finished = new Promise((r) => (this.finish = r));
    this.server = createServer((sock) => this.serve(sock));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 0, '127.0.0.1', () => {
        const a = this.server.address();
        this.port = typeof a === 'object' && a ? a.port : 0;
        resolve(this.port);
      });
    });
  }

  close(): void {
    this.server.close();
  }

  private serve(sock: Socket): void {
    if (this.session) {
      // One debugger at a time: a second one would fight over the same machine.
      sock.end();
      return;
    }
    const session = new GdbSession(this.run);
    this.session = session;
    const parser = new RspParser();
    let running = false;
    let interrupt = false;
    let lastSent = '';
    sock.setEncoding('latin1');
    sock.setNoDelay(true);
    const log = this.opts.log;
    const send = (payload: string): void => {
      log?.(`<- ${payload.length > 200 ? payload.slice(0, 200) + '…' : payload}`);
      lastSent = frame(payload);
      sock.write(lastSent, 'latin1');
    };
    const end = (): void => {
      sock.end();
      this.session = null;
      this.close();
      this.finish();
    };
    const runChunks = (r: Resume): void => {
      running = true;
      const tick = (): void => {
        if (sock.destroyed) return;
        if (interrupt) {
          interrupt = false;
          running = false;
          send(session.stopReply(session.target.interrupted(session.target.last.cpu)));
          return;
        }
        const stop = session.target.resume(r);
        if (!stop) {
          setImmediate(tick);
          return;
        }
        running = false;
        const msg = session.stopMessage(stop);
        if (msg) send('O' + textToHex(msg));
        send(session.stopReply(stop));
      };
      setImmediate(tick);
    };
    sock.on('data', (chunk: string) => {
      for (const ev of parser.feed(chunk)) {
        if (ev.kind === 'interrupt') {
          log?.('-> ^C');
          if (running) interrupt = true;
          continue;
        }
        if (ev.kind === 'nak') {
          if (lastSent) sock.write(lastSent, 'latin1');
          continue;
        }
        if (ev.kind === 'ack') continue;
        if (ev.kind === 'bad-checksum') {
          if (!session.noAck) sock.write('-');
          continue;
        }
        log?.(`-> ${ev.payload}`);
        if (!session.noAck) sock.write('+');
        if (running) continue; // gdb sends nothing but ^C while the target runs (all-stop mode).
        const act = session.handle(ev.payload);
        if (act.kind === 'reply') {
          // Console output in pieces well inside the packet size (two hex digits a byte).
          for (const o of act.output ?? []) for (let i = 0; i < o.length; i += 1024) send('O' + textToHex(o.slice(i, i + 1024)));
          send(act.payload);
        } else if (act.kind === 'resume') runChunks(act.resume);
        else {
          if (act.payload !== undefined) send(act.payload);
          end();
        }
      }
    });
    sock.on('close', () => {
      if (this.session === session) end();
    });
    sock.on('error', () => {
      // The close handler ends the session.
    });
  }
}

/** Starts a stub on the run and resolves with the server once it listens. */
export async function serveGdb(run: ScenarioRun, opts: GdbServerOptions = {}): Promise<GdbServer> {
  const s = new GdbServer(run, opts);
  await s.listen();
  return s;
}
