#!/usr/bin/env python3
"""The file-level import graph of a crate's src/ and its cycles.

Usage: scripts/import-cycles.py CRATE/src [-v]; exit 1 if any file imports one that
imports it back, directly or around a circle (a strongly connected component of more
than one file), naming the files (-v: and each one's edges inside the circle).

A file depends on another when it names a path into it: `use crate::a::b`,
`crate::a::b::x`, `super::x`, `self::x`. A path through a facade's `pub use` counts as
a dependency on the file that defines the item. Module declarations (`mod x;`) and
`#[cfg(test)] mod tests` blocks are not dependencies, and neither is a module's
`pub use child::X` of its own children (a facade over them; the children may use it). .ci/test.sh runs it on both crates."""
import os, re, sys
root = sys.argv[1]
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ('mod', 'lib', 'main'):
                parts = parts[:-1]
            files[tuple(parts)] = p
def resolve(mod):
    # longest prefix of mod that is a file
    for n in range(len(mod), -1, -1):
        if tuple(mod[:n]) in files:
            return tuple(mod[:n])
    return ()
def strip_tests(src):
    i = src.find('#[cfg(test)]\nmod tests')
    return src if i < 0 else src[:i]
def expand(prefix, tree):
    """Expand a use tree like a::{b, c::{d}} into paths."""
    tree = tree.strip()
    m = re.match(r'^([\w:]*?)(?:::)?\{(.*)\}$', tree, re.S)
    if not m:
        return [prefix + [p for p in tree.split('::') if p and p != 'self']]
    head = [p for p in m.group(1).split('::') if p]
    body = m.group(2)
    items, depth, cur = [], 0, ''
    for ch in body:
        if ch == '{': depth += 1
        if ch == '}': depth -= 1
        if ch == ',' and depth == 0:
            items.append(cur); cur = ''
        else:
            cur += ch
    items.append(cur)
    out = []
    for it in items:
        it = it.strip()
        if it:
            out += expand(prefix + head, re.sub(r'\s+as\s+\w+$', '', it))
    return out
# Re-exports: (file, name) -> the path it re-exports, so an import through a facade
# counts as an import of the file that defines the item.
reexports = {}
def here_of(mod, path):
    return list(mod)
for mod, path in files.items():
    src = re.sub(r'//.*', '', strip_tests(open(path).read()))
    here = here_of(mod, path)
    for m in re.finditer(r'\bpub(?:\([\w:]+\))?\s+use\s+([^;]+);', src):
        t = m.group(1)
        if t.startswith('crate::'):
            ps = expand([], t[len('crate::'):])
        elif t.startswith('super::'):
            ps = expand(here[:-1], t[len('super::'):])
        elif t.startswith('self::'):
            ps = expand(here, t[len('self::'):])
        else:
            ps = expand(here, t)
        for p in ps:
            if p:
                reexports[(mod, p[-1])] = p
def resolve_deep(p, seen=0):
    r = resolve(p)
    rest = p[len(r):]
    if rest and (r, rest[0]) in reexports and seen < 10:
        return resolve_deep(reexports[(r, rest[0])] + rest[1:], seen + 1)
    return r
edges = {k: set() for k in files}
for mod, path in files.items():
    src = strip_tests(open(path).read())
    src = re.sub(r'//.*', '', src)
    here = list(mod)
    paths = []
    for m in re.finditer(r'\buse\s+([^;]+);', src):
        t = m.group(1)
        if t.startswith('crate::'):
            paths += expand([], t[len('crate::'):])
        elif t.startswith('super::'):
            base, t2 = here, t
            while t2.startswith('super::'):
                t2, base = t2[len('super::'):], base[:-1]
            paths += expand(base, t2)
        elif t.startswith('self::'):
            paths += expand(here, t[len('self::'):])
    for m in re.finditer(r'(?<![\w:])crate::((?:\w+::)*\w+)', src):
        paths.append(m.group(1).split('::'))
    # Paths through `super::` in code, outside `use` (`super::set::apply(...)`).
    for m in re.finditer(r'(?<![\w:])((?:super::)+)((?:\w+::)*\w+)', re.sub(r'\buse\s+[^;]+;', '', src)):
        base = here[:len(here) - m.group(1).count('super::')]
        paths.append(base + m.group(2).split('::'))
    for p in paths:
        r = resolve_deep(p)
        if r != mod and r in files:
            # a parent module file (mod.rs) used only for re-exports counts too
            edges[mod].add(r)
# Tarjan
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in files:
    if v not in index: strong(v)
name = lambda m: '/'.join(m) or 'lib'
if not sccs:
    print('no import cycle among', len(files), 'files')
for c in sccs:
    print(f'cycle of {len(c)}:', ', '.join(sorted(name(m) for m in c)))
if len(sys.argv) > 2 and sys.argv[2] == '-v':
    for c in sccs:
        cs = set(c)
        for m in sorted(c):
            print(' ', name(m), '->', ', '.join(sorted(name(w) for w in edges[m] if w in cs)))
sys.exit(1 if sccs else 0)
