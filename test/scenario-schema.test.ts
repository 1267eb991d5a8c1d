// The scenario schema is what the loader enforces: held to Ajv (a full JSON Schema
// 2020-12 implementation) on every committed scenario and on thousands of broken ones,
// to the TypeScript constants its enums repeat, to the loader's defaults, and to the
// README's field reference.

import { readFileSync, readdirSync, statSync } from 'fs';
import { join } from 'path';
import Ajv2020 from 'ajv/dist/2020';
import { SCENARIO_SCHEMA, parseScenario, PREEMPTION_MODELS, type Scenario } from '../kernel-model/scenario/scenario-file';
import { SchemaChecker, type Schema, type SchemaObject } from '../kernel-model/scenario/json-schema';
import { PATCH_STATE_NAMES } from '../kernel-model/linux/kernel-layout';
import { KERNEL_FUNCTIONS } from '../kernel-model/linux/text-poke-late';
import { MEMORY_MODELS, RMW_MODES } from '../emu/machine';
import { FIXTURES_DIR } from '../kernel-model/image/fixture-image';

const ROOT = join(__dirname, '..', '..');

function scenarioFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? scenarioFiles(p) : f.endsWith('.json') ? [p] : [];
  });
}

const FILES = scenarioFiles(join(FIXTURES_DIR, 'scenarios'));
// Strict, except that an `if: {required: [k]}` discriminator may name a property it does
// not define (it is defined beside the `if`): the standard idiom strictRequired flags.
const ajv = new Ajv2020({ strict: true, strictRequired: false, allowUnionTypes: true, allErrors: true });
ajv.addVocabulary(['x-expected']);
const ajvValidate = ajv.compile(SCENARIO_SCHEMA);
const checker = new SchemaChecker(SCENARIO_SCHEMA);

/** Ajv's `/inject/1/when` as the loader writes it: `inject[1].when`. */
function dotted(pointer: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out === '' ? '(top level)' : out;
}

/** Every path Ajv blames, with the missing or unknown property appended as the loader does. */
function ajvPaths(): Set<string> {
  const paths = new Set<string>();
  for (const e of ajvValidate.errors ?? []) {
    const base = e.instancePath;
    const p = e.params as { missingProperty?: string; additionalProperty?: string };
    const key = p.missingProperty ?? p.additionalProperty;
    paths.add(dotted(key === undefined ? base : `${base}/${key}`));
  }
  return paths;
}

describe('the scenario schema', () => {
  it('is valid JSON Schema 2020-12 under Ajv in strict mode', () => {
    expect(ajv.validateSchema(SCENARIO_SCHEMA)).toBe(true);
  });

  it('the checker refuses a schema keyword it does not enforce', () => {
    expect(() => new SchemaChecker({ type: 'object', patternProperties: {} } as unknown as SchemaObject)).toThrow(/keyword 'patternProperties' is not supported/);
    expect(() => new SchemaChecker({ $ref: '#/$defs/nope' })).toThrow(/\$ref '#\/\$defs\/nope' names no entry/);
  });

  it.each(FILES.map((f) => [f.slice(FIXTURES_DIR.length + 1)]))('%s is valid under Ajv and the loader', (rel) => {
    const json = JSON.parse(readFileSync(join(FIXTURES_DIR, rel), 'utf8')) as unknown;
    expect(ajvValidate(json) ? [] : ajv.errorsText(ajvValidate.errors)).toEqual([]);
    expect(checker.check(json)).toBeNull();
    expect(() => parseScenario(json, rel)).not.toThrow();
  });

  const BAD: [string, Record<string, unknown>, RegExp][] = [
    ['unknown top-level field', { nmis: 2 }, /^x\.json: nmis: unknown field \(expected one of: \$schema, name, /],
    ['cpus out of range', { cpus: 300 }, /^x\.json: cpus: expected an integer from 1 to 256, got 300$/],
    ['cpus missing', { cpus: undefined }, /^x\.json: cpus: missing \(expected an integer from 1 to 256\)$/],
    ['work not an array', { work: 3 }, /^x\.json: work: expected an array, got 3$/],
    ['work arg not a number', { work: [{ entry: 'workload_idle', arg: '12z' }, { entry: 'workload_idle' }] }, /^x\.json: work\[0\]\.arg: expected a non-negative integer or "0x…" string, got "12z"$/],
    ['fetch mode', { fetchMode: 'fast' }, /^x\.json: fetchMode: expected one of "coherent", "stale", got "fast"$/],
    ['memory model', { memoryModel: 'pso' }, /^x\.json: memoryModel: expected one of "sc", "tso", got "pso"$/],
    ['trigger with no kind', { inject: [{ nmi: 1, when: { cpu: 1 } }] }, /^x\.json: inject\[0\]\.when: expected a trigger: /],
    ['trigger state', { inject: [{ nmi: 1, when: { state: 'PATCH_SYNC_9' } }] }, /^x\.json: inject\[0\]\.when\.state: expected one of "PATCH_SYNC_0", /],
    ['trigger function', { inject: [{ nmi: 1, when: { function: 'poke', cpu: 1 } }] }, /^x\.json: inject\[0\]\.when\.function: expected one of "patch_worker", /],
    ['step trigger with a cpu', { inject: [{ nmi: 1, when: { step: 5, cpu: 1 } }] }, /^x\.json: inject\[0\]\.when\.cpu: unknown field \(expected one of: step\)$/],
    ['injection with no action', { inject: [{ when: { step: 5 } }] }, /^x\.json: inject\[0\]: expected an action: "nmi": <cpu> or "irq"/],
    ['irq vector below 16', { inject: [{ irq: { cpu: 0, vector: 2 }, when: { step: 5 } }] }, /^x\.json: inject\[0\]\.irq\.vector: expected an integer from 16 to 255, got 2$/],
    ['NMI to a CPU the scenario lacks', { inject: [{ nmi: 7, when: { step: 5 } }] }, /^x\.json: inject\[0\]\.nmi: expected an integer from 0 to 1 \(the scenario has 2 CPUs\), got 7$/],
    ['schedule kind', { schedule: { kind: 'fifo' } }, /^x\.json: schedule\.kind: expected one of "round-robin", "random", "list", got "fifo"$/],
    ['random schedule without seed', { schedule: { kind: 'random' } }, /^x\.json: schedule\.seed: missing \(expected an integer from 0 to 4294967295\)$/],
    ['round-robin with a seed', { schedule: { kind: 'round-robin', seed: 1 } }, /^x\.json: schedule\.seed: unknown field \(expected one of: kind, quantum\)$/],
    ['list slot shape', { schedule: { kind: 'list', slots: [[0, 5, 1]] } }, /^x\.json: schedule\.slots\[0\]: expected \[cpu, steps\], got \[0,5,1\]$/],
    ['list slot steps', { schedule: { kind: 'list', slots: [[0, 0]] } }, /^x\.json: schedule\.slots\[0\]\[1\]: expected an integer from 1 to 1000000000, got 0$/],
    ['patch op mode', { patch: { protocol: 'batch', ops: { 'lock.queued_spin_unlock': 'fast' } } }, /^x\.json: patch\.ops\.lock\.queued_spin_unlock: expected one of "native", "paravirt", got "fast"$/],
    ['patch protocol missing', { patch: { ops: { 'lock.queued_spin_unlock': 'native' } } }, /^x\.json: patch\.protocol: missing \(expected one of "batch", "stop-machine", "naive"\)$/],
    ['patch again empty', { patch: { protocol: 'stop-machine', ops: { 'lock.queued_spin_unlock': 'native' }, again: {} } }, /^x\.json: patch\.again: expected an object, got \{\}$/],
    ['poke length', { patch: { protocol: 'batch', pokes: [{ at: 'f', insn: 'nop', len: 16 }] } }, /^x\.json: patch\.pokes\[0\]\.len: expected an integer from 1 to 15, got 16$/],
    ['expect outcome', { expect: { outcome: 'crash' } }, /^x\.json: expect\.outcome: expected one of "deadlock", /],
    ['local image missing its map', { image: { vmlinux: 'v' } }, /^x\.json: image\.systemMap: missing \(expected the path of its System\.map\)$/],
  ];
  const base = { cpus: 2, work: [{ entry: 'workload_idle' }, { entry: 'workload_idle' }] };

  it.each(BAD)('%s: one line naming the field, and Ajv rejects it at that field too', (_name, change, message) => {
    const json = JSON.parse(JSON.stringify({ ...base, ...change })) as Record<string, unknown>;
    expect(() => parseScenario(json, 'x.json')).toThrow(message);
    const e = checker.check(json);
    if (e === null) return; // a cross-field check of the loader's own (CPU numbers against cpus): not the schema's
    expect(ajvValidate(json)).toBe(false);
    expect([...ajvPaths()]).toContain(e.path);
  });

  it('agrees with Ajv on 3,000 scenarios broken at random (seeded)', () => {
    const docs = FILES.map((f) => JSON.parse(readFileSync(f, 'utf8')) as unknown);
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const VALUES: unknown[] = [0, 1, -1, 2.5, 300, 1e12, '', 'x', 'native', 'PATCH_SYNC_0', '0x10', true, null, [], [0, 1], {}, { kind: 'random' }, { step: 1 }];
    let agreed = 0;
    let rejected = 0;
    for (let i = 0; i < 3000; i++) {
      const doc = JSON.parse(JSON.stringify(docs[rnd(docs.length)])) as unknown;
      // Pick a random container in the document and change one member of it.
      const containers: (Record<string, unknown> | unknown[])[] = [];
      const walk = (v: unknown): void => {
        if (v !== null && typeof v === 'object') {
          containers.push(v as Record<string, unknown>);
          for (const c of Object.values(v)) walk(c);
        }
      };
      walk(doc);
      const c = containers[rnd(containers.length)];
      const keys = Object.keys(c);
      const what = rnd(3);
      if (Array.isArray(c)) {
        if (what === 0 && c.length) c.splice(rnd(c.length), 1);
        else c[rnd(c.length + 1)] = VALUES[rnd(VALUES.length)];
      } else if (what === 0 && keys.length) delete c[keys[rnd(keys.length)]];
      else if (what === 1) c[['quantum', 'cpu', 'nmi', 'extra', 'seed', 'state', 'site'][rnd(7)]] = VALUES[rnd(VALUES.length)];
      else if (keys.length) c[keys[rnd(keys.length)]] = VALUES[rnd(VALUES.length)];
      const ours = checker.check(doc);
      const theirs = ajvValidate(doc);
      expect({ i, doc, ours: ours === null }).toEqual({ i, doc, ours: theirs });
      if (ours) {
        expect([...ajvPaths()]).toContain(ours.path);
        rejected++;
      }
      agreed++;
    }
    expect(agreed).toBe(3000);
    // The mutations must exercise the rejecting side as much as the accepting one.
    expect(rejected).toBeGreaterThan(1000);
    expect(rejected).toBeLessThan(2900);
  });

  it('repeats the TypeScript constants of the model exactly', () => {
    const defs = SCENARIO_SCHEMA.$defs as Record<string, SchemaObject>;
    const props = SCENARIO_SCHEMA.properties as Record<string, SchemaObject>;
    expect(defs.patchState.enum).toEqual(Object.values(PATCH_STATE_NAMES));
    expect(defs.kernelFunction.enum).toEqual([...KERNEL_FUNCTIONS]);
    expect(props.memoryModel.enum).toEqual([...MEMORY_MODELS]);
    expect(props.rmw.enum).toEqual([...RMW_MODES]);
    expect(props.preemption.enum).toEqual([...PREEMPTION_MODELS]);
  });

  it("its defaults are the loader's", () => {
    const s = parseScenario(base, 'x.json');
    const props = SCENARIO_SCHEMA.properties as Record<string, SchemaObject>;
    const withDefault = Object.entries(props).filter(([, p]) => p.default !== undefined);
    expect(withDefault.map(([k]) => k).sort()).toEqual(['fetchMode', 'image', 'maxSteps', 'memoryModel', 'paging', 'preemption', 'rmw', 'schedule']);
    for (const [k, p] of withDefault) expect([k, s[k as keyof Scenario]]).toEqual([k, p.default]);
    const patch = parseScenario({ ...base, patch: { protocol: 'stop-machine', ops: { 'lock.queued_spin_unlock': 'native' } } }, 'x.json').patch!;
    const pp = (props.patch.properties ?? {}) as Record<string, SchemaObject>;
    expect([patch.nmi, patch.variant]).toEqual([pp.nmi.default, pp.variant.default]);
    expect(parseScenario({ ...base, work: [{ entry: 'a' }, { entry: 'b', arg: '0x10' }] }, 'x.json').work.map((w) => w.arg)).toEqual([0n, 16n]);
  });

  it('every field is described in the README, with an example', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = /## Scenario files\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
    const example = /```json\n(\{[\s\S]*?\})\n```/.exec(section)?.[1];
    expect(example).toBeDefined();
    expect(parseScenario(JSON.parse(example!), 'README.md').expect).toEqual({ outcome: 'deadlock', cycle: [0, 1] });
    const names = new Set<string>();
    const collect = (s: Schema): void => {
      if (typeof s === 'boolean') return;
      for (const [k, p] of Object.entries(s.properties ?? {})) {
        names.add(k);
        collect(p);
      }
      for (const sub of [s.items, s.then, s.else, s.additionalProperties]) if (sub !== undefined) collect(sub);
      for (const d of Object.values(s.$defs ?? {})) collect(d);
    };
    collect(SCENARIO_SCHEMA);
    // Named as `field` or inside an example as "field".
    const missing = [...names].filter((n) => !section.includes(`\`${n}\``) && !section.includes(`"${n}"`));
    expect(missing).toEqual([]);
  });
});
