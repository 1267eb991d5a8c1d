// GDB remote serial protocol framing (GDB manual, "Remote Protocol" > "Overview"):
// `$payload#cs` packets with a modulo-256 checksum, `+`/`-` acknowledgements until
// QStartNoAckMode, `}` escapes (byte ^ 0x20) for `#`, `$`, `}` and `*` in binary data,
// and the out-of-band 0x03 byte that asks a running target to stop (Ctrl-C).
// Pure functions and a byte-stream parser: no sockets, so tests can feed it bytes.

/** What the parser found in the byte stream. */
export type RspEvent =
  | { kind: 'packet'; payload: string }
  /** A packet whose checksum did not match: answer '-' so gdb resends it. */
  | { kind: 'bad-checksum' }
  | { kind: 'interrupt' }
  | { kind: 'ack' }
  | { kind: 'nak' };

function checksum(payload: string): number {
  let s = 0;
  for (let i = 0; i < payload.length; i++) s = (s + payload.charCodeAt(i)) & 0xff;
  return s;
}

/** `$payload#cs`, escaping the bytes the framing reserves. Payload is latin1 (one char = one byte). */
export function frame(payload: string): string {
  const esc = payload.replace(/[#$}*]/g, (c) => '}' + String.fromCharCode(c.charCodeAt(0) ^ 0x20));
  return `$${esc}#${checksum(esc).toString(16).padStart(2, '0')}`;
}

/** Undoes `}` escapes in a received packet (binary payloads such as X). */
export function unescape(payload: string): string {
  if (!payload.includes('}')) return payload;
  let out = '';
  for (let i = 0; i < payload.length; i++) {
    const c = payload[i];
    if (c === '}' && i + 1 < payload.length) out += String.fromCharCode(payload.charCodeAt(++i) ^ 0x20);
    else out += c;
  }
  return out;
}

/** Splits a byte stream into packets, acks and interrupts, across arbitrary chunk boundaries. */
export class RspParser {
  private buf = '';

  feed(chunk: string): RspEvent[] {
    this.buf += chunk;
    const out: RspEvent[] = [];
    for (;;) {
      if (this.buf.length === 0) break;
      const c = this.buf[0];
      if (c === '+') {
        out.push({ kind: 'ack' });
        this.buf = this.buf.slice(1);
      } else if (c === '-') {
        out.push({ kind: 'nak' });
        this.buf = this.buf.slice(1);
      } else if (c === '\x03') {
        out.push({ kind: 'interrupt' });
        this.buf = this.buf.slice(1);
      } else if (c === '$') {
        const hash = this.buf.indexOf('#');
        if (hash < 0 || this.buf.length < hash + 3) break;
        const body = this.buf.slice(1, hash);
        const sum = parseInt(this.buf.slice(hash + 1, hash + 3), 16);
        this.buf = this.buf.slice(hash + 3);
        out.push(sum === checksum(body) ? { kind: 'packet', payload: unescape(body) } : { kind: 'bad-checksum' });
      } else {
        // Noise between packets (gdb sends none; a person typing at a socket might).
        this.buf = this.buf.slice(1);
      }
    }
    return out;
  }
}

// ---- Hex encodings the packets use ----

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Hex pairs to bytes; null when the text is not an even run of hex digits. */
export function fromHex(hex: string): Uint8Array | null {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function textToHex(text: string): string {
  return toHex(Buffer.from(text, 'utf8'));
}

export function hexToText(hex: string): string | null {
  const b = fromHex(hex);
  return b ? Buffer.from(b).toString('utf8') : null;
}

/** Little-endian bytes of a value `n` bytes wide (registers travel target-endian). */
export function leBytes(v: bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = BigInt.asUintN(n * 8, v);
  for (let i = 0; i < n; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

export function fromLe(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}
