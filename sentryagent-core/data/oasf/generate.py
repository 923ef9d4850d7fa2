"""Generates taxonomy.json, the OASF skills, domains and modules the
marketplace maps agents onto, from the `schema/` directory of an
agntcy/oasf release.

    git clone https://github.com/agntcy/oasf && cd oasf && git checkout v1.1.1
    python3 generate.py <oasf checkout>/schema v1.1.1 $(git rev-parse HEAD) > taxonomy.json

Ids follow the OASF server (server/lib/schema/cache.ex, calculate_uid):
a class's id is its parent's id * 100 + its own `uid`, classes without
`uid` (the base classes) adding nothing. Names are the `name`s of the
classes from the top category down, joined with `/`, as records write them
(`ai_ml_engineering/agent_development/agent_memory`).
"""

import glob
import json
import os
import sys


def load(schema, family):
    classes = {}
    for path in glob.glob(os.path.join(schema, family, "**", "*.json"), recursive=True):
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
        classes[c["name"]] = c
    return classes


def resolve(classes, name):
    c = classes[name]
    if "uid" not in c:
        return 0, []
    parent = c.get("extends")
    if parent in classes:
        pid, pnames = resolve(classes, parent)
    else:
        pid, pnames = 0, []
    return pid * 100 + c["uid"], pnames + [c["name"]]


def family(schema, name):
    classes = load(schema, name)
    out = []
    for key, c in classes.items():
        if "uid" not in c:
            continue
        uid, names = resolve(classes, key)
        out.append({"id": uid, "name": "/".join(names), "caption": c.get("caption", "")})
    out.sort(key=lambda e: e["id"])
    ids = [e["id"] for e in out]
    assert len(ids) == len(set(ids)), f"duplicate {name} ids"
    return out


def main():
    schema, tag, commit = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(os.path.join(schema, "version.json"), encoding="utf-8") as f:
        version = json.load(f)["version"]
    doc = {
        "source": f"https://github.com/agntcy/oasf/tree/{tag}/schema",
        "release": tag,
        "commit": commit,
        "schema_version": version,
        "skills": family(schema, "skills"),
        "domains": family(schema, "domains"),
        "modules": family(schema, "modules"),
    }
    json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
