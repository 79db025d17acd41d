#!/usr/bin/env python3
"""cli_schemas.py: every command's --json output against its schema (meson test `cli-schemas`).

Walks the binary's own command table (`tlsgate --commands`): every command that takes --json
must have a schema, schema/cli/COMMAND[-SUB].json, and a sample invocation below; its output on
a small real database (loopback collectors only, nothing listening) must validate. The
validator is small on purpose: type, required, properties, additionalProperties: false, items,
enum -- the JSON Schema keywords the schemas use.

Usage: cli_schemas.py TLSGATE SOURCE_ROOT   (exit 0 all valid, 1 not)
"""
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


def type_ok(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def validate(value, schema, path="$"):
    """The list of faults of `value` against `schema`, each naming its path."""
    faults = []
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(type_ok(value, n) for n in names):
            return ["%s: %s is not %s" % (path, json.dumps(value)[:60], " or ".join(names))]
    if "enum" in schema and value not in schema["enum"]:
        faults.append("%s: %s is not one of %s" % (path, json.dumps(value), schema["enum"]))
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                faults.append("%s: member %r missing" % (path, key))
        props = schema.get("properties", {})
        for key, v in value.items():
            if key in props:
                faults += validate(v, props[key], "%s.%s" % (path, key))
            elif schema.get("additionalProperties") is False:
                faults.append("%s: member %r is not in the schema" % (path, key))
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            faults += validate(v, schema["items"], "%s[%d]" % (path, i))
    return faults


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    tlsgate, root = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="tlsgate-schemas-")
    db = os.path.join(tmp, "t.db")
    port = closed_port()

    def run(*args, check=True):
        env = dict(os.environ, TLSGATE_DB=db, TLSGATE_CONFIG=os.path.join(tmp, "config.json"))
        p = subprocess.run([tlsgate] + list(args), capture_output=True, text=True, env=env)
        if check and p.returncode not in (0, 1):
            raise SystemExit("tlsgate %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr))
        return p

    subprocess.run([os.path.join(root, "tools", "gen-certs"), os.path.join(tmp, "certs"),
                    "ws1.p01.example"], check=True, capture_output=True)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump({"tls": {"ca": "certs/ca.pem", "cert": "certs/orchestrator.pem",
                           "key": "certs/orchestrator.key"},
                   "connect_timeout": 2, "timeout": 3}, f)
    with open(os.path.join(tmp, "inventory.csv"), "w") as f:
        f.write("name,site,roles,collector,os\n"
                "ws1.p01.example,P01,client,127.0.0.1:%d,Windows 7\n"
                "ws2.p01.example,P01,client,127.0.0.1:%d,Windows 10\n"
                "mp1.p01.example,P01,management_point;distribution_point,127.0.0.1:%d,"
                "Windows Server 2019\n" % (port, port, port))
    run("init")
    run("inventory", "import", os.path.join(tmp, "inventory.csv"))
    # Reports as ingest stores them: ws1 not ready (a failed blocker), ws2 and mp1 ready.
    con = sqlite3.connect(db)
    ids = dict(con.execute("SELECT name, id FROM host"))
    now = int(time.time())
    for name, blockers in (("ws1.p01.example", 1), ("ws2.p01.example", 0),
                           ("mp1.p01.example", 0)):
        con.execute("INSERT INTO report (host_id, collected_at, received_at, body, "
                    "catalog_version, blockers, warnings, legacy_disabled) "
                    "VALUES (?, ?, ?, '{}', 'test', ?, 0, 0)", (ids[name], now, now, blockers))
    con.execute("INSERT INTO verdict (host_id, rule, pass, severity, reason) VALUES "
                "(?, 'winhttp-kb3140245', 0, 'blocker', 'KB3140245 missing')",
                (ids["ws1.p01.example"],))
    con.commit()
    con.close()
    run("waive", "ws2.p01.example", "--reason", "lab")
    # Enrollment: an identity issued to ws1, two requests waiting (approved, denied below).
    con = sqlite3.connect(db)
    con.execute("INSERT INTO identity (fingerprint, name, source, serial, issuer, not_before,"
                " not_after, first_seen) VALUES ('ab12', 'ws1.p01.example', 'enroll', '01',"
                " 'CN=test CA', ?, ?, ?)", (now - 60, now + 86400, now))
    for spki in ("cd34", "ef56"):
        con.execute("INSERT INTO enroll_request (name, site, kind, state, spki, csr, peer,"
                    " created_at) VALUES ('ws1.p01.example', 'P01', 'enroll', 'pending', ?,"
                    " 'csr', '127.0.0.1', ?)", (spki, now))
    con.commit()
    con.close()

    facts = os.path.join(root, "tests", "fixtures", "facts", "win7-ready.json")
    # An IIS log of today (older days fall out of the evidence window): a TLS 1.0 client.
    iis_log = os.path.join(tmp, "u_ex.log")
    with open(iis_log, "w") as f:
        f.write("#Fields: date time s-ip c-ip sc-status crypt-protocol\n"
                "%s 10:00:01 127.0.0.1 127.0.0.99 200 40\n" % time.strftime("%Y-%m-%d",
                                                                            time.gmtime()))
    samples = {
        "inventory list": ["inventory", "list"],
        "inventory show": ["inventory", "show", "ws1.p01.example"],
        "inventory deps": ["inventory", "deps", "mp1.p01.example"],
        "host show": ["host", "show", "ws1.p01.example"],
        "rules show": ["rules", "show"],
        "rules blockers": ["rules", "blockers"],
        "rules eval": ["rules", "eval", "--facts", facts],
        "gate check": ["gate", "check", "mp1.p01.example"],
        "gate list": ["gate", "list"],
        "phase status": ["phase", "status"],
        "phase advance": ["phase", "advance", "--site", "P01", "--dry-run"],
        "phase rollback": ["phase", "rollback", "--site", "P01", "--reason", "test"],
        "waive": ["waive", "ws2.p01.example", "--reason", "lab", "--until", "2099-01-01"],
        "unwaive": ["unwaive", "ws2.p01.example"],
        "audit": ["audit"],
        "collect": ["collect", "--host", "ws1.p01.example"],
        "poll status": ["poll", "status"],
        "probe": ["probe", "mp1.p01.example"],
        "probe show": ["probe", "show"],
        "probe ports": ["probe", "ports", "mp1.p01.example", "443", "1433/tds"],
        "evidence import": ["evidence", "import", "--server", "mp1.p01.example", iis_log],
        "evidence list": ["evidence", "list"],
        "evidence waive": ["evidence", "waive", "127.0.0.99", "--reason", "lab"],
        "evidence unwaive": ["evidence", "unwaive", "127.0.0.99"],
        "enroll secret": ["enroll", "secret", "--site", "P01"],
        "enroll list": ["enroll", "list"],
        "enroll pending": ["enroll", "pending"],
        "enroll approve": ["enroll", "approve", "1"],
        "enroll deny": ["enroll", "deny", "2", "--reason", "unknown key"],
        "enroll revoke": ["enroll", "revoke", "ws1.p01.example", "--reason", "test"],
        "enroll accept": ["enroll", "accept", "ws1.p01.example"],
    }
    # rollback needs a phase to leave
    run("phase", "advance", "--site", "P01")

    table = run("--commands").stdout.splitlines()
    failures, checked = [], 0
    for line in table:
        name, json_flag = line.split("\t")
        if json_flag != "json":
            continue
        schema_path = os.path.join(root, "schema", "cli", name.replace(" ", "-") + ".json")
        if not os.path.exists(schema_path):
            failures.append("%s: takes --json but has no schema %s" % (name, schema_path))
            continue
        if name not in samples:
            failures.append("%s: no sample invocation in tests/cli_schemas.py" % name)
            continue
        with open(schema_path) as f:
            schema = json.load(f)
        out = run("--json", *samples[name]).stdout
        try:
            doc = json.loads(out)
        except ValueError as e:
            failures.append("%s: output is not JSON (%s): %s" % (name, e, out[:200]))
            continue
        failures += ["%s: %s" % (name, fault) for fault in validate(doc, schema)]
        checked += 1
    # The validator itself must catch a wrong shape, or this test could not fail.
    probe = {"type": "object", "required": ["roles"], "additionalProperties": False,
             "properties": {"roles": {"type": "array", "items": {"type": "string",
                                                                   "enum": ["client"]}}}}
    for bad in ({"roles": "client"}, {"roles": ["clint"]}, {}, {"roles": [], "x": 1}):
        if not validate(bad, probe):
            failures.append("validator accepts %s" % json.dumps(bad))
    for f in failures:
        print(f)
    print("cli-schemas: %d commands checked, %d failures" % (checked, len(failures)))
    subprocess.run(["rm", "-rf", tmp])
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
