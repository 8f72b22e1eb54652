/*
 * ringcast embedding API: configuration. A configuration starts at the embedded defaults;
 * keys are set by name (the same names as the config file and --key=value flags; see
 * `ringcast --help`). Single-threaded, before rc_app_create().
 */
#ifndef RINGCAST_CONFIG_H
#define RINGCAST_CONFIG_H

#include <stddef.h>

struct rc_config;

/* A configuration holding every default; NULL on allocation failure. */
struct rc_config *rc_config_new(void);

/* Sets key to value (text, as in a config file). Returns 0 or -EINVAL with err set. */
int rc_config_set_key(struct rc_config *cfg, const char *key, const char *value, char *err,
		      size_t err_len);

/* Sets node_id to "hostname-pid-random" if it is empty (rc_app_create does it too), so what
 * is printed is what runs. 0 or -errno. */
int rc_config_default_node_id(struct rc_config *cfg);

/* Frees a configuration from rc_config_new(). */
void rc_config_delete(struct rc_config *cfg);

#endif
