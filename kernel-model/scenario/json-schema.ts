// A checker for the part of JSON Schema (draft 2020-12) that scenario files use, so
// that the schema shipped for editors is also the one the loader enforces, and its
// first error reads as one line in the project's style ("inject[1].when.state:
// expected one of …, got …") rather than a validator's list of keyword failures.
//
// Keywords outside the subset are refused when the schema is compiled, so a schema
// cannot quietly say more than is checked. The test suite holds this checker to Ajv,
// a full JSON Schema implementation, on every committed scenario and a table of bad
// ones (test/scenario-schema.test.ts).

export type Schema = boolean | SchemaObject;

export interface SchemaObject {
  $schema?: string;
  $id?: string;
  $ref?: string;
  $defs?: Record<string, Schema>;
  $comment?: string;
  title?: string;
  description?: string;
  default?: unknown;
  examples?: unknown[];
  /** What an error at this node says was expected (an annotation of this project's own). */
  'x-expected'?: string;
  type?: JsonType | JsonType[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  pattern?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: Schema;
  minProperties?: number;
  items?: Schema;
  prefixItems?: Schema[];
  minItems?: number;
  maxItems?: number;
  if?: Schema;
  then?: Schema;
  else?: Schema;
}

export type JsonType = 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean' | 'null';

export const SUPPORTED_KEYWORDS: readonly string[] = [
  '$schema', '$id', '$ref', '$defs', '$comment', 'title', 'description', 'default', 'examples', 'x-expected',
  'type', 'enum', 'const', 'minimum', 'maximum', 'minLength', 'pattern',
  'properties', 'required', 'additionalProperties', 'minProperties',
  'items', 'prefixItems', 'minItems', 'maxItems', 'if', 'then', 'else',
];

/** The first violation: where (a path like `inject[1].when`) and what was expected. */
export interface SchemaError {
  path: string;
  message: string;
}

export class SchemaChecker {
  private readonly patterns = new Map<string, RegExp>();

  /** Refuses a schema that uses a keyword this checker does not enforce, or a dangling $ref. */
  constructor(readonly root: SchemaObject) {
    this.compile(root, '#');
  }

  /** Null when `value` is valid; otherwise its first violation in document order. */
  check(value: unknown): SchemaError | null {
    return this.node(this.root, value, '', undefined);
  }

  private compile(s: Schema, at: string): void {
    if (typeof s === 'boolean') return;
    for (const k of Object.keys(s)) if (!SUPPORTED_KEYWORDS.includes(k)) throw new Error(`schema ${at}: keyword '${k}' is not supported by the checker`);
    if (s.$ref !== undefined) this.resolve(s.$ref, at);
    if (s.pattern !== undefined) this.patterns.set(s.pattern, new RegExp(s.pattern, 'u'));
    for (const [k, d] of Object.entries(s.$defs ?? {})) this.compile(d, `${at}/$defs/${k}`);
    for (const [k, p] of Object.entries(s.properties ?? {})) this.compile(p, `${at}/properties/${k}`);
    (s.prefixItems ?? []).forEach((p, i) => this.compile(p, `${at}/prefixItems/${i}`));
    for (const k of ['additionalProperties', 'items', 'if', 'then', 'else'] as const) {
      const sub = s[k];
      if (sub !== undefined) this.compile(sub, `${at}/${k}`);
    }
  }

  private resolve(ref: string, at: string): Schema {
    const m = /^#\/\$defs\/([^/]+)$/.exec(ref);
    const target = m ? this.root.$defs?.[m[1]] : undefined;
    if (target === undefined) throw new Error(`schema ${at}: $ref '${ref}' names no entry of $defs`);
    return target;
  }

  /** `expected` is the nearest enclosing x-expected, for a `false` branch to report. */
  private node(s: Schema, v: unknown, path: string, expected: string | undefined): SchemaError | null {
    if (s === true) return null;
    if (s === false) return this.error(path, `expected ${expected ?? 'nothing here'}, got ${show(v)}`);
    const want = s['x-expected'] ?? expected;
    // As in 2020-12, a $ref applies beside its sibling keywords, not instead of them.
    if (s.$ref !== undefined) {
      const e = this.node(this.resolve(s.$ref, path), v, path, want);
      if (e) return e;
    }
    const bad = (): SchemaError => this.error(path, `expected ${s['x-expected'] ?? describe(s)}, got ${show(v)}`);
    if (s.type !== undefined && !(Array.isArray(s.type) ? s.type : [s.type]).some((t) => isType(v, t))) return bad();
    if (s.enum !== undefined && !s.enum.some((e) => same(e, v))) return bad();
    if (s.const !== undefined && !same(s.const, v)) return bad();
    if (typeof v === 'number' && ((s.minimum !== undefined && v < s.minimum) || (s.maximum !== undefined && v > s.maximum))) return bad();
    if (typeof v === 'string') {
      if (s.minLength !== undefined && [...v].length < s.minLength) return bad();
      if (s.pattern !== undefined && !this.patterns.get(s.pattern)!.test(v)) return bad();
    }
    if (Array.isArray(v)) {
      if ((s.minItems !== undefined && v.length < s.minItems) || (s.maxItems !== undefined && v.length > s.maxItems)) return bad();
      const prefix = s.prefixItems ?? [];
      for (let i = 0; i < v.length; i++) {
        const item = i < prefix.length ? prefix[i] : s.items;
        const e = item === undefined ? null : this.node(item, v[i], `${path}[${i}]`, undefined);
        if (e) return e;
      }
    }
    if (isObject(v)) {
      const props = s.properties ?? {};
      if (s.additionalProperties === false) {
        const known = Object.keys(props);
        for (const k of Object.keys(v)) if (!known.includes(k)) return this.error(join(path, k), `unknown field (expected one of: ${known.join(', ')})`);
      }
      for (const k of s.required ?? []) {
        if (!(k in v)) return this.error(join(path, k), `missing (expected ${props[k] === undefined ? 'a value' : describe(this.deref(props[k]))})`);
      }
      if (s.minProperties !== undefined && Object.keys(v).length < s.minProperties) return bad();
      for (const [k, p] of Object.entries(props)) {
        if (!(k in v)) continue;
        const e = this.node(p, v[k], join(path, k), undefined);
        if (e) return e;
      }
      if (s.additionalProperties !== undefined && s.additionalProperties !== false) {
        for (const k of Object.keys(v)) {
          if (k in props) continue;
          const e = this.node(s.additionalProperties, v[k], join(path, k), undefined);
          if (e) return e;
        }
      }
    }
    if (s.if !== undefined) {
      const branch = this.node(s.if, v, path, undefined) === null ? s.then : s.else;
      if (branch !== undefined) return this.node(branch, v, path, want);
    }
    return null;
  }

  private deref(s: Schema): Schema {
    return typeof s === 'object' && s.$ref !== undefined ? this.resolve(s.$ref, '') : s;
  }

  private error(path: string, message: string): SchemaError {
    return { path: path === '' ? '(top level)' : path, message };
  }
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isType(v: unknown, t: JsonType): boolean {
  switch (t) {
    case 'object': return isObject(v);
    case 'array': return Array.isArray(v);
    case 'string': return typeof v === 'string';
    case 'integer': return typeof v === 'number' && Number.isInteger(v);
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'boolean': return typeof v === 'boolean';
    case 'null': return v === null;
  }
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What a node accepts, in words: "an integer from 1 to 256", `one of "sc", "tso"`. */
export function describe(s: Schema): string {
  if (typeof s === 'boolean') return s ? 'anything' : 'nothing';
  if (s['x-expected'] !== undefined) return s['x-expected'];
  if (s.enum !== undefined) return `one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`;
  if (s.const !== undefined) return JSON.stringify(s.const);
  const types = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
  return types.map((t) => describeType(s, t)).join(' or ') || 'a valid value';
}

function describeType(s: SchemaObject, t: JsonType): string {
  switch (t) {
    case 'integer':
    case 'number': {
      const noun = t === 'integer' ? 'an integer' : 'a number';
      if (s.minimum !== undefined && s.maximum !== undefined) return `${noun} from ${s.minimum} to ${s.maximum}`;
      if (s.minimum !== undefined) return `${noun} of at least ${s.minimum}`;
      return s.maximum !== undefined ? `${noun} of at most ${s.maximum}` : noun;
    }
    case 'string': return s.minLength ? 'a non-empty string' : 'a string';
    case 'boolean': return 'true or false';
    case 'object': return 'an object';
    case 'array': return 'an array';
    case 'null': return 'null';
  }
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? 'nothing' : s.length > 40 ? s.slice(0, 40) + '…' : s;
}
