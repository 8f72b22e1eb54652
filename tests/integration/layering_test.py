"""tools/check-layering.sh: the tree obeys the layering rules, and the checker catches breaks.

The second test runs the checker on a small fixture tree so that a checker which silently
stopped finding anything (and so always passes) fails here.
Run: /usr/bin/python3 tests/integration/layering_test.py
"""

import os
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKER = os.path.join(ROOT, "tools", "check-layering.sh")

CLEAN = """/* Prose may mention read(fd) and
 * #include <pthread.h> without breaking a rule. */
#include <string.h>
// write(1, "x", 1); socket(
static const char *s = "read( /* not a comment";
static const char q = '"';
int rc_frame_write(struct ops *o) { o->read(1); o->x.write(2); return s[0] + q; }
"""
BROKEN = """#include <liburing.h>
#include "runtime.h"
#include "app/hostcheck.h"
/* a comment
   spanning lines */ int g(int fd, char *b) { return (int)read(fd, b, 1); }
long h(void) { return time (0); }
"""
APP = '#include <liburing.h>\n#include "../../shards/runtime.h"\n'


def check(root=None):
    args = [CHECKER] + ([root] if root else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


class LayeringTest(unittest.TestCase):
    def test_tree_is_layered(self):
        p = check()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)

    def test_checker_finds_violations_and_ignores_comments(self):
        with tempfile.TemporaryDirectory() as root:
            for path, text in (("src/clean.c", CLEAN), ("src/broken.c", BROKEN),
                               ("src/app/main.c", APP), ("shards/runtime.h", "\n")):
                os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
                with open(os.path.join(root, path), "w") as f:
                    f.write(text)
            p = check(root)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        found = sorted(line.split(": ")[0] for line in p.stdout.splitlines()
                       if line.startswith("src/"))
        self.assertEqual(found, ["src/app/main.c:2", "src/broken.c:1", "src/broken.c:2",
                                 "src/broken.c:3", "src/broken.c:5", "src/broken.c:6"])
        self.assertNotIn("src/clean.c", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
