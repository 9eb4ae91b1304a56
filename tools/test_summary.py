"""Prints one line per suite and a total line 'tests: N passed, N failed, N skipped' from meson's log."""
import collections
import json
import sys

counts = collections.defaultdict(collections.Counter)
with open(sys.argv[1]) as f:
    for line in f:
        t = json.loads(line)
        # meson names a test "SUITE - project:name"
        suite = t["name"].split(" - ", 1)[0] if " - " in t["name"] else "other"
        result = {"OK": "passed", "SKIP": "skipped", "EXPECTEDFAIL": "passed"}.get(t["result"], "failed")
        counts[suite][result] += 1
total = collections.Counter()
for suite in sorted(counts):
    c = counts[suite]
    total.update(c)
    print(f"  suite {suite}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")
print(f"tests: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
