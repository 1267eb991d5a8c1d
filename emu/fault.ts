// Guest exceptions raised by instruction semantics. A leaf module (see regs.ts).

/** A guest exception raised by an instruction; emu/run.ts delivers it through the IDT. */
export class GuestException {
  constructor(
    readonly vector: number,
    readonly errorCode: number | null = null,
    /** Why, for diagnostics (the #UD of an unimplemented instruction names it). */
    readonly detail = '',
  ) {}
}
