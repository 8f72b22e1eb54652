"""GET /ringcast.js: the JS client library embedded at build time is served byte for byte as
application/javascript with a strong ETag and Cache-Control; If-None-Match answers 304 with
the same head and no body; HEAD sends the head only; other methods get 405; the connection
stays alive between them."""
import http.client
import os

import harness
from harness import ServerTestCase, scale

LIBRARY = os.path.join(os.path.dirname(__file__), "..", "..", "clients", "js", "ringcast.js")


class AssetTest(ServerTestCase):
    def conn(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=scale(5))
        self.addCleanup(c.close)
        return c

    def get(self, c, method="GET", headers=None):
        c.request(method, "/ringcast.js", headers=headers or {})
        r = c.getresponse()
        return r, r.read()

    def test_served_byte_for_byte_with_etag(self):
        """The bytes are the library's; the type, ETag and Cache-Control say how to cache."""
        with open(LIBRARY, "rb") as f:
            want = f.read()
        r, body = self.get(self.conn())
        self.assertEqual(r.status, 200)
        self.assertEqual(body, want)
        self.assertEqual(r.getheader("Content-Type"), "application/javascript; charset=utf-8")
        self.assertRegex(r.getheader("ETag"), r'^"[0-9a-f]{20}"$')
        self.assertIn("max-age=", r.getheader("Cache-Control"))

    def test_if_none_match_head_and_methods_on_one_connection(self):
        """304 for the current ETag (same head, no body), 200 for a stale one, HEAD without a
        body, 405 for POST; keep-alive holds across the first three."""
        c = self.conn()
        r, body = self.get(c)
        etag, length = r.getheader("ETag"), r.getheader("Content-Length")
        r, body = self.get(c, headers={"If-None-Match": etag})
        self.assertEqual((r.status, body, r.getheader("ETag")), (304, b"", etag))
        self.assertEqual(r.getheader("Content-Length"), length)
        r, body = self.get(c, headers={"If-None-Match": '"stale"'})
        self.assertEqual((r.status, len(body)), (200, int(length)))
        r, body = self.get(c, "HEAD")
        self.assertEqual((r.status, body, r.getheader("Content-Length")), (200, b"", length))
        r, body = self.get(self.conn(), "POST")
        self.assertEqual(r.status, 405)


if __name__ == "__main__":
    harness.main()
