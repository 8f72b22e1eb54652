/*
 * Files the program embeds, generated at build time by tools/embed-asset.py (see the
 * Makefile's ASSET_OBJ): the JS client library served at GET /ringcast.js. Read-only data;
 * any thread.
 */
#ifndef RC_APP_ASSETS_H
#define RC_APP_ASSETS_H

#include <stddef.h>

/* clients/js/ringcast.js: its bytes (NUL-terminated), length and quoted strong ETag. */
extern const unsigned char rc_asset_ringcast_js[];
extern const size_t rc_asset_ringcast_js_len;
extern const char rc_asset_ringcast_js_etag[];

#endif
