"""tools/check-layering.sh: the tree obeys the layering rules, and the checker catches breaks.

The other tests run the checker on small fixture trees so that a checker which silently
stopped finding anything (and so always passes) fails here: src/ reaching into shards/ or
doing I/O, and shards/ files including a higher layer, left out of the layer list, or
including each other in a circle.
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

# shards/ files against the script's SHARD_LAYERS (mpsc < ... < runtime < log < ... < conn_rt
# < sendq < ... < pubsub < pubsub_proto): each file's text, and the violations it holds.
SHARDS = {
    "runtime.h": "#include <liburing.h>\n#include \"wheel.h\"\n",  # lower: fine
    "wheel.h": "/* #include \"runtime.h\" in a comment */\n",       # fine
    "conn_rt.h": "#include \"runtime.h\"\n",                        # fine
    "conn.c": "#include \"conn_rt.h\"\n#include \"config.h\"\n#include \"sendq.h\"\n",  # :3 up
    "sendq.h": "#include \"conn_rt.h\"\n",                          # fine
    "extra.c": "int x;\n",                                          # :1 in no layer
    "pubsub.h": "#include \"runtime.h\"\n#include \"pubsub_proto.h\"\n",  # :2 up
    "pubsub_proto.h": "#include \"pubsub.h\"\n",                    # :1 closes a cycle
    "log.h": "#include \"runtime.h\"\n#include \"log.h\"\n",          # :2 a cycle of one
}


def write_tree(root, files):
    for path, text in files:
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write(text)


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
            write_tree(root, (("src/clean.c", CLEAN), ("src/broken.c", BROKEN),
                              ("src/app/main.c", APP), ("shards/runtime.h", "\n")))
            p = check(root)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        found = sorted(line.split(": ")[0] for line in p.stdout.splitlines()
                       if line.startswith("src/"))
        self.assertEqual(found, ["src/app/main.c:2", "src/broken.c:1", "src/broken.c:2",
                                 "src/broken.c:3", "src/broken.c:5", "src/broken.c:6"])
        self.assertNotIn("src/clean.c", p.stdout)

    def test_checker_finds_shard_layer_breaks_and_cycles(self):
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, [("src/clean.c", CLEAN)] +
                       [("shards/" + name, text) for name, text in SHARDS.items()])
            p = check(root)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = [line for line in p.stdout.splitlines() if line.startswith("shards/")]
        found = sorted(line.split(": ")[0] for line in lines)
        self.assertEqual(found, ["shards/conn.c:3", "shards/extra.c:1", "shards/log.h:2",
                                 "shards/pubsub.h:2", "shards/pubsub_proto.h:1"], p.stdout)
        self.assertEqual(sum("include cycle" in line for line in lines), 2, p.stdout)
        self.assertEqual(sum("higher layer" in line for line in lines), 2, p.stdout)
        self.assertIn("5 violation(s)", p.stdout)

    def test_every_shard_file_has_a_layer(self):
        """The real tree: the OK line counts shards/ files, so none was skipped."""
        p = check()
        shards = [n for n in os.listdir(os.path.join(ROOT, "shards")) if n.endswith((".c", ".h"))]
        self.assertIn(f"{len(shards)} under shards/", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
