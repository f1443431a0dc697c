#!/usr/bin/env python3
"""The longest functions of berth's workspace (the standard: under 80 lines, in every crate).

The rule covers all the Rust the project writes: the production crates, the test infrastructure (berth-sim,
berth-testkit, kafka-standin, the end-to-end crate's helpers), every crate's tests and benchmarks, and the unit
tests in `#[cfg(test)]` modules; a `#[test]` function is held to it like any other (a long scenario is split
into steps, each keeping its assertions). A function's length is its non-blank, non-comment lines from `fn` to
its closing brace, as rustfmt lays it out. Usage: `scripts/longest-functions.py [how-many]` from the repository
root; prints `<lines> <file> <line> <name>`, longest first. With `--limit N` it prints every function of N lines
or more and exits 1 if there is one (CI and `make lint` run `--limit 80`).
"""
import glob
import re
import sys

# Every Rust source of the workspace: each crate's src, tests, benches and examples, and the end-to-end crate.
SOURCES = ["crates/*/**/*.rs", "tests/**/*.rs"]
FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def functions(path):
    """(length, path, first line, name) for each function body in the file."""
    lines = open(path).read().split("\n")
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


def sources():
    """Every Rust file of the workspace, once, build output left out."""
    found = {path for pattern in SOURCES for path in glob.glob(pattern, recursive=True)}
    return sorted(path for path in found if "/target/" not in path)


def main():
    args = sys.argv[1:]
    limit = int(args[1]) if args[:1] == ["--limit"] else None
    how_many = None if limit else int(args[0]) if args else 5
    found = [f for path in sources() for f in functions(path)]
    longest = sorted(found, reverse=True)
    shown = [f for f in longest if f[0] >= limit] if limit else longest[:how_many]
    for length, path, line, name in shown:
        print(length, path, line, name)
    sys.stdout.flush()
    if limit and shown:
        sys.exit(f"{len(shown)} function(s) of {limit} lines or more: split them")


if __name__ == "__main__":
    main()
