/* Names of the close reasons and eviction causes (the metric labels). Pure; any thread. */
#include "stats.h"

#define NAMES_OF(LIST) {LIST(NAME_OF)}
#define NAME_OF(name, help) #name,

static const char *const close_names[] = NAMES_OF(RC_CLOSE_REASONS);
static const char *const evict_names[] = NAMES_OF(RC_EVICT_CAUSES);

_Static_assert(sizeof(close_names) / sizeof(close_names[0]) == RC_CLOSE_REASON_COUNT,
	       "one name per close reason");
_Static_assert(sizeof(evict_names) / sizeof(evict_names[0]) == RC_EVICT_CAUSE_COUNT,
	       "one name per eviction cause");

const char *rc_close_reason_name(enum rc_close_reason why)
{
	return (unsigned)why < RC_CLOSE_REASON_COUNT ? close_names[why] : "unknown";
}

const char *rc_evict_cause_name(enum rc_evict_cause cause)
{
	return (unsigned)cause < RC_EVICT_CAUSE_COUNT ? evict_names[cause] : "unknown";
}
