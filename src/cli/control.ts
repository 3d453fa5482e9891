/**
 * The daemon's control socket: a unix socket in the runtime dir (runtime.ts).
 * A client writes one request and a newline ("stats", "stats gc" or "describe"); the
 * daemon answers with one JSON document and closes. Serving it costs nothing
 * until someone asks, and it never touches the mountpoint.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';

/** "stats gc": the stats after a full garbage collection, so that the heap figure is what is live. */
export type ControlRequest = 'stats' | 'stats gc' | 'describe';

export interface ControlProvider {
  stats(opts?: { gc: boolean }): unknown;
  describe(): unknown;
}

export async function serveControl(sock: string, provider: ControlProvider, log: (s: string) => void): Promise<net.Server> {
  // A socket file left by a daemon that was killed would make listen() fail with EADDRINUSE.
  try { fs.unlinkSync(sock); } catch { /* none */ }
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => conn.destroy());
    conn.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 256) conn.destroy();
        return;
      }
      const req = buf.slice(0, nl).trim();
      let body: unknown;
      try {
        body = req === 'stats' ? provider.stats() : req === 'stats gc' ? provider.stats({ gc: true })
          : req === 'describe' ? provider.describe() : { error: `unknown request ${req}` };
      } catch (e) {
        body = { error: String(e) };
        log(`stratafs: control request ${req} failed: ${String(e)}`);
      }
      conn.end(JSON.stringify(body) + '\n');
    });
  });
  server.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sock, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(sock, 0o600);
  server.on('error', (e) => log(`stratafs: control socket: ${String(e)}`));
  return server;
}

export class ControlError extends Error {
  override name = 'ControlError';
}

export function queryControl(sock: string, req: ControlRequest, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(sock);
    let buf = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new ControlError(`no answer from the daemon within ${timeoutMs} ms (hung?): ${sock}`));
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(req + '\n'));
    conn.on('data', (c: string) => { buf += c; });
    conn.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ControlError(e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
        ? `no stratafs daemon serves this mount (no control socket ${sock})`
        : `control socket ${sock}: ${e.message}`));
    });
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf));
      } catch {
        reject(new ControlError(`bad answer from the daemon: ${buf.slice(0, 200)}`));
      }
    });
  });
}
