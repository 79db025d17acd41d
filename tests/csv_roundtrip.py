#!/usr/bin/env python3
"""csv_roundtrip.py CSV EXPECTED.json [--bom] — reads CSV with Python's csv module (a real,
independent RFC 4180 reader, strict mode) and checks that it yields exactly the rows of
EXPECTED.json (a JSON array of arrays of strings, header first). Also checks the bytes: UTF-8,
a BOM only with --bom, CRLF after every record, minimal quoting. Exit 0 when everything
matches, 1 with the first difference on stderr otherwise. Used by tests/test_export.c (suite
'export')."""
import csv
import io
import json
import sys


def main(argv):
    if len(argv) not in (3, 4) or (len(argv) == 4 and argv[3] != "--bom"):
        print("usage: csv_roundtrip.py CSV EXPECTED.json [--bom]", file=sys.stderr)
        return 2
    raw = open(argv[1], "rb").read()
    expected = json.load(open(argv[2], encoding="utf-8"))
    bom = b"\xef\xbb\xbf"
    if len(argv) == 4:
        if not raw.startswith(bom):
            print("csv_roundtrip: --bom expected but the file has no BOM", file=sys.stderr)
            return 1
        raw = raw[len(bom):]
    elif raw.startswith(bom):
        print("csv_roundtrip: unexpected BOM", file=sys.stderr)
        return 1
    if not raw.endswith(b"\r\n"):
        print("csv_roundtrip: the last record does not end with CRLF", file=sys.stderr)
        return 1
    text = raw.decode("utf-8")  # raises (exit 1) on invalid UTF-8
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = list(reader)
    # The bytes must be the canonical RFC 4180 form of those rows: CRLF after every record, a
    # cell quoted exactly when it holds a comma, quote, CR or LF (Python's QUOTE_MINIMAL rule).
    canonical = io.StringIO(newline="")
    csv.writer(canonical, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    if canonical.getvalue() != text:
        print("csv_roundtrip: not the canonical form (record ends or quoting)", file=sys.stderr)
        return 1
    for i, (got, want) in enumerate(zip(rows, expected)):
        if got != want:
            print(f"csv_roundtrip: row {i}: got {got!r}, want {want!r}", file=sys.stderr)
            return 1
    if len(rows) != len(expected):
        print(f"csv_roundtrip: {len(rows)} rows, want {len(expected)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
