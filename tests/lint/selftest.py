#!/usr/bin/env python3
"""The checks that keep the code's shape (tools/check-layers, tools/check-format) must fail when
the shape breaks, not only pass on today's tree. This copies the tree to a temp folder, breaks it
one way at a time, and asserts each check fails naming the fault; then that the untouched copy
passes.

Usage: tests/lint/selftest.py REPO_ROOT   (exit 0 when every case behaves, 77 = skip for the
format cases when clang-format is missing)
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), "..", ".."))
failures = []


def copy_tree(dst):
    for top in ("orchestrator", "collectors", "schema", "tests", "tools"):
        shutil.copytree(os.path.join(ROOT, top), os.path.join(dst, top),
                        ignore=shutil.ignore_patterns("fixtures", "__pycache__"))
    shutil.copy(os.path.join(ROOT, ".clang-format"), dst)


def run(tree, tool):
    p = subprocess.run([sys.executable, os.path.join(tree, "tools", tool), tree],
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def append(tree, rel, text):
    with open(os.path.join(tree, rel), "a", encoding="utf-8") as f:
        f.write(text)


def prepend_include(tree, rel, header):
    path = os.path.join(tree, rel)
    text = open(path, encoding="utf-8").read()
    marker = text.index("#include")
    open(path, "w", encoding="utf-8").write(text[:marker] + '#include "%s"\n' % header +
                                              text[marker:])


def case(name, tool, breaker, needle):
    with tempfile.TemporaryDirectory() as tree:
        copy_tree(tree)
        if breaker:
            breaker(tree)
        rc, out = run(tree, tool)
        if breaker is None:
            if rc != 0:
                failures.append("%s: the untouched tree fails:\n%s" % (name, out))
        elif rc == 0 or needle not in out:
            failures.append("%s: expected a failure naming %r, got rc %d:\n%s" %
                            (name, needle, rc, out))


# check-layers
case("layers: clean tree", "check-layers", None, "")
case("layers: domain includes cli.h", "check-layers",
     lambda t: prepend_include(t, "orchestrator/domain/gate.c", "cli.h"),
     "domain/ may not include cli.h")
case("layers: domain includes the pull engine", "check-layers",
     lambda t: prepend_include(t, "orchestrator/domain/waiver.c", "poll.h"),
     "domain/ may not include poll.h")
case("layers: SQL in base/", "check-layers",
     lambda t: append(t, "orchestrator/base/utc.c", 'static const char *q = "SELECT 1";\n'),
     "SQL in the base/ layer")
case("layers: a command writes a table it does not own", "check-layers",
     lambda t: append(t, "orchestrator/cli/gatecmd.c",
                      'static const char *w = "DELETE FROM waiver";\n'),
     "writes table waiver, owned by domain/waiver.c")
case("layers: an include loop", "check-layers",
     lambda t: prepend_include(t, "orchestrator/domain/phase.c", "gate.h"),
     "include loop between modules: gate -> phase -> gate")
case("layers: a file outside the layer folders", "check-layers",
     lambda t: open(os.path.join(t, "orchestrator", "flat.c"), "w").write("int x;\n"),
     "orchestrator/flat.c: not in a layer folder")
case("layers: a layer without README", "check-layers",
     lambda t: os.remove(os.path.join(t, "orchestrator", "pull", "README.md")),
     "orchestrator/pull/: no README.md")

# check-format
if shutil.which("clang-format"):
    case("format: clean tree", "check-format", None, "")
    case("format: a new file not in the house style", "check-format",
         lambda t: open(os.path.join(t, "orchestrator", "base", "bad.c"), "w")
         .write("int  f(void){return 1;}\n"),
         "orchestrator/base/bad.c:1: not as .clang-format writes it")
    case("format: an exempt file that conforms", "check-format",
         lambda t: append(t, "tools/format-exempt", "orchestrator/base/utc.c\n"),
         "orchestrator/base/utc.c: conforms now")
else:
    print("selftest: clang-format missing, format cases skipped")

for f in failures:
    print(f)
print("selftest: %d failure%s" % (len(failures), "" if len(failures) == 1 else "s"))
sys.exit(1 if failures else 0)
