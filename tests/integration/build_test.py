"""What the build promises a new user: the gateway links only the libraries its code calls
(libcrypto for SHA-1, base64 and HMAC, libssl for TLS termination, hiredis for the Redis
engine's RESP), none of them unused, and the README states `make fuzz`'s default time per
target as the Makefile sets it."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

USED = ("libcrypto", "libssl", "libhiredis")


def output(*argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=harness.REPO)
    return p.returncode, p.stdout + p.stderr


@unittest.skipIf(harness.REF, "ringcast's build only")
class Build(unittest.TestCase):
    def test_binary_needs_what_it_links(self):
        """ldd on the gateway under test: libcrypto, libssl and libhiredis, none of them an
        unused direct dependency."""
        rc, deps = output("ldd", harness.BIN)
        self.assertEqual(rc, 0, deps)
        for lib in USED:
            self.assertIn(lib, deps)
        rc, unused = output("ldd", "-u", "-r", harness.BIN)
        for lib in USED:
            self.assertNotIn(lib, unused)

    def test_link_line_names_them(self):
        """The Makefile's link command itself (make -n, nothing is built) asks for libcrypto,
        libssl and hiredis."""
        tmp = tempfile.mkdtemp(prefix="ringcast-link-")
        try:
            target = os.path.join(tmp, "bin", "ringcast")
            rc, out = output("make", "-n", "-B", "BUILD=" + tmp, target)
            self.assertEqual(rc, 0, out)
            links = [line for line in out.splitlines() if "-o " + target in line]
            self.assertEqual(len(links), 1, out[-2000:])
            self.assertIn("-lcrypto", links[0])
            self.assertIn("-lhiredis", links[0])
            self.assertRegex(links[0], r"-lssl\b")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_readme_states_the_fuzz_default(self):
        """README's `make fuzz` line gives the Makefile's FUZZ_TIME default."""
        with open(os.path.join(harness.REPO, "Makefile")) as f:
            default = re.search(r"^FUZZ_TIME\s*\?=\s*(\d+)\s*$", f.read(), re.M)
        self.assertIsNotNone(default, "Makefile sets no FUZZ_TIME default")
        with open(os.path.join(harness.REPO, "README.md")) as f:
            readme = re.sub(r"\s+", " ", f.read())
        stated = re.search(r"`make fuzz` \(libFuzzer targets, (\d+) seconds each by default",
                           readme)
        self.assertIsNotNone(stated, "README does not state make fuzz's default time")
        self.assertEqual(stated.group(1), default.group(1))


if __name__ == "__main__":
    harness.main()
