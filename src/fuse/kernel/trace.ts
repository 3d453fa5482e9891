/**
 * `-d` on stratafs's own server: one line per request as the kernel sent it, written when it
 * is answered (opcode, unique, node id, caller uid/pid, the result: an errno name or the
 * reply's size, and the time from decoding to the answer), and one line at arrival for the
 * requests that get no answer (FORGET, BATCH_FORGET, INTERRUPT). Without -d the server holds
 * no Trace and pays one `undefined` check per request.
 */
import { performance } from 'node:perf_hooks';
import { osErrName } from '../requests.js';
import { Op } from './wire.js';

const NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));
export const opName = (op: number): string => NAMES.get(op) ?? `OP${op}`;

/** the 64-bit unique from its halves, exact */
const uniqueOf = (lo: number, hi: number): string => (hi === 0 ? String(lo) : ((BigInt(hi) << 32n) | BigInt(lo)).toString());

export class Trace {
  // per pending request id (the server's ReqId): what it was and when it came
  private readonly head: string[] = [];
  private readonly t0: number[] = [];

  constructor(private readonly log: (line: string) => void) {}

  /** a request handed to a handler under `id` */
  start(id: number, op: number, lo: number, hi: number, node: number, uid: number, pid: number): void {
    this.head[id] = `${opName(op)} unique=${uniqueOf(lo, hi)} node=${node} uid=${uid >>> 0} pid=${pid}`;
    this.t0[id] = performance.now();
  }

  /** its answer: `result` is -errno, or the reply's size in bytes */
  end(id: number, result: number): void {
    const us = (performance.now() - (this.t0[id] ?? 0)) * 1000;
    const r = result < 0 ? `-${osErrName(-result)}` : `${result} bytes`;
    this.log(`${new Date().toISOString()} fuse ${this.head[id] ?? '?'} -> ${r} ${us.toFixed(0)}µs`);
  }

  /** a request that gets no answer, or INIT (answered by the server itself) */
  note(op: number, lo: number, hi: number, node: number, what: string): void {
    this.log(`${new Date().toISOString()} fuse ${opName(op)} unique=${uniqueOf(lo, hi)} node=${node} ${what}`);
  }
}
