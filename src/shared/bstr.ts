/**
 * Names on Linux are bytes, not text. stratafs carries every path and name as a
 * "byte string": a JS string whose char codes are the bytes (latin1), so that a
 * name such as `caf\xe9` (not valid UTF-8) survives unchanged from the FUSE
 * binding through the core to the syscall addon, which reads strings as latin1.
 * Never pass a Bstr to node:fs as a string (node would UTF-8-encode it): use toBuf().
 */
export type Bstr = string;

export const toBuf = (s: Bstr): Buffer => Buffer.from(s, 'latin1');
export const fromBuf = (b: Buffer): Bstr => b.toString('latin1');
/** Convert user-facing text (UTF-8) to a Bstr, e.g. paths from argv. */
export const fromText = (s: string): Bstr => Buffer.from(s, 'utf8').toString('latin1');
/** Best-effort display form of a Bstr for messages and logs. */
export const toText = (s: Bstr): string => Buffer.from(s, 'latin1').toString('utf8');
