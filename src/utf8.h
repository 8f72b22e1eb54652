/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF). The state survives across calls, so a text message can be validated fragment by
 * fragment and a split code point is accepted once its last byte arrives. It fails on the
 * first invalid byte, as RFC 6455 §8.1 wants ("fail fast"). Pure; any thread.
 */
#ifndef RC_UTF8_H
#define RC_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_UTF8_ACCEPT 0u /* at a code point boundary */
#define RC_UTF8_REJECT 1u /* an invalid byte was seen; sticky */

/*
 * Validates p[0..len) continuing from *state (start with RC_UTF8_ACCEPT). Returns false as
 * soon as an invalid byte is seen (then *state is RC_UTF8_REJECT and stays so). Returns true
 * if every byte so far can still be part of valid UTF-8; *state says whether a sequence is
 * left open. Borrows p.
 */
bool rc_utf8_feed(uint32_t *state, const uint8_t *p, size_t len);

/* True if the whole buffer is complete, valid UTF-8. */
bool rc_utf8_valid(const uint8_t *p, size_t len);

#endif
