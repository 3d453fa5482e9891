import { createHash } from 'node:crypto';

/** Everything that shapes the data set; its hash names the cache directory. */
export interface DatasetParams {
  seed: number;
  /** tree/t0..t{n-1}; the last one is the subtree the rm -rf workload removes. */
  treeTops: number;
  filesPerTop: number;
  smallMin: number;
  smallMax: number;
  /** Files sit 1..maxDepth levels below their top directory. */
  maxDepth: number;
  fanout: number;
  bigdirEntries: number;
  repoFiles: number;
  middleChanges: number;
  middleDeletes: number;
  opaqueNewFiles: number;
  bigFileBytes: number;
  mediumFiles: number;
  mediumFileBytes: number;
  untarFiles: number;
  copyUpSmall: number;
  gitModify: number;
  gitTouch: number;
}

const MiB = 1024 * 1024;

export const FULL_PARAMS: DatasetParams = {
  seed: 0x5eed_f00d,
  treeTops: 6,
  filesPerTop: 5000,
  smallMin: 1024,
  smallMax: 8192,
  maxDepth: 5,
  fanout: 6,
  bigdirEntries: 10_000,
  repoFiles: 5000,
  middleChanges: 2000,
  middleDeletes: 500,
  opaqueNewFiles: 20,
  bigFileBytes: 1024 * MiB,
  mediumFiles: 10,
  mediumFileBytes: 10 * MiB,
  untarFiles: 10_000,
  copyUpSmall: 1000,
  gitModify: 3,
  gitTouch: 5,
};

export const QUICK_PARAMS: DatasetParams = {
  ...FULL_PARAMS,
  filesPerTop: 500,
  bigdirEntries: 1000,
  repoFiles: 500,
  middleChanges: 200,
  middleDeletes: 50,
  bigFileBytes: 64 * MiB,
  mediumFileBytes: 2 * MiB,
  untarFiles: 1000,
  copyUpSmall: 200,
};

/** Bump when the generator's output changes for the same params, so stale caches are not reused. */
export const GENERATOR_VERSION = 1;

export function paramsHash(p: DatasetParams): string {
  const canonical = JSON.stringify({ v: GENERATOR_VERSION, ...p }, Object.keys({ v: 0, ...p }).sort());
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12);
}
