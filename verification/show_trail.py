"""Print a counterexample found by run_models.sh as a short, readable list of model steps.

``python3 verification/show_trail.py old-rule`` replays ``verification/.build/old-rule`` with
``spin -t -p`` and keeps the steps that change the lease, the audit entry or the target, one line per
step: the process, and the model line that ran (whose comments name the code). Stdlib only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEP = re.compile(r"^\s*\d+:\s+proc\s+(\d+)\s+\((\w+):\d+\)\s+\S+:(\d+)\s+\(state \d+\)\s+\[(.*)\]\s*$")
KEEP = re.compile(r"^(a_state|effect|l_owner|l_live|markers|crash_req\[|lost\[me\] = 1|st = a_state|live = |assert)")
NAMES = {"a_state": "audit", "effect": "target", "l_owner": "lease", "l_live": "lease", "markers": "marker"}


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "old-rule"
    build = HERE / ".build" / name
    model = next(build.glob("*.pml"))
    flags = (build / "flags").read_text().split()
    out = subprocess.run(
        ["spin", "-t", "-p", *flags, model.name], cwd=build, capture_output=True, text=True, check=False
    ).stdout
    source = model.read_text().splitlines()
    runners: dict[str, str] = {}
    last = None
    for line in out.splitlines():
        match = STEP.match(line)
        if not match:
            continue
        pid, proc, lineno, action = match.groups()
        if not KEEP.match(action):
            continue
        who = proc if proc != "Runner" else runners.setdefault(pid, f"runner {chr(ord('A') + len(runners))}")
        code = source[int(lineno) - 1].strip()
        key = (who, lineno)
        if key == last:
            continue
        last = key
        print(f"{who:9} {lineno:>4}: {code[:110]}")
    violated = [line for line in out.splitlines() if "assertion violated" in line or "invalid end state" in line]
    print(violated[0].strip() if violated else "(no violation in the trail)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
