/*
 * libFuzzer target for the server API's request bodies: src/api.c (rc_api_parse for every
 * call that is not a publish) and the envelope's broadcast parser. The first input byte picks
 * the call and the broadcast's topic limit; the rest is the body. What parses must meet api.h's
 * postconditions (topic and user lengths, close codes, history limits; every broadcast item
 * a valid topic sharing one data), what fails carries a reason that the error writer turns
 * into JSON reading back the same reason. Also linked without libFuzzer into the corpus
 * replay (tests/fuzz/replay/replay_main.c).
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "api.h"
#include "base/rc_assert.h"
#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ITEMS_LIMIT 8

static char data_buf[1 << 16];
static struct rc_envelope items[ITEMS_LIMIT];

/* The error body of reason is JSON with the same reason and status. */
static void check_error(const char *reason)
{
	char out[1024];
	size_t n = rc_api_write_error(out, sizeof(out), 400, reason);
	RC_ASSERT(n > 0);
	cJSON *j = cJSON_ParseWithLength(out, n);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	RC_ASSERT(cJSON_GetObjectItemCaseSensitive(e, "code")->valueint == 400);
	RC_ASSERT(strcmp(cJSON_GetObjectItemCaseSensitive(e, "reason")->valuestring, reason) == 0);
	cJSON_Delete(j);
}

static void check_request(enum rc_api_call call, const char *in, size_t len)
{
	struct rc_api_req req;
	const char *reason;
	if (rc_api_parse(call, in, len, &req, &reason) != 0) {
		RC_ASSERT(reason != NULL);
		check_error(reason);
		return;
	}
	RC_ASSERT(req.topic_len == strlen(req.topic) && req.user_len == strlen(req.user));
	RC_ASSERT(req.topic_len == 0 || rc_topic_name_valid(req.topic, req.topic_len));
	RC_ASSERT(req.user_len <= RC_API_USER_BYTES_LIMIT);
	RC_ASSERT(req.code == 1000 || (req.code >= 3000 && req.code <= 4999));
	RC_ASSERT(req.limit >= 1 && req.limit <= RC_API_HISTORY_LIMIT);
	RC_ASSERT(req.since <= RC_ENVELOPE_SEQ_LIMIT);
}

static void check_broadcast(const char *in, size_t len, uint32_t max)
{
	uint32_t n = 0;
	const char *reason;
	enum rc_envelope_err err = rc_envelope_parse_broadcast(in, len, items, max, &n, data_buf,
							       sizeof(data_buf), &reason);
	if (err != RC_ENVELOPE_OK) {
		RC_ASSERT(n == 0 && reason != NULL);
		check_error(reason);
		return;
	}
	RC_ASSERT(n >= 1 && n <= max);
	for (uint32_t i = 0; i < n; i++) {
		RC_ASSERT(rc_topic_name_valid(items[i].topic, items[i].topic_len));
		RC_ASSERT(items[i].data == items[0].data && items[i].data_len > 0);
		RC_ASSERT(items[i].id_len == items[0].id_len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum rc_api_call call = (enum rc_api_call)(data[0] % RC_API_CALL_COUNT);
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	if (call == RC_API_PUBLISH || call == RC_API_BROADCAST)
		check_broadcast(in, len, 1 + (data[0] >> 4) % ITEMS_LIMIT);
	else
		check_request(call, in, len);
	return 0;
}
