/*
 * Charging the process's memory budget (src/budget.h) from the runtime: every allocation a
 * client can make the gateway hold is charged here with its category, and released with the
 * same size when freed. A shard thread charges its own counters (no shared atomics); any
 * other thread (an embedder publishing, shutdown) charges the shared slot. Memory may be
 * released on another thread than the one that charged it: the sum stays exact.
 * Any thread; the app borrowed.
 */
#ifndef RC_MEM_H
#define RC_MEM_H

#include "runtime.h"

static inline void rc_mem_charge(struct rc_app *app, enum rc_budget_category cat, size_t n)
{
	struct rc_shard *s = rc_current_shard;
	if (s && s->app == app)
		rc_budget_charge(&app->budget, (uint32_t)s->index, cat, n);
	else
		rc_budget_charge_shared(&app->budget, cat, n);
}

static inline void rc_mem_release(struct rc_app *app, enum rc_budget_category cat, size_t n)
{
	struct rc_shard *s = rc_current_shard;
	if (s && s->app == app)
		rc_budget_release(&app->budget, (uint32_t)s->index, cat, n);
	else
		rc_budget_release_shared(&app->budget, cat, n);
}

/* The app whose books this thread charges, for code that knows no app (frames): its shard's
 * on a shard thread (runtime.h), else rc_current_app, which must be set. Inlined into
 * rc_mem_charge/rc_mem_release, the shard test folds into theirs: one TLS read, no compare. */
static inline struct rc_app *rc_mem_app_here(void)
{
	struct rc_shard *s = rc_current_shard;
	struct rc_app *app = s ? s->app : rc_current_app;
	RC_ASSERT(app != NULL);
	return app;
}

/*
 * Charges growth a client asks for (a partial frame, a body, a queue) only if the budget
 * holds it: true and charged, or false (nothing charged, refusal counted) and the caller
 * refuses the request. Off shard threads it always charges (the shared slot has no refusal).
 */
static inline bool rc_mem_try_charge(struct rc_app *app, enum rc_budget_category cat, size_t n)
{
	struct rc_shard *s = rc_current_shard;
	if (s && s->app == app)
		return rc_budget_try_charge(&app->budget, (uint32_t)s->index, cat, n);
	rc_budget_charge_shared(&app->budget, cat, n);
	return true;
}

#endif
