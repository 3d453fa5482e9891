/**
 * A mount served through fuse-native's high-level binding (fuse_api=highlevel).
 * The serving code imports this module, dynamically, only when that API is
 * chosen: fuse-native (which native/fuse.ts loads as soon as it is imported)
 * never loads on the default low-level path, so a default mount's daemon does
 * not pay for it (test/integration/lowlevel.test.ts checks the daemon's maps).
 */
import { fromText } from '../../shared/bstr.js';
import type { HandleOps, OverlayOps } from '../../core/types.js';
import { Fuse } from '../../native/fuse.js';
import type { MountConfig } from '../config.js';
import type { IdView } from '../idmap.js';
import { highLevelOptions } from '../libfuse-args.js';
import type { OpSummary } from '../requests.js';
import { createAdapter } from './adapter.js';

export interface HighLevelMount {
  opStats(): Record<string, OpSummary>;
}

/** Mounts config.mountpoint; resolves once the kernel's INIT has been answered. */
export async function mountHighLevel(
  core: OverlayOps & HandleOps, config: MountConfig,
  opt: { log: (line: string) => void; ids: IdView | undefined; onExit: () => void },
): Promise<HighLevelMount> {
  // context() runs only for requests, after `fuse` below exists.
  const adapter = createAdapter(core, { debug: config.debug, log: opt.log, context: () => fuse.context(), ids: opt.ids, noXattrs: config.noXattrs });
  const fuse = new Fuse(fromText(config.mountpoint), adapter.handlers, highLevelOptions(config, opt.onExit));
  await fuse.mount();
  return { opStats: adapter.opStats };
}
