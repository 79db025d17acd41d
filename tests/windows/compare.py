#!/usr/bin/env python3
"""JSON comparisons for the Wine tests (tests/windows/t-*.sh).

  compare.py same GOT.json WANT.json
      two `tlsgate host show --json` outputs are identical once what differs by nature is set
      aside: when and where it was collected (collector address, times, the pull's times) and
      the fact source.
  compare.py fixture SHOW.json FACTS.json REFERENCE.json
      the report stored in SHOW.json came from the live registry, its facts equal FACTS.json
      (a tests/fixtures/facts file), and SHOW.json is `same` as REFERENCE.json.
Exit 0 when equal; otherwise 1 and the first difference on stdout, on one line.
"""
import json
import sys

REPORT_META = ("schema", "host", "collected_at", "collector")


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def normalised(show):
    show = dict(show)
    for k in ("collector", "last_report", "received_at"):
        show.pop(k, None)
    pull = show.get("pull")
    if isinstance(pull, dict):  # when the daemon's side happened, not what it found
        show["pull"] = {k: v for k, v in pull.items()
                        if k not in ("last_attempt", "last_success", "next_attempt")}
    rep = show.get("report")
    if isinstance(rep, str):
        rep = json.loads(rep)
    if isinstance(rep, dict):
        rep = dict(rep)
        rep.pop("collected_at", None)
        col = dict(rep.get("collector") or {})
        col.pop("source", None)
        rep["collector"] = col
        show["report"] = rep
    return show


def first_diff(a, b, path="$"):
    if type(a) is not type(b):
        return f"{path}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                return f"{path}.{k}: missing (want {json.dumps(b[k])[:120]})"
            if k not in b:
                return f"{path}.{k}: unexpected {json.dumps(a[k])[:120]}"
            d = first_diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return (f"{path}: {len(a)} items != {len(b)}: "
                    f"{json.dumps(a)[:160]} vs {json.dumps(b)[:160]}")
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"


def main(argv):
    if len(argv) == 4 and argv[1] == "same":
        d = first_diff(normalised(load(argv[2])), normalised(load(argv[3])))
    elif len(argv) == 5 and argv[1] == "fixture":
        show = load(argv[2])
        rep = show.get("report")
        if isinstance(rep, str):
            rep = json.loads(rep)
        source = (rep or {}).get("collector", {}).get("source")
        if source != "registry":
            print(f"report source is {source!r}, not 'registry'")
            return 1
        facts = {k: v for k, v in rep.items() if k not in REPORT_META}
        d = first_diff(facts, load(argv[3]), "facts")
        if not d:
            d = first_diff(normalised(show), normalised(load(argv[4])), "host-show")
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if d:
        print(d)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
