// A reader for BTF, the BPF Type Format a kernel built with CONFIG_DEBUG_INFO_BTF
// carries in its .BTF section: every C type of the kernel, compactly. textpoke reads
// struct layouts from it (alt_instr, paravirt_patch_site, paravirt_patch_template) so
// that a kernel loads without a per-version table of offsets. No npm package reads
// BTF, so this is our own, after the format in the kernel's Documentation/bpf/btf.rst.
//
// Format: a header (magic 0xEB9F, version 1, header length, then the type and string
// sections' offsets and lengths, relative to the header's end), a string table of
// NUL-terminated names, and a type table of records numbered from 1 (0 is void). Each
// record is 12 bytes { name_off, info = kind<<24 | kind_flag<<31 | vlen, size|type }
// followed by kind-specific data.

import { LoadError } from './elf';

export const BTF_MAGIC = 0xeb9f;

export const enum BtfKind {
  Int = 1, Ptr = 2, Array = 3, Struct = 4, Union = 5, Enum = 6, Fwd = 7, Typedef = 8, Volatile = 9,
  Const = 10, Restrict = 11, Func = 12, FuncProto = 13, Var = 14, Datasec = 15, Float = 16,
  DeclTag = 17, TypeTag = 18, Enum64 = 19,
}

export interface BtfMember {
  name: string;
  type: number;
  /** Offset from the start of the aggregate, in bits. */
  bitOffset: number;
  /** Width of a bitfield, 0 when the member is not one. */
  bitSize: number;
}

export interface BtfType {
  id: number;
  kind: BtfKind;
  name: string;
  /** Byte size (int, struct, union, enum, datasec, float); 0 for kinds without one. */
  size: number;
  /** The referenced type (ptr, typedef, modifiers, func, var). */
  ref: number;
  members: BtfMember[];
  /** Arrays: element type and count. */
  array?: { type: number; nelems: number };
  /** Ints: the encoding's signed bit. */
  signed?: boolean;
}

/** One scalar of a struct with nested structs and unions flattened away. */
export interface BtfField {
  /** Member names from the outer struct inward, anonymous levels left out ("mmu.lazy_mode.enter"). */
  path: string;
  /** Byte offset of the storage unit, and for a bitfield its bit offset and width within the struct. */
  offset: number;
  size: number;
  bitOffset: number;
  bitSize: number;
  /** The scalar's kind after typedefs and modifiers: int, pointer, enum, array … */
  kind: BtfKind;
  signed: boolean;
}

/** Bytes per entry after the record, for the kinds with a size whose entries are skipped. */
const SIZED_ENTRY_BYTES: Partial<Record<BtfKind, number>> = { [BtfKind.Enum]: 8, [BtfKind.Enum64]: 12, [BtfKind.Datasec]: 12 };

const MODIFIERS = new Set<BtfKind>([BtfKind.Typedef, BtfKind.Volatile, BtfKind.Const, BtfKind.Restrict, BtfKind.TypeTag]);

export class Btf {
  private readonly byName = new Map<string, BtfType[]>();

  constructor(readonly types: readonly BtfType[], readonly label: string) {
    for (const t of types) {
      if (!t || !t.name) continue;
      const l = this.byName.get(t.name) ?? [];
      l.push(t);
      this.byName.set(t.name, l);
    }
  }

  type(id: number): BtfType {
    const t = this.types[id];
    if (!t) throw new LoadError(`${this.label}: BTF type id ${id} does not exist`);
    return t;
  }

  /** Follows typedefs and const/volatile/restrict/type tags to the type they name. */
  resolve(id: number): BtfType | null {
    let t = id === 0 ? null : this.type(id);
    for (let n = 0; t && MODIFIERS.has(t.kind) && n < 64; n++) t = t.ref === 0 ? null : this.type(t.ref);
    return t;
  }

  /** The struct (or union) with this name, or null. */
  struct(name: string): BtfType | null {
    return this.byName.get(name)?.find((t) => (t.kind === BtfKind.Struct || t.kind === BtfKind.Union) && t.size > 0) ?? null;
  }

  /** Like struct(), but a LoadError naming the struct and the image when it is missing. */
  requireStruct(name: string): BtfType {
    const s = this.struct(name);
    if (!s) throw new LoadError(`${this.label}: BTF has no struct ${name}`);
    return s;
  }

  /** Byte size of a type (following modifiers; arrays multiply out). */
  sizeOf(id: number): number {
    const t = this.resolve(id);
    if (!t) return 0;
    if (t.kind === BtfKind.Ptr) return 8;
    if (t.kind === BtfKind.Array) return t.array!.nelems * this.sizeOf(t.array!.type);
    return t.size;
  }

  /**
   * The scalars of a struct in offset order, nested structs and unions flattened
   * (anonymous ones add nothing to the path). `leaf` can stop the descent at a named
   * member (a struct to be taken as a unit, such as paravirt_callee_save).
   */
  fields(name: string, leaf: (t: BtfType) => boolean = () => false): BtfField[] {
    const out: BtfField[] = [];
    const walk = (t: BtfType, base: number, prefix: string): void => {
      for (const m of t.members) {
        const mt = this.resolve(m.type);
        const path = m.name ? (prefix ? `${prefix}.${m.name}` : m.name) : prefix;
        const bit = base + m.bitOffset;
        if (mt && (mt.kind === BtfKind.Struct || mt.kind === BtfKind.Union) && !leaf(mt)) {
          walk(mt, bit, path);
          continue;
        }
        const signed = mt?.signed === true;
        out.push({
          path, offset: Math.floor(bit / 8), size: this.sizeOf(m.type), bitOffset: bit, bitSize: m.bitSize,
          kind: mt?.kind ?? BtfKind.Int, signed,
        });
      }
    };
    walk(this.requireStruct(name), 0, '');
    return out.sort((a, b) => a.bitOffset - b.bitOffset);
  }

  /** A named field of a flattened struct, or a LoadError naming struct and field. */
  field(struct: string, path: string): BtfField {
    const f = this.fields(struct).find((x) => x.path === path);
    if (!f) throw new LoadError(`${this.label}: BTF struct ${struct} has no field ${path}`);
    return f;
  }

  /** The number of elements of an array field (e.g. cpuinfo_x86.x86_capability, which sits in an anonymous union). */
  arrayLength(struct: string, path: string): number {
    const f = this.fields(struct).find((x) => x.path === path && x.kind === BtfKind.Array);
    if (!f) throw new LoadError(`${this.label}: BTF struct ${struct} has no array field ${path}`);
    const m = this.findMember(this.requireStruct(struct), path.split('.'));
    const t = m ? this.resolve(m.type) : null;
    return t?.array?.nelems ?? 0;
  }

  /** The member a flattened path names (anonymous levels searched through). */
  private findMember(t: BtfType, path: string[]): BtfMember | null {
    for (const m of t.members) {
      const mt = this.resolve(m.type);
      if (m.name === path[0]) {
        if (path.length === 1) return m;
        if (mt) return this.findMember(mt, path.slice(1));
      } else if (!m.name && mt) {
        const r = this.findMember(mt, path);
        if (r) return r;
      }
    }
    return null;
  }
}

/** Parses a .BTF section. Errors name the byte offset within it. */
export function parseBtf(buf: Uint8Array, label = '.BTF'): Btf {
  const fail = (at: number, what: string): never => {
    throw new LoadError(`${label}: .BTF byte 0x${at.toString(16)}: ${what}`);
  };
  if (buf.length < 24) fail(0, `section is ${buf.length} bytes, too short for a BTF header`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = dv.getUint16(0, true);
  if (magic !== BTF_MAGIC) fail(0, `magic 0x${magic.toString(16)}, expected 0xeb9f (a little-endian BTF)`);
  if (buf[2] !== 1) fail(2, `BTF version ${buf[2]}, expected 1`);
  const hdrLen = dv.getUint32(4, true);
  const typeOff = dv.getUint32(8, true);
  const typeLen = dv.getUint32(12, true);
  const strOff = dv.getUint32(16, true);
  const strLen = dv.getUint32(20, true);
  const types0 = hdrLen + typeOff;
  const strs0 = hdrLen + strOff;
  if (types0 + typeLen > buf.length) fail(12, `type section [0x${types0.toString(16)}, +0x${typeLen.toString(16)}) runs past the section's end`);
  if (strs0 + strLen > buf.length) fail(20, `string section [0x${strs0.toString(16)}, +0x${strLen.toString(16)}) runs past the section's end`);
  const decoder = new TextDecoder('latin1');
  const str = (off: number, at: number): string => {
    if (off === 0) return '';
    if (off >= strLen) fail(at, `name offset 0x${off.toString(16)} is past the string section (0x${strLen.toString(16)} bytes)`);
    let e = strs0 + off;
    while (e < strs0 + strLen && buf[e] !== 0) e++;
    return decoder.decode(buf.subarray(strs0 + off, e));
  };

  const types: BtfType[] = [undefined as unknown as BtfType];
  let o = types0;
  const end = types0 + typeLen;
  while (o < end) {
    if (o + 12 > end) fail(o, 'truncated type record');
    const at = o;
    const info = dv.getUint32(o + 4, true);
    const kind = ((info >>> 24) & 0x1f) as BtfKind;
    const vlen = info & 0xffff;
    const kflag = (info >>> 31) === 1;
    const sizeOrType = dv.getUint32(o + 8, true);
    const t: BtfType = { id: types.length, kind, name: str(dv.getUint32(o, true), o), size: 0, ref: 0, members: [] };
    o += 12;
    switch (kind) {
      case BtfKind.Int: {
        const enc = dv.getUint32(o, true);
        t.size = sizeOrType;
        t.signed = ((enc >>> 24) & 1) === 1;
        o += 4;
        break;
      }
      case BtfKind.Ptr: case BtfKind.Typedef: case BtfKind.Volatile: case BtfKind.Const: case BtfKind.Restrict:
      case BtfKind.Func: case BtfKind.TypeTag: case BtfKind.Fwd:
        t.ref = sizeOrType;
        break;
      case BtfKind.Array:
        t.array = { type: dv.getUint32(o, true), nelems: dv.getUint32(o + 8, true) };
        o += 12;
        break;
      case BtfKind.Struct: case BtfKind.Union:
        t.size = sizeOrType;
        for (let i = 0; i < vlen; i++, o += 12) {
          const off = dv.getUint32(o + 8, true);
          t.members.push({
            name: str(dv.getUint32(o, true), o), type: dv.getUint32(o + 4, true),
            bitOffset: kflag ? off & 0xffffff : off, bitSize: kflag ? off >>> 24 : 0,
          });
        }
        break;
      case BtfKind.Enum: case BtfKind.Enum64: case BtfKind.Datasec: case BtfKind.Float:
        // Kinds with a byte size; their entries (names, values, variables) are not needed.
        t.size = sizeOrType;
        o += (SIZED_ENTRY_BYTES[kind] ?? 0) * vlen;
        break;
      case BtfKind.FuncProto: case BtfKind.Var: case BtfKind.DeclTag:
        t.ref = sizeOrType;
        o += kind === BtfKind.FuncProto ? 8 * vlen : 4;
        break;
      default:
        fail(at, `type ${types.length}: unknown BTF kind ${kind}`);
    }
    if (o > end) fail(at, `type ${types.length} (kind ${kind}) runs past the type section`);
    types.push(t);
  }
  return new Btf(types, label);
}
