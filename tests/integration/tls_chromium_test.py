"""wss:// and https:// with headless Chromium (issue 11): a page opens wss:// to /echo (binary
and text across TLS record boundaries, up to 1 MiB) and pub/sub on /ws between two sockets;
and the dashboard, served by ringcast over https://, goes live over wss:// and shows the
stats it receives. Chromium trusts exactly the test certificate's key
(--ignore-certificate-errors-spki-list), so a wrong certificate would still fail.

Without /usr/bin/chromium (or $CHROMIUM) the file fails, unless
RINGCAST_ALLOW_SKIP_CHROMIUM=1, like deflate_chromium_test.py, whose runner it uses.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deflate_chromium_test as chromium  # noqa: E402
import harness  # noqa: E402
import tls_certs  # noqa: E402

CERTS_DIR = tempfile.mkdtemp(prefix="ringcast-tls-chromium-")
CERTS = tls_certs.make(CERTS_DIR)

DASHBOARD_LIVE = """(() => {
  const state = (document.getElementById('state') || {}).textContent;
  const rows = document.querySelectorAll('#t tr').length;
  if (state !== 'live' || rows === 0) return 'pending';
  return JSON.stringify({ok: location.protocol === 'https:', state, rows});
})()"""


def spki_hash(cert):
    """base64(sha256(SubjectPublicKeyInfo)) of cert, as Chromium's SPKI allow-list wants."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@unittest.skipIf(chromium.chromium_missing(), "no chromium")
class ChromiumTlsTest(harness.ServerTestCase):
    shards = 2
    server_opts = {"tls_port": harness.free_port(), "tls_cert_file": CERTS["localhost"][0],
                   "tls_key_file": CERTS["localhost"][1], "stats_interval_ms": 200}

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(CERTS_DIR, ignore_errors=True)

    def chromium_args(self):
        return ["--ignore-certificate-errors-spki-list=" + spki_hash(CERTS["localhost"][0])]

    def test_wss_echo_and_pubsub_page(self):
        tport = int(self.server.opts["tls_port"])
        with chromium.PageServer() as pages:
            url = "http://127.0.0.1:%d/tls.html?port=%d" % (pages.port, tport)
            verdict, dom, err = chromium.run_page(url, extra_args=self.chromium_args())
        if verdict is None or verdict.get("ok") is not True:
            raise AssertionError("page verdict %r\nDOM: %s\nchromium stderr (tail):\n%s"
                                 % (verdict, dom[-1500:], harness.tail(err, 15)))
        self.assertGreater(verdict["checks"], 15)

    def test_dashboard_over_https(self):
        tport = int(self.server.opts["tls_port"])
        url = "https://127.0.0.1:%d/" % tport
        verdict, dom, err = chromium.run_page(url, expr=DASHBOARD_LIVE,
                                              extra_args=self.chromium_args())
        if verdict is None or verdict.get("ok") is not True:
            raise AssertionError("dashboard verdict %r\nDOM: %s\nchromium stderr (tail):\n%s"
                                 % (verdict, dom[-1500:], harness.tail(err, 15)))


if __name__ == "__main__":
    if chromium.chromium_missing() and os.environ.get("RINGCAST_ALLOW_SKIP_CHROMIUM") == "1":
        print("SKIP: no chromium at %s" % chromium.CHROMIUM)
        sys.exit(0)
    if chromium.chromium_missing():
        sys.exit("FAIL: no chromium at %s (tools/install-deps.sh installs it)" % chromium.CHROMIUM)
    harness.main(budget_s=120)
