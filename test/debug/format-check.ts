// Checkers for the formats the debug outputs promise, written from the format rules
// so a test fails when an output breaks them:
// - Trace Event Format (Google's "Trace Event Format" document): per track, B/E pairs
//   nest and match by name, timestamps do not go back in file order, every flow id has
//   one start (s) and one finish (f, bp "e") no earlier than its start, counter values
//   are numbers;
// - XML well-formedness for the SVG: one root, tags nest and close, attributes quoted,
//   only the predefined entities or character references, no '<' in text.

interface Ev {
  name?: string;
  ph?: string;
  ts?: number;
  pid?: number;
  tid?: number;
  id?: number;
  bp?: string;
  args?: Record<string, unknown>;
}

export function traceEventErrors(doc: unknown): string[] {
  const errors: string[] = [];
  const events = (doc as { traceEvents?: unknown }).traceEvents;
  if (!Array.isArray(events)) return ['traceEvents is not an array'];
  const stacks = new Map<string, string[]>();
  const lastTs = new Map<string, number>();
  const flows = new Map<number, { s: number[]; f: number[] }>();
  events.forEach((raw, i) => {
    const e = raw as Ev;
    if (typeof e.ph !== 'string' || typeof e.pid !== 'number' || typeof e.name !== 'string') {
      errors.push(`event ${i}: needs ph, pid and name`);
      return;
    }
    if (e.ph === 'M') return;
    if (typeof e.ts !== 'number' || !Number.isFinite(e.ts)) {
      errors.push(`event ${i} (${e.ph} ${e.name}): ts is not a number`);
      return;
    }
    const track = `${e.pid}/${e.tid ?? ''}`;
    if (e.ph !== 'C') {
      const prev = lastTs.get(track) ?? -Infinity;
      if (e.ts < prev) errors.push(`event ${i} (${e.ph} ${e.name}): ts ${e.ts} goes back from ${prev} on track ${track}`);
      lastTs.set(track, e.ts);
    }
    switch (e.ph) {
      case 'B': {
        const st = stacks.get(track) ?? [];
        st.push(e.name);
        stacks.set(track, st);
        break;
      }
      case 'E': {
        const st = stacks.get(track) ?? [];
        const top = st.pop();
        if (top === undefined) errors.push(`event ${i}: E ${e.name} on track ${track} with no open B`);
        else if (top !== e.name) errors.push(`event ${i}: E ${e.name} on track ${track} closes B ${top}`);
        break;
      }
      case 's':
      case 'f': {
        if (typeof e.id !== 'number') {
          errors.push(`event ${i}: flow without an id`);
          break;
        }
        const fl = flows.get(e.id) ?? { s: [], f: [] };
        fl[e.ph].push(e.ts);
        flows.set(e.id, fl);
        if (e.ph === 'f' && e.bp !== 'e') errors.push(`event ${i}: flow finish without bp "e"`);
        break;
      }
      case 'C':
        for (const [k, v] of Object.entries(e.args ?? {})) if (typeof v !== 'number') errors.push(`event ${i}: counter ${e.name}.${k} is not a number`);
        break;
      case 'i':
        break;
      default:
        errors.push(`event ${i}: unexpected phase ${e.ph}`);
    }
  });
  for (const [track, st] of stacks) if (st.length) errors.push(`track ${track}: B without E: ${st.join(' > ')}`);
  for (const [id, fl] of flows) {
    if (fl.s.length !== 1 || fl.f.length !== 1) errors.push(`flow ${id}: ${fl.s.length} start(s), ${fl.f.length} finish(es)`);
    else if (fl.f[0] < fl.s[0]) errors.push(`flow ${id}: finishes at ${fl.f[0]} before it starts at ${fl.s[0]}`);
  }
  return errors;
}

/** Well-formedness errors of an XML document (empty when well-formed). */
export function xmlErrors(text: string): string[] {
  const errors: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  const badText = (s: string, at: number): void => {
    const amp = /&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.exec(s);
    if (amp) errors.push(`offset ${at + amp.index}: bare '&'`);
  };
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const chunk = lt < 0 ? text.slice(i) : text.slice(i, lt);
    badText(chunk, i);
    if (chunk.trim() && stack.length === 0) errors.push(`offset ${i}: text outside the root element`);
    if (lt < 0) break;
    if (text.startsWith('<?', lt)) {
      const e = text.indexOf('?>', lt);
      if (e < 0) return [...errors, `offset ${lt}: unterminated processing instruction`];
      i = e + 2;
      continue;
    }
    if (text.startsWith('<!--', lt)) {
      const e = text.indexOf('-->', lt);
      if (e < 0) return [...errors, `offset ${lt}: unterminated comment`];
      i = e + 3;
      continue;
    }
    const gt = text.indexOf('>', lt);
    if (gt < 0) return [...errors, `offset ${lt}: unterminated tag`];
    const tag = text.slice(lt + 1, gt);
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) errors.push(`offset ${lt}: </${name}> closes <${open ?? 'nothing'}>`);
    } else {
      const selfClose = tag.endsWith('/');
      const body = selfClose ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*$/.exec(body);
      if (!m) errors.push(`offset ${lt}: malformed tag <${tag.slice(0, 40)}>`);
      else {
        const names = [...m[2].matchAll(/([A-Za-z_][\w:.-]*)\s*=/g)].map((x) => x[1]);
        if (new Set(names).size !== names.length) errors.push(`offset ${lt}: repeated attribute in <${m[1]}>`);
        badText(m[2], lt);
        if (stack.length === 0) roots++;
        if (!selfClose) stack.push(m[1]);
      }
    }
    i = gt + 1;
  }
  if (stack.length) errors.push(`unclosed: ${stack.join(' > ')}`);
  if (roots !== 1) errors.push(`${roots} root elements`);
  return errors;
}
