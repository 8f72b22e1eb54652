/*
 * A tiny chat server on ringcast's embedding API: every WebSocket client of /chat joins the
 * topic "room" when it connects, and every text message a client sends is published to
 * "room" as a JSON string, so each member (the sender included) receives
 * {"op":"msg","topic":"room","seq":N,"data":"<text>"}. Callbacks run on shard threads.
 *
 * usage: chat PORT      (SIGINT/SIGTERM drain and exit 0)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringcast/ringcast.h>

#define ROOM "room"

/* Writes text as a JSON string into out (room for 6 bytes per input byte + 3). */
static size_t json_string(char *out, const unsigned char *text, size_t len)
{
	size_t n = 0;
	out[n++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '"' || text[i] == '\\') {
			out[n++] = '\\';
			out[n++] = (char)text[i];
		} else if (text[i] < 0x20) {
			n += (size_t)sprintf(out + n, "\\u%04x", text[i]);
		} else {
			out[n++] = (char)text[i]; /* UTF-8 was validated by the runtime */
		}
	}
	out[n++] = '"';
	out[n] = '\0';
	return n;
}

static void on_open(struct rc_conn *c, void *ctx)
{
	if (rc_conn_subscribe(c, ROOM, strlen(ROOM)) != 0)
		rc_conn_close(c, 1011, "cannot join the room");
}

static void on_message(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx)
{
	struct rc_app *app = ctx;
	if (binary)
		return; /* chat is text */
	char *json = malloc(len * 6 + 3);
	if (!json) {
		rc_conn_close(c, 1011, "out of memory");
		return;
	}
	size_t n = json_string(json, data, len);
	if (rc_publish(app, ROOM, strlen(ROOM), json, n, NULL) != 0)
		rc_conn_close(c, 1013, "try again later");
	free(json);
}

int main(int argc, char **argv)
{
	char err[256] = "";
	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	struct rc_config *cfg = rc_config_new();
	if (!cfg || rc_config_set_key(cfg, "port", argv[1], err, sizeof(err)) != 0) {
		fprintf(stderr, "chat: %s\n", cfg ? err : "out of memory");
		rc_config_delete(cfg);
		return 2;
	}
	struct rc_app *app = rc_app_create(cfg, err, sizeof(err));
	rc_config_delete(cfg); /* the app keeps its own copy */
	if (!app) {
		fprintf(stderr, "chat: %s\n", err);
		return 1;
	}
	struct rc_ws_handler chat = {.on_open = on_open, .on_message = on_message, .ctx = app};
	int rc = rc_app_ws(app, "/chat", &chat);
	if (rc == 0)
		rc = rc_app_run(app, true); /* prints "ringcast: ready on ADDRESS:PORT" */
	else
		fprintf(stderr, "chat: registering /chat failed\n");
	rc_app_destroy(app);
	return rc == 0 ? 0 : 1;
}
