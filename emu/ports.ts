// The I/O port space. Devices claim ports; an unclaimed port reads as all ones and
// ignores writes, as on a PC bus with nothing behind the address.

export interface PortDevice {
  in(port: number, size: number): number;
  out(port: number, size: number, value: number): void;
}

export class PortBus {
  private readonly devices = new Map<number, PortDevice>();

  claim(port: number, dev: PortDevice): void {
    this.devices.set(port & 0xffff, dev);
  }

  in(port: number, size: number): number {
    const d = this.devices.get(port & 0xffff);
    if (d) return d.in(port & 0xffff, size);
    return size === 1 ? 0xff : size === 2 ? 0xffff : -1;
  }

  out(port: number, size: number, value: number): void {
    this.devices.get(port & 0xffff)?.out(port & 0xffff, size, value);
  }
}
