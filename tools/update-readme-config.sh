#!/usr/bin/env bash
# Regenerates README.md's configuration table from the binary's own key table
# (ringcast --print-config-markdown). tests/integration/cli_test.py fails when they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/bin/ringcast}
table=$("$bin" --print-config-markdown)
TABLE="$table" python3 - <<'PY'
import os, re
p = "README.md"
s = open(p).read()
s = re.sub(r"(<!-- config-table:begin -->\n).*?(<!-- config-table:end -->)",
           lambda m: m.group(1) + os.environ["TABLE"] + "\n" + m.group(2), s, flags=re.S)
open(p, "w").write(s)
PY
