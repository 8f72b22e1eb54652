"""The HTTP side of /echo with raw sockets and http.client: the opening handshake, every rejected
handshake with its exact status, and plain HTTP (health, 404, 426).

Every error response must be a complete HTTP response (Content-Length matching the body,
Connection: close) after which the server closes TCP.
"""

import base64
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import OP_TEXT, RawClient, http_get, new_key  # noqa: E402


def upgrade_headers(key=None, **over):
    """Valid upgrade headers; over maps header name (underscores for dashes) to a value or None
    (None drops the header)."""
    h = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": key or new_key(), "Sec-WebSocket-Version": "13"}
    for name, value in over.items():
        name = name.replace("_", "-")
        match = [k for k in h if k.lower() == name.lower()]
        for k in match:
            del h[k]
        if value is not None:
            h[name] = value
    return list(h.items())


class HandshakeBase(harness.ServerTestCase):
    def raw(self, method="GET", path="/echo", version="HTTP/1.1", headers=None, body=b""):
        """Sends one request and returns the response; the connection is closed afterwards."""
        with RawClient(self.port) as c:
            c.request(method, path, version, upgrade_headers() if headers is None else headers,
                      body)
            return c.read_response()

    def assert_rejected(self, status, method="GET", path="/echo", version="HTTP/1.1",
                        headers=None):
        """Asserts a complete error response with one of the statuses and a TCP close after."""
        statuses = status if isinstance(status, (set, tuple)) else {status}
        with RawClient(self.port) as c:
            c.request(method, path, version, upgrade_headers() if headers is None else headers)
            r = c.read_response()
            self.assertIn(r.status, statuses, "got %r" % r)
            self.assertIsNotNone(r.header("content-length"), "no Content-Length in %r" % r)
            self.assertEqual(int(r.header("content-length")), len(r.body))
            self.assertIn("close", (r.header("connection") or "").lower(),
                          "no Connection: close in %r" % r)
            self.assertIsNone(r.header("sec-websocket-accept"))
            c.expect_eof()
        return r


class HandshakeTest(HandshakeBase):
    def test_upgrade_101(self):
        """A valid upgrade gets 101 with Upgrade, Connection and the RFC accept key."""
        with RawClient(self.port) as c:
            key = "dGhlIHNhbXBsZSBub25jZQ=="
            r = c.handshake(key=key)
            self.assertEqual(r.header("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            self.assertEqual((r.header("upgrade") or "").lower(), "websocket")
            self.assertIn("upgrade", (r.header("connection") or "").lower())
            self.assertIsNone(r.header("sec-websocket-protocol"))
            c.send_frame(OP_TEXT, b"after handshake")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"after handshake"))

    def test_upgrade_request_in_pieces(self):
        """A request arriving in 6 TCP segments is parsed across them."""
        with RawClient(self.port) as c:
            key = new_key()
            req = ("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode()
            for i in range(0, len(req), len(req) // 5):
                c.send(req[i:i + len(req) // 5])
                time.sleep(0.03)
            r = c.read_response()
            self.assertEqual(r.status, 101, r)
            self.assertEqual(r.header("sec-websocket-accept"), harness.accept_key(key))

    def test_upgrade_and_first_frame_in_one_segment(self):
        """A frame sent in the same segment as the request is not lost."""
        with RawClient(self.port) as c:
            key = new_key()
            head = "\r\n".join(["GET /echo HTTP/1.1"] + ["%s: %s" % h for h in
                                                         upgrade_headers(key)]) + "\r\n\r\n"
            c.send(head.encode() + harness.encode_frame(OP_TEXT, b"eager"))
            self.assertEqual(c.read_response().status, 101)
            self.assertEqual(c.recv_message(), (OP_TEXT, b"eager"))

    def test_connection_token_list_and_case(self):
        """Connection is a token list and header names/values are case-insensitive."""
        with RawClient(self.port) as c:
            key = new_key()
            c.request("GET", "/echo", headers=[
                ("host", "127.0.0.1"), ("upgrade", "WebSocket"),
                ("connection", "keep-alive, UPGRADE"), ("sec-websocket-key", key),
                ("sec-websocket-version", "13")])
            r = c.read_response()
            self.assertEqual(r.status, 101, r)
            self.assertEqual(r.header("sec-websocket-accept"), harness.accept_key(key))

    def test_upgrade_with_query_string(self):
        """/echo?x=1 is still /echo."""
        with RawClient(self.port) as c:
            c.handshake("/echo?x=1")

    def test_headers_under_limit_accepted(self):
        """A request with ~6 KB of headers (under header_bytes_max 8192) is accepted."""
        with RawClient(self.port) as c:
            c.handshake(headers=[("X-Pad-%d" % i, "p" * 100) for i in range(60)])

    def test_subprotocol_not_configured(self):
        """With no subprotocols configured, an offer gets a 101 without Sec-WebSocket-Protocol."""
        with RawClient(self.port) as c:
            r = c.handshake(headers=[("Sec-WebSocket-Protocol", "chat")])
            self.assertIsNone(r.header("sec-websocket-protocol"))

    def test_health_200(self):
        """GET /health answers 200."""
        status, _, _ = http_get(self.port, "/health")
        self.assertEqual(status, 200)

    def test_health_complete_response(self):
        """GET /health is a complete response (Content-Length matches the body)."""
        with RawClient(self.port) as c:
            c.request("GET", "/health", headers=[("Host", "127.0.0.1"), ("Connection", "close")])
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertIsNotNone(r.header("content-length"))
            self.assertEqual(int(r.header("content-length")), len(r.body))

    def test_plain_get_unknown_path_404(self):
        """A plain GET of an unknown path is 404."""
        self.assertEqual(http_get(self.port, "/nope")[0], 404)
        self.assert_rejected(404, path="/nope", headers=[("Host", "127.0.0.1")])

    def test_upgrade_unknown_path_404(self):
        """An upgrade to an unknown path is 404."""
        self.assert_rejected(404, path="/nope")

    def test_upgrade_root_path_404(self):
        """An upgrade to / (not an endpoint yet) is 404."""
        self.assert_rejected(404, path="/")

    def test_plain_get_echo_426(self):
        """A plain GET /echo without Upgrade is 426."""
        self.assertEqual(http_get(self.port, "/echo")[0], 426)
        self.assert_rejected(426, headers=[("Host", "127.0.0.1")])

    def test_missing_key_400(self):
        """No Sec-WebSocket-Key is 400."""
        self.assert_rejected(400, headers=upgrade_headers(Sec_WebSocket_Key=None))

    def test_key_not_base64_400(self):
        """A Sec-WebSocket-Key that is not base64 is 400."""
        bad = "!!!!not-base64!!!!!!=="
        self.assert_rejected(400, headers=upgrade_headers(Sec_WebSocket_Key=bad))

    def test_key_15_bytes_400(self):
        """A Sec-WebSocket-Key decoding to 15 bytes is 400."""
        key = base64.b64encode(os.urandom(15)).decode()
        self.assert_rejected(400, headers=upgrade_headers(Sec_WebSocket_Key=key))

    def test_key_17_bytes_400(self):
        """A Sec-WebSocket-Key decoding to 17 bytes is 400."""
        key = base64.b64encode(os.urandom(17)).decode()
        self.assert_rejected(400, headers=upgrade_headers(Sec_WebSocket_Key=key))

    def test_key_empty_400(self):
        """An empty Sec-WebSocket-Key is 400."""
        self.assert_rejected(400, headers=upgrade_headers(Sec_WebSocket_Key=""))

    def test_version_8_426(self):
        """Sec-WebSocket-Version 8 is 426 naming version 13."""
        r = self.assert_rejected(426, headers=upgrade_headers(Sec_WebSocket_Version="8"))
        self.assertEqual(r.header("sec-websocket-version"), "13", r)

    def test_version_14_426(self):
        """Sec-WebSocket-Version 14 is 426 naming version 13."""
        r = self.assert_rejected(426, headers=upgrade_headers(Sec_WebSocket_Version="14"))
        self.assertEqual(r.header("sec-websocket-version"), "13", r)

    def test_version_missing_rejected(self):
        """A missing Sec-WebSocket-Version is refused (426 naming 13, or 400)."""
        r = self.assert_rejected({400, 426}, headers=upgrade_headers(Sec_WebSocket_Version=None))
        if r.status == 426:
            self.assertEqual(r.header("sec-websocket-version"), "13", r)

    def test_method_post_405(self):
        """An upgrade with POST is 405 (or 400)."""
        self.assert_rejected({405, 400}, method="POST",
                             headers=upgrade_headers() + [("Content-Length", "0")])

    def test_method_put_405(self):
        """An upgrade with PUT is 405 (or 400)."""
        self.assert_rejected({405, 400}, method="PUT",
                             headers=upgrade_headers() + [("Content-Length", "0")])

    def test_http10_400(self):
        """An upgrade over HTTP/1.0 is 400."""
        self.assert_rejected(400, version="HTTP/1.0")

    def test_missing_host_400(self):
        """An upgrade without Host is 400."""
        self.assert_rejected(400, headers=upgrade_headers(Host=None))

    def test_missing_connection_upgrade_rejected(self):
        """Upgrade: websocket without the Connection: Upgrade token is refused (400 or 426)."""
        self.assert_rejected({400, 426}, headers=upgrade_headers(Connection="keep-alive"))

    def test_upgrade_not_websocket_rejected(self):
        """Upgrade: h2c on /echo is refused (400 or 426)."""
        self.assert_rejected({400, 426}, headers=upgrade_headers(Upgrade="h2c"))

    def test_headers_over_limit_431(self):
        """One 9,000-byte header (over header_bytes_max 8192) is 431."""
        self.assert_rejected(431, headers=upgrade_headers() + [("X-Pad", "p" * 9000)])

    def test_many_headers_over_limit_431(self):
        """120 headers of 100 bytes (over header_bytes_max 8192) is 431."""
        self.assert_rejected(431, headers=upgrade_headers() +
                             [("X-Pad-%d" % i, "p" * 100) for i in range(120)])

    def test_garbage_request_400(self):
        """Bytes that are not HTTP get 400 and a close."""
        with RawClient(self.port) as c:
            c.send(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 400, r)
            c.expect_eof()


class PolicyTest(HandshakeBase):
    server_opts = {"origins": "http://a.example", "subprotocols": "chat,superchat"}

    def test_origin_allowed_101(self):
        """An Origin in the allowlist is accepted."""
        with RawClient(self.port) as c:
            c.handshake(headers=[("Origin", "http://a.example")])

    def test_origin_not_allowed_403(self):
        """An Origin outside the allowlist is 403."""
        self.assert_rejected(403, headers=upgrade_headers(Origin="http://b.example"))

    def test_origin_prefix_not_allowed_403(self):
        """An Origin that merely starts with an allowed one is 403."""
        self.assert_rejected(403, headers=upgrade_headers(Origin="http://a.example.evil"))

    def test_subprotocol_server_preference(self):
        """Offered "superchat, chat" with server order chat,superchat selects chat."""
        with RawClient(self.port) as c:
            r = c.handshake(headers=[("Origin", "http://a.example"),
                                     ("Sec-WebSocket-Protocol", "superchat, chat")])
            self.assertEqual(r.header("sec-websocket-protocol"), "chat")

    def test_subprotocol_single_offer(self):
        """Offered only "superchat" selects superchat."""
        with RawClient(self.port) as c:
            r = c.handshake(headers=[("Origin", "http://a.example"),
                                     ("Sec-WebSocket-Protocol", "superchat")])
            self.assertEqual(r.header("sec-websocket-protocol"), "superchat")

    def test_subprotocol_offer_on_two_lines(self):
        """An offer split over two header lines is one list: chat is selected."""
        with RawClient(self.port) as c:
            r = c.handshake(headers=[("Origin", "http://a.example"),
                                     ("Sec-WebSocket-Protocol", "superchat"),
                                     ("Sec-WebSocket-Protocol", "chat")])
            self.assertEqual(r.header("sec-websocket-protocol"), "chat")

    def test_subprotocol_no_overlap(self):
        """No overlap: 101 without Sec-WebSocket-Protocol, and the connection echoes."""
        with RawClient(self.port) as c:
            r = c.handshake(headers=[("Origin", "http://a.example"),
                                     ("Sec-WebSocket-Protocol", "foo, bar")])
            self.assertIsNone(r.header("sec-websocket-protocol"))
            c.send_frame(OP_TEXT, b"x")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"x"))


if __name__ == "__main__":
    harness.main()
