/*
 * Publishing from a thread that is not a shard: a market-data style ticker. The gateway
 * serves the pub/sub protocol on /ws; a plain pthread publishes {"tick":i} to topic "ticks"
 * every interval with rc_publish(), which hands each message to the topic's owner shard
 * through its inbound ring (and an eventfd doorbell). A full ring is reported (-EAGAIN) and
 * retried, never dropped.
 *
 * usage: ticker PORT [COUNT [INTERVAL_MS]]    (SIGINT/SIGTERM drain and exit 0)
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <ringcast/ringcast.h>

struct ticker {
	struct rc_app *app;
	long count;
	long interval_ms;
	atomic_bool stop; /* set once rc_app_run() returned */
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void *tick(void *arg)
{
	struct ticker *t = arg;
	char data[64];
	sleep_ms(500); /* let subscribers arrive */
	for (long i = 1; i <= t->count && !atomic_load(&t->stop); i++) {
		int n = snprintf(data, sizeof(data), "{\"tick\":%ld}", i);
		while (rc_publish(t->app, "ticks", 5, data, (size_t)n, NULL) == -EAGAIN &&
		       !atomic_load(&t->stop))
			sleep_ms(1);
		sleep_ms(t->interval_ms);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char err[256];
	struct rc_config *cfg = rc_config_new();
	if (argc < 2 || !cfg || rc_config_set_key(cfg, "port", argv[1], err, sizeof(err)) != 0 ||
	    rc_config_set_key(cfg, "address", "127.0.0.1", err, sizeof(err)) != 0) {
		fprintf(stderr, "usage: ticker PORT [COUNT [INTERVAL_MS]]\n");
		return 2;
	}
	struct ticker t = {NULL, argc > 2 ? atol(argv[2]) : 1000, argc > 3 ? atol(argv[3]) : 10,
			   false};
	t.app = rc_app_create(cfg, err, sizeof(err));
	if (!t.app || rc_app_pubsub(t.app, "/ws", "/publish") != 0) {
		fprintf(stderr, "ticker: %s\n", t.app ? "cannot register /ws" : err);
		return 1;
	}
	pthread_t thread;
	pthread_create(&thread, NULL, tick, &t);
	int rc = rc_app_run(t.app, true);
	atomic_store(&t.stop, true);
	pthread_join(thread, NULL);
	rc_app_destroy(t.app);
	rc_config_delete(cfg);
	return rc ? 1 : 0;
}
