/* Names of the close reasons (the metric labels). Pure; any thread. */
#include "stats.h"

const char *rc_close_reason_name(enum rc_close_reason why)
{
	static const char *names[] = {
#define RC_X(name, help) #name,
		RC_CLOSE_REASONS(RC_X)
#undef RC_X
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) == RC_CLOSE_REASON_COUNT,
		       "one name per close reason");
	return (unsigned)why < RC_CLOSE_REASON_COUNT ? names[why] : "unknown";
}
