"""Every configuration or usage error exits with status 2 and one line naming the key (or the
file, or the flag); --help and the README document the statuses. Runtime failures keep 1 (see
process_life_test.py)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import scale  # noqa: E402

CONFIG_ERROR = 2


def run(*args):
    # --port=0 so that a case the gateway wrongly accepts cannot collide with anything.
    return subprocess.run([harness.BIN, "--port=0", "--address=127.0.0.1", *args],
                          capture_output=True, text=True, timeout=scale(20),
                          stdin=subprocess.DEVNULL)


@unittest.skipIf(harness.REF, "ringcast's command line only")
class ConfigErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ringcast-exit-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def conf(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def cases(self):
        """(what, argv, text the one line must contain)."""
        return [
            ("unknown key", ["--no_such_key=1"], "no_such_key"),
            ("not a number", ["--backlog=lots"], "backlog"),
            ("out of range", ["--shards=257"], "shards"),
            ("not a boolean", ["--pin_shards=maybe"], "pin_shards"),
            ("cross-key rule", ["--frame_bytes_max=2m", "--message_bytes_max=1m"],
             "frame_bytes_max"),
            ("power of two", ["--recv_buffers=1000"], "recv_buffers"),
            ("ping vs idle", ["--ping_interval_ms=5000", "--idle_timeout_ms=5000"],
             "idle_timeout_ms"),
            ("enumerated value", ["--slow_consumer_policy=sometimes"], "slow_consumer_policy"),
            ("log level", ["--log_level=loud"], "log_level"),
            ("listen address", ["--address=not-an-address"], "address"),
            ("missing file", ["--config", "/nonexistent/ringcast.conf"],
             "/nonexistent/ringcast.conf"),
            ("unreadable file", ["--config", self.tmp], self.tmp),
            ("unknown key in file", ["--config", self.conf("a.conf", "porrt = 1\n")], "porrt"),
            ("bad value in file", ["--config", self.conf("b.conf", "\nport = 99999\n")],
             "b.conf:2: port"),
            ("line without '='", ["--config", self.conf("c.conf", "port\n")], "c.conf:1:"),
            ("cross-key rule in file",
             ["--config", self.conf("d.conf", "recv_buffer_bytes = 3000\n")],
             "recv_buffer_bytes"),
            ("too many origins",
             ["--origins=" + ",".join("https://a%d.example" % i for i in range(33))],
             "origins"),
            ("origin too long", ["--origins=https://" + "a" * 260 + ".example"], "origins"),
            ("too many subprotocols", ["--subprotocols=" + ",".join("p%d" % i for i in range(17))],
             "subprotocols"),
            ("flag without value", ["--handshake_timeout_ms"], "--handshake_timeout_ms"),
            ("not a flag", ["stray"], "stray"),
        ]

    def test_every_config_error_exits_2_with_one_line(self):
        """A table of bad flags and files: status 2, one stderr line naming the culprit,
        nothing started."""
        for what, argv, names in self.cases():
            with self.subTest(what):
                r = run(*argv)
                lines = r.stderr.splitlines()
                self.assertEqual(r.returncode, CONFIG_ERROR,
                                 "%s: exit %d, stderr:\n%s" % (argv, r.returncode, r.stderr))
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertTrue(lines[0].startswith("ringcast: "), lines[0])
                self.assertIn(names, lines[0])
                self.assertNotIn("ready on", r.stderr)

    def test_statuses_are_documented(self):
        """--help and the README's configuration section name status 2 and status 1."""
        r = subprocess.run([harness.BIN, "--help"], capture_output=True, text=True,
                           timeout=scale(20))
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"Exit status: .*2 usage or configuration error")
        self.assertRegex(r.stdout, r"1 runtime failure")
        with open(os.path.join(harness.REPO, "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("## Configuration"):readme.index("## Performance")]
        self.assertRegex(section, r"Exit status: .*2 for every usage or configuration error")
        self.assertRegex(re.sub(r"\s+", " ", section), r"1 for runtime failures")


if __name__ == "__main__":
    harness.main()
