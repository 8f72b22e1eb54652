"""A fresh machine: `make test` and `make run` install the dependencies and build in ONE
invocation. GNU make caches a directory's listing the first time a rule looks into it, so a
build that installs llhttp's sources (/usr/share/llhttp) and compiles them in the same make
fails with "No rule to make target"; the Makefile therefore installs first and builds in a
sub-make. Simulated here: llhttp's sources appear only when the install step runs."""

import os
import shutil
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LLHTTP = "/usr/share/llhttp"


def make(tmp, *goals, **variables):
    argv = ["make", "--no-print-directory", "-C", REPO, *goals]
    argv += [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@unittest.skipUnless(os.path.isdir(LLHTTP), "needs Debian's node-llhttp sources")
class FreshBuild(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rc-fresh-")
        self.src = os.path.join(self.tmp, "llhttp-src")  # absent until "installed"
        self.vars = {"BUILD": os.path.join(self.tmp, "build"), "LLHTTP_SRC": self.src,
                     "DEPS_CMD": f"cp -r {LLHTTP} {self.src}", "V": "1"}

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def objects(self):
        d = os.path.join(self.vars["BUILD"], "llhttp")
        return sorted(f for f in os.listdir(d) if f.endswith(".o")) if os.path.isdir(d) else []

    def test_install_then_build_in_one_invocation(self):
        """The README's path: build-all (what `make test` runs) installs, then compiles the
        sources the install just created."""
        r = make(self.tmp, "build-all", BUILD_ALL_GOALS="$(LLHTTP_OBJ)", **self.vars)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.objects(), ["api.o", "http.o", "llhttp.o"])

    def test_the_simulation_reproduces_the_original_failure(self):
        """The control: installing and compiling in one make (the old `test: deps all`)
        fails exactly as a new user's first run did, so the test above can fail."""
        r = make(self.tmp, "deps", f"{self.vars['BUILD']}/llhttp/llhttp.o", **self.vars)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No rule to make target", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
