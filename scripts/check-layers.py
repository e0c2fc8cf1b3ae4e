#!/usr/bin/python3
"""Fails when an #include crosses keel's layer table (docs/architecture.md, "Layers").

Every file under src/<module>/ may include its own module and the modules of lower layers, and
the public headers (include/keel/*.hpp) that those modules own. Anything else is a violation,
printed as file:line with the rule it breaks. Also fails when a module or public header is not
in the table (a new one must be placed in a layer), or when CMakeLists.txt's keel_module(<name>
LAYER <n>) disagrees with the table (CMake lets a module link only lower layers, and the debug
build's link check holds the code to that), and prints the module graph with --graph.

    scripts/check-layers.py [--graph]
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Bottom up. A module may include only modules of strictly lower layers (and itself).
LAYERS = [
    ["base"],
    ["runtime"],
    ["log", "config", "net", "client"],
    ["process", "tls"],
    ["http"],
    ["http2", "trace", "metrics", "health"],
    ["app"],
]

# The module that owns (implements) each public header.
PUBLIC_OWNER = {
    "json_writer.hpp": "base",
    "task.hpp": "runtime",
    "async.hpp": "runtime",
    "logger.hpp": "log",
    "settings.hpp": "config",
    "lifecycle.hpp": "process",
    "tls_info.hpp": "tls",
    "request.hpp": "http",
    "response.hpp": "http",
    "errors.hpp": "http",
    "trace.hpp": "trace",
    "client.hpp": "app",  # keel::fetch (src/app/fetch.cpp): tracing and request ids on client/'s libcurl
    "url.hpp": "base",
    "metrics.hpp": "metrics",
    "health.hpp": "health",
    "checks.hpp": "health",
    "app.hpp": "app",
    "keel.hpp": "app",
    "testing.hpp": "app",
}

# Edges the table does not allow but the code still has, each with the reason and the way out.
# The list may only shrink.
KNOWN = {
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/([A-Za-z0-9_./]+)"')
CMAKE_MODULE = re.compile(r'^keel_module\((\w+) LAYER (\d+)\b', re.MULTILINE)


def layer_of(module):
    for i, layer in enumerate(LAYERS):
        if module in layer:
            return i
    return None


def main():
    show_graph = "--graph" in sys.argv[1:]
    problems = []
    graph = {}
    src = os.path.join(ROOT, "src")
    for module in sorted(os.listdir(src)):
        if not os.path.isdir(os.path.join(src, module)):
            continue
        if layer_of(module) is None:
            problems.append(f"src/{module}/: module not in the layer table (scripts/check-layers.py LAYERS)")
            continue
        for dirpath, _, files in os.walk(os.path.join(src, module)):
            for name in sorted(files):
                if not name.endswith((".cpp", ".hpp")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target_dir, header = m.groups()
                        if target_dir == "keel":
                            target = PUBLIC_OWNER.get(header)
                            if target is None:
                                problems.append(f"{rel}:{lineno}: include/keel/{header} has no owner in PUBLIC_OWNER")
                                continue
                        else:
                            target = target_dir
                        if target == module:
                            continue
                        graph.setdefault(module, set()).add(target)
                        if layer_of(target) is None:
                            problems.append(f"{rel}:{lineno}: includes {target_dir}/{header}: no such module in the table")
                        elif layer_of(target) >= layer_of(module) and (module, target) not in KNOWN:
                            what = f"keel/{header} (owned by {target})" if target_dir == "keel" else f"{target}/{header}"
                            problems.append(f"{rel}:{lineno}: {module} (layer {layer_of(module)}) includes {what} "
                                            f"(layer {layer_of(target)}): only lower layers")
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        cmake_layers = {name: int(layer) for name, layer in CMAKE_MODULE.findall(f.read())}
    for module in sorted(os.listdir(src)):
        if os.path.isdir(os.path.join(src, module)) and module not in cmake_layers:
            problems.append(f"src/{module}/: no keel_module({module} LAYER ...) in CMakeLists.txt")
    for module, layer in sorted(cmake_layers.items()):
        if layer_of(module) != layer:
            problems.append(f"CMakeLists.txt: keel_module({module} LAYER {layer}), but the table has it in layer "
                            f"{layer_of(module)}")
    for edge, why in KNOWN.items():
        if edge[1] not in graph.get(edge[0], set()):
            problems.append(f"known exception {edge[0]} -> {edge[1]} is gone: remove it from KNOWN")
    if show_graph:
        for module in sorted(graph):
            print(f"{module} -> {', '.join(sorted(graph[module]))}")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check-layers: {len(problems)} problem(s); the table is in docs/architecture.md", file=sys.stderr)
        return 1
    print(f"check-layers: every include follows the layer table ({len(KNOWN)} known exceptions); "
          "CMakeLists.txt places the modules as it does")
    return 0


if __name__ == "__main__":
    sys.exit(main())
