"""CORS on what a page from another origin calls over HTTP: GET /sse, POST /publish and the
assets (/ringcast.js as an ES module). With an empty `origins` any page may read the answers
(Access-Control-Allow-Origin: *); with a list, a listed Origin is echoed (with Vary: Origin)
and any other one gets 403, counted. A request without Origin (a backend, curl) is served as
before and gets no CORS headers. Preflights (OPTIONS) answer 204 with the methods and headers
the real request may use, and keep the connection alive."""
import http.client
import json

import harness
from harness import ServerTestCase, scale


def request(port, method, path, headers=None, body=None):
    return harness.exchange(http.client.HTTPConnection("127.0.0.1", port, timeout=scale(5)),
                            method, path, body, headers)


def sse_head(port, origin):
    """The head of a GET /sse answer (the stream itself is left unread)."""
    c = harness.RawClient(port)
    try:
        c.request("GET", "/sse?topics=t", headers=[("Host", "t"), ("Origin", origin)])
        return c.read_response()
    finally:
        c.close()


PUBLISH = json.dumps({"topic": "t", "data": 1})


class AnyOriginTest(ServerTestCase):
    def test_no_origin_no_cors_headers(self):
        """A backend's request (no Origin) is answered as before, without CORS headers."""
        r, _ = request(self.port, "POST", "/publish", {"Content-Type": "application/json"},
                       PUBLISH)
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.getheader("Access-Control-Allow-Origin"))

    def test_any_origin_reads_publish_asset_and_sse(self):
        """With an empty origins list every page may read: "*" on publish, asset and stream."""
        o = {"Origin": "https://app.example"}
        r, body = request(self.port, "POST", "/publish",
                          dict(o, **{"Content-Type": "application/json"}), PUBLISH)
        self.assertEqual((r.status, r.getheader("Access-Control-Allow-Origin")), (200, "*"))
        self.assertIn("seq", json.loads(body))
        r, _ = request(self.port, "GET", "/ringcast.js", o)
        self.assertEqual((r.status, r.getheader("Access-Control-Allow-Origin")), (200, "*"))
        head = sse_head(self.port, "https://app.example")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("access-control-allow-origin"), "*")

    def test_preflight_then_request_on_one_connection(self):
        """OPTIONS answers 204 with the methods and headers allowed, and the browser's real
        request follows on the same connection."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=scale(5))
        self.addCleanup(c.close)
        c.request("OPTIONS", "/publish", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (204, b""))
        self.assertEqual(r.getheader("Access-Control-Allow-Origin"), "*")
        self.assertEqual(r.getheader("Access-Control-Allow-Methods"), "POST")
        allowed = r.getheader("Access-Control-Allow-Headers").lower()
        for h in ("authorization", "content-type", "last-event-id"):
            self.assertIn(h, allowed)
        self.assertGreater(int(r.getheader("Access-Control-Max-Age")), 0)
        c.request("POST", "/publish", body=PUBLISH, headers={
            "Origin": "https://app.example", "Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn("seq", json.loads(r.read()))
        r, _ = request(self.port, "OPTIONS", "/sse", {"Origin": "https://app.example"})
        self.assertEqual((r.status, r.getheader("Access-Control-Allow-Methods")), (204, "GET"))
        self.assertGreaterEqual(harness.metric_total(self.port, "cors_preflights_total"), 2)


class ListedOriginsTest(ServerTestCase):
    server_opts = {"origins": "https://app.example,https://Admin.Example:8443"}

    def test_listed_origin_is_echoed_as_configured(self):
        """A listed origin (compared case-insensitively) is echoed as the config spells it,
        with Vary: Origin, on every CORS path, errors included."""
        o = {"Origin": "https://admin.example:8443"}
        r, _ = request(self.port, "GET", "/ringcast.js", o)
        self.assertEqual(r.getheader("Access-Control-Allow-Origin"),
                         "https://Admin.Example:8443")
        self.assertEqual(r.getheader("Vary"), "Origin")
        r, body = request(self.port, "POST", "/publish",
                          dict(o, **{"Content-Type": "application/json"}), "not json")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.getheader("Access-Control-Allow-Origin"),
                         "https://Admin.Example:8443")
        head = sse_head(self.port, "https://app.example")
        self.assertEqual(head.header("access-control-allow-origin"), "https://app.example")
        self.assertEqual(head.header("vary"), "Origin")

    def test_unlisted_origin_refused_and_counted(self):
        """Another page gets 403 on the stream, the publish path, the asset and a preflight;
        a request without Origin is still served."""
        before = harness.metric_total(self.port, "cors_refused_total")
        evil = {"Origin": "https://evil.example"}
        self.assertEqual(request(self.port, "POST", "/publish", evil, PUBLISH)[0].status, 403)
        self.assertEqual(request(self.port, "GET", "/sse?topics=t", evil)[0].status, 403)
        self.assertEqual(request(self.port, "GET", "/ringcast.js", evil)[0].status, 403)
        self.assertEqual(request(self.port, "OPTIONS", "/publish", evil)[0].status, 403)
        self.assertEqual(harness.metric_total(self.port, "cors_refused_total") - before, 4)
        r, _ = request(self.port, "POST", "/publish", {"Content-Type": "application/json"},
                       PUBLISH)
        self.assertEqual(r.status, 200)

    def test_same_origin_page_is_not_cross_origin(self):
        """A page the gateway served posts with its own Origin: served, no CORS headers."""
        own = "http://127.0.0.1:%d" % self.port
        r, _ = request(self.port, "POST", "/publish",
                       {"Origin": own, "Content-Type": "application/json"}, PUBLISH)
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.getheader("Access-Control-Allow-Origin"))


# The longest origin the configuration takes: "https://", a 253-byte host, ":65535".
LONG_ORIGIN = "https://" + ".".join(["a" * 63] * 3 + ["b" * 61]) + ":65535"


class LongOriginTest(ServerTestCase):
    server_opts = {"origins": LONG_ORIGIN}

    def test_the_longest_origin_gets_its_headers(self):
        """An origin of 267 bytes, the longest the configuration takes (a longer one is a
        start error), is echoed on a preflight, a publish and a stream."""
        self.assertEqual(len(LONG_ORIGIN), 267)
        o = {"Origin": LONG_ORIGIN}
        r, _ = request(self.port, "OPTIONS", "/publish", o)
        self.assertEqual((r.status, r.getheader("Access-Control-Allow-Origin")),
                         (204, LONG_ORIGIN))
        r, _ = request(self.port, "POST", "/publish",
                       dict(o, **{"Content-Type": "application/json"}), PUBLISH)
        self.assertEqual((r.status, r.getheader("Access-Control-Allow-Origin")),
                         (200, LONG_ORIGIN))
        head = sse_head(self.port, LONG_ORIGIN)
        self.assertEqual(head.header("access-control-allow-origin"), LONG_ORIGIN)


if __name__ == "__main__":
    harness.main()
