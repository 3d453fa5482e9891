#!/bin/bash
# By hand, as root (native-notes/fuse-server.md, close_to_open): the per-open cost of a build.
#   opens-bench.sh BUILD SCRATCH [,EXTRA_OPTS]
# 10,000 small lower files in SCRATCH (a new directory) are opened, read and closed through a
# stratafs mount of BUILD (a checkout with dist/) once to warm up, then 3 times measured:
# requests and daemon time per open from `stratafs stats --json`; then every file is rewritten
# behind the mount and read once more (requests per open, and how many still show old data).
set -e
B=$1; R=$2; X=$3
mkdir -p $R/l/d $R/u $R/w $R/m
for i in $(seq 0 9999); do printf 'small file %05d\n' $i > $R/l/d/f$i; done
cat > $R/opens.cjs <<'JS'
const { openSync, readSync, closeSync } = require('node:fs');
const [dir, n, rounds] = [process.argv[2], +process.argv[3], +process.argv[4]];
const b = Buffer.alloc(4096);
for (let r = 0; r < rounds; r++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) { const fd = openSync(`${dir}/f${i}`, 'r'); readSync(fd, b, 0, 4096, 0); closeSync(fd); }
  console.log(`  round ${r}: ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0)} ms`);
}
JS
diffstats() { node -e 'const a=require(process.argv[1]), b=require(process.argv[2]), n=+process.argv[3]; const out=[]; let tot=0, us=0; for (const [k,v] of Object.entries(b.ops)) { const p=a.ops[k]??{count:0,avgUs:0}; const c=v.count-p.count; if (c>0) { out.push(k+"="+c); tot+=c; us+=v.count*v.avgUs-p.count*p.avgUs; } } console.log("  requests per open", (tot/n).toFixed(2), "(" + out.join(" ") + "); daemon µs per open", (us/n).toFixed(1), "; OPEN µs", ((b.ops.open.count*b.ops.open.avgUs-a.ops.open.count*a.ops.open.avgUs)/(b.ops.open.count-a.ops.open.count)).toFixed(1))' $1 $2 $3; }
node $B/dist/cli/main.js -o lowerdir=$R/l,upperdir=$R/u,workdir=$R/w$X $R/m
trap "node $B/dist/cli/main.js umount $R/m" EXIT
node $R/opens.cjs $R/m/d 10000 1 >/dev/null
node $B/dist/cli/main.js stats --json $R/m > $R/s0.json
node $R/opens.cjs $R/m/d 10000 3
node $B/dist/cli/main.js stats --json $R/m > $R/s1.json
diffstats $R/s0.json $R/s1.json 30000
for i in $(seq 0 9999); do printf 'SMALL FILE %05d\n' $i > $R/l/d/f$i; done
node $R/opens.cjs $R/m/d 10000 1 | sed 's/^/  after the change:/'
node $B/dist/cli/main.js stats --json $R/m > $R/s2.json
diffstats $R/s1.json $R/s2.json 10000
node -e 'const fs=require("fs"); let old=0; for (let i=0;i<10000;i++) if (!fs.readFileSync(process.argv[1]+"/f"+i,"latin1").startsWith("SMALL")) old++; console.log("  files showing old data after the change:", old)' $R/m/d
