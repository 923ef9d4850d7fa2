#!/usr/bin/env python3
"""Caps a fuzz corpus at LIMIT files keeping the most coverage (greedy set
cover over the features of a libFuzzer merge control file).

Usage (see docs/fuzzing.md):
    python3 cap_corpus.py CONTROL_FILE OUT_DIR LIMIT
"""
import sys, os, shutil
ctl, outdir, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(ctl).read().split('\n')
nfiles = int(lines[0]); files = lines[2:2+nfiles]
feats = {}
for l in lines[2+nfiles:]:
    p = l.split()
    if len(p) >= 2 and p[0] == 'FT':
        feats[int(p[1])] = set(map(int, p[2:]))
universe = set().union(*feats.values())
covered = set(); chosen = []
sizes = {i: os.path.getsize(files[i]) for i in feats}
while covered != universe and len(chosen) < limit:
    best = max(feats, key=lambda i: (len(feats[i] - covered), -sizes[i]))
    gain = feats[best] - covered
    if not gain: break
    covered |= gain; chosen.append(best)
shutil.rmtree(outdir, ignore_errors=True)
os.makedirs(outdir)
for i in chosen:
    shutil.copy(files[i], outdir)
print(f"{len(feats)} files, {len(universe)} features -> {len(chosen)} files ({sum(sizes[i] for i in chosen)} bytes) keep {len(covered)} features ({100*len(covered)/len(universe):.1f}%)")
