#!/usr/bin/env python3
"""The longest functions of berth's production crates (the standard: under 80 lines).

A function's length is its non-blank, non-comment lines from `fn` to its closing brace, as rustfmt lays
it out; `#[cfg(test)]` modules are left out. Usage: `scripts/longest-functions.py [how-many]` from the
repository root; prints `<lines> <file> <line> <name>`, longest first. With `--limit N` it prints every
function of N lines or more and exits 1 if there is one (CI runs `--limit 80`).
"""
import glob
import re
import sys

PRODUCTION_CRATES = [
    "berth", "berth-core", "berth-config", "berth-zk", "berth-aws", "berth-net", "berth-storage", "berth-kafka",
]
FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def without_tests(lines):
    """The lines before the file's test module."""
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and lines[i + 1].startswith("mod "):
            return lines[:i]
    return lines


def functions(path):
    """(length, path, first line, name) for each function body in the file."""
    lines = without_tests(open(path).read().split("\n"))
    for start, line in enumerate(lines):
        head = FN.match(line)
        if not head or line.rstrip().endswith(";"):
            continue
        indent = head.group(1)
        end = start
        while end < len(lines) and lines[end] != indent + "}":
            nested = FN.match(lines[end]) if end > start else None
            if nested and len(nested.group(1)) <= len(indent):
                break
            end += 1
        body = [l for l in lines[start : end + 1] if l.strip() and not l.strip().startswith("//")]
        yield len(body), path, start + 1, head.group(7)


def main():
    args = sys.argv[1:]
    limit = int(args[1]) if args[:1] == ["--limit"] else None
    how_many = None if limit else int(args[0]) if args else 5
    found = [
        f
        for crate in PRODUCTION_CRATES
        for path in glob.glob(f"crates/{crate}/src/**/*.rs", recursive=True)
        for f in functions(path)
    ]
    longest = sorted(found, reverse=True)
    shown = [f for f in longest if f[0] >= limit] if limit else longest[:how_many]
    for length, path, line, name in shown:
        print(length, path, line, name)
    sys.stdout.flush()
    if limit and shown:
        sys.exit(f"{len(shown)} production function(s) of {limit} lines or more: split them")


if __name__ == "__main__":
    main()
