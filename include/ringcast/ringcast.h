/* ringcast embedding API: the umbrella header. */
#ifndef RINGCAST_H
#define RINGCAST_H

#include <ringcast/app.h>
#include <ringcast/conn.h>
#include <ringcast/config.h>
#include <ringcast/pubsub.h>

#define RINGCAST_VERSION "0.1.0"

#endif
