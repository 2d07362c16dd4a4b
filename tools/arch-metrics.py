#!/usr/bin/python3
"""Numbers about the shape of src/, for the architecture notes (docs/architecture.md):
lines per file, the longest functions, and include cycles between modules (X.c and X.h are
one module). Usage: python3 tools/arch-metrics.py [SRCDIR]   (default: src under the repo)."""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
files = []
for d, _, names in os.walk(root):
    for n in names:
        if n.endswith((".c", ".h")):
            files.append(os.path.join(d, n))
files.sort()
rel = {f: os.path.relpath(f, root) for f in files}


def module(path):
    return os.path.splitext(os.path.basename(path))[0]


# lines per file
print("# lines per file (over 800 marked *)")
for f in sorted(files, key=lambda f: -sum(1 for _ in open(f))):
    n = sum(1 for _ in open(f))
    if n >= 300:
        print(f"{n:6d} {'*' if n > 800 else ' '} {rel[f]}")

# functions: a definition starts at column 0 with an identifier and '(' and ends at '^}'
print("\n# functions over 80 lines")
start = re.compile(r"^[A-Za-z_][\w \*]*?\b(\w+)\(")
longest = []
for f in files:
    if not f.endswith(".c"):
        continue
    lines = open(f).read().split("\n")
    cand, name, begin = None, None, 0
    for i, line in enumerate(lines):
        m = start.match(line)
        if m and name is None:
            cand = (m.group(1), i)
        elif line.startswith("{") and name is None and cand is not None:
            name, begin = cand
        elif line.startswith("}") and name is not None:
            longest.append((i - begin + 1, f"{rel[f]}:{begin + 1} {name}"))
            name, cand = None, None
for n, where in sorted(longest, reverse=True):
    if n > 80:
        print(f"{n:6d} {where}")
print(f"functions: {len(longest)}, over 80 lines: {sum(1 for n, _ in longest if n > 80)}")

# include graph between modules, and its cycles (strongly connected components)
inc = re.compile(r'^#include "([^"]+)"')
graph = {}
for f in files:
    a = module(f)
    graph.setdefault(a, set())
    for line in open(f):
        m = inc.match(line)
        if m and m.group(1).endswith(".h") and m.group(1) != "config.h":
            b = module(m.group(1))
            if b != a:
                graph[a].add(b)
# a header without a .c (http_int.h) is not a module: who includes it includes what it does
has_c = {module(f) for f in files if f.endswith(".c")}
for hdr in [m for m in graph if m not in has_c]:
    for a in graph:
        if hdr in graph[a]:
            graph[a] = (graph[a] | graph[hdr]) - {hdr, a}
    del graph[hdr]
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph.get(v, ())):
        if w not in graph:
            continue
        if w not in index:
            strong(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index:
        strong(v)
print("\n# include cycles (modules, X.c with X.h, that reach each other through #include)")
for c in sccs:
    edges = [f"{a}->{b}" for a in c for b in sorted(graph[a]) if b in c]
    print(f"{len(c)} modules: {' '.join(c)}; edges: {' '.join(edges)}")
if not sccs:
    print("none")
