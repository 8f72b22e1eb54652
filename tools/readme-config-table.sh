#!/usr/bin/env bash
# Regenerates README.md's config-key table from the binary (`ringcast --print-config-markdown`),
# the check tests/integration/cli_test.py makes. Usage: tools/readme-config-table.sh [ringcast]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/bin/ringcast}
table=$("$bin" --print-config-markdown)
python3 - "$table" <<'PY'
import re, sys
table = sys.argv[1].strip()
text = open("README.md").read()
new = re.sub(r"(<!-- config-table:begin -->\n).*?(<!-- config-table:end -->)",
             lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
open("README.md", "w").write(new)
PY
