#!/bin/bash
# usage: .prof.sh [env...]  — rebuild bundle, profile; prints busy µs/request and top self times
cd /work/main
npx node node_modules/wrangler/bin/wrangler.js deploy --dry-run --outdir .wrangler/bench >/dev/null 2>&1 || { echo build failed; exit 1; }
for i in 1 2; do ITOP=${ITOP:-0} TOP=${TOP:-25} timeout 600 npx node .profile.mjs 2>&1 | grep -v "^\[warn\]\|demo origin\|^workerd"; done
