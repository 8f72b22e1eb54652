/*
 * The dashboard page and its stats feed (see dashboard.h). The page is plain HTML and
 * JavaScript embedded here: no build step, no external assets, so it works on an offline
 * host. The feed is a thread outside the shards that publishes through rc_publish(), like
 * any embedder's background producer.
 */
#include "app/dashboard.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char page[] =
	"<!doctype html><html><head><meta charset=utf-8><title>ringcast</title>\n"
	"<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
	"table{border-collapse:collapse}td{padding:4px 12px;border-bottom:1px solid #ddd}"
	"td.v{text-align:right;font-variant-numeric:tabular-nums}#state{color:#888}"
	"canvas{border:1px solid #ddd;margin-top:1em}</style></head><body>\n"
	"<h1>ringcast</h1><p id=state>connecting&hellip;</p>\n"
	"<table id=t></table><canvas id=c width=600 height=120></canvas>\n"
	"<p>Deliveries per second over the last 2 minutes (history replayed on load). Raw series: <a href=/metrics>/metrics</a>.</p>\n"
	"<script>\n"
	"const rows={connections_open:'connections',websockets_open:'WebSockets',"
	"subscriptions:'subscriptions',topics:'topics',messages_in:'messages in',"
	"messages_out:'messages out',publishes:'publishes',deliveries:'deliveries',"
	"slow_consumer_closes:'slow consumers closed',shards:'shards'};\n"
	"const hist=[];let last=null;\n"
	"function draw(){const c=document.getElementById('c').getContext('2d');"
	"c.clearRect(0,0,600,120);const m=Math.max(1,...hist);c.beginPath();"
	"hist.forEach((v,i)=>c.lineTo(i*5,118-110*v/m));c.stroke();"
	"c.fillText(Math.round(m)+'/s',4,12);}\n"
	"function show(s){const t=document.getElementById('t');t.innerHTML='';"
	"for(const k in rows){const r=t.insertRow();r.insertCell().textContent=rows[k];"
	"const v=r.insertCell();v.className='v';v.textContent=(s[k]??0).toLocaleString();}"
	"if(last){hist.push((s.deliveries-last.deliveries)*1000/Math.max(1,s.t-last.t));"
	"if(hist.length>120)hist.shift();draw();}last=s;}\n"
	"function connect(){const ws=new WebSocket((location.protocol=='https:'?'wss://':'ws://')"
	"+location.host+'/ws');\n"
	"ws.onopen=()=>{document.getElementById('state').textContent='live';"
	"ws.send(JSON.stringify({op:'sub',topic:'" RC_STATS_TOPIC "',since:0}));};\n"
	"ws.onmessage=(e)=>{const m=JSON.parse(e.data);if(m.op=='msg')show(m.data);};\n"
	"ws.onclose=()=>{document.getElementById('state').textContent='reconnecting';"
	"setTimeout(connect,1000+Math.random()*1000);};}\n"
	"connect();\n"
	"</script></body></html>\n";

int rc_dashboard_page(const struct rc_http_call *call, char *out, size_t *out_len,
		      const char **content_type, void *ctx)
{
	(void)ctx;
	if (strcmp(call->method, "GET") != 0 && strcmp(call->method, "HEAD") != 0) {
		*out_len = 0;
		return 405;
	}
	if (*out_len < sizeof(page))
		return 500;
	memcpy(out, page, sizeof(page) - 1);
	*out_len = sizeof(page) - 1;
	*content_type = "text/html; charset=utf-8";
	return 200;
}

struct rc_dashboard {
	struct rc_app *app;
	uint64_t interval_ms;
	atomic_bool stop;
	pthread_t thread;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *feed(void *arg)
{
	struct rc_dashboard *d = arg;
	char json[768];
	struct rc_app_stats st;
	/* Sleep in short steps so a stop is noticed quickly whatever the interval. */
	uint64_t next = now_ms() + d->interval_ms;
	while (!atomic_load(&d->stop)) {
		struct timespec step = {0, 50 * 1000000L};
		nanosleep(&step, NULL);
		if (now_ms() < next)
			continue;
		next += d->interval_ms;
		rc_app_stats(d->app, &st);
		int n = snprintf(json, sizeof(json),
				 "{\"t\":%llu,\"shards\":%d,\"connections_open\":%llu,"
				 "\"websockets_open\":%llu,\"subscriptions\":%llu,\"topics\":%llu,"
				 "\"messages_in\":%llu,\"messages_out\":%llu,\"publishes\":%llu,"
				 "\"deliveries\":%llu,\"slow_consumer_closes\":%llu}",
				 (unsigned long long)now_ms(), st.shards,
				 (unsigned long long)st.connections_open,
				 (unsigned long long)st.websockets_open,
				 (unsigned long long)st.subscriptions, (unsigned long long)st.topics,
				 (unsigned long long)st.messages_in, (unsigned long long)st.messages_out,
				 (unsigned long long)st.publishes, (unsigned long long)st.deliveries,
				 (unsigned long long)st.slow_consumer_closes);
		/* A full owner ring (-EAGAIN) just skips this sample. */
		(void)rc_publish(d->app, RC_STATS_TOPIC, strlen(RC_STATS_TOPIC), json, (size_t)n,
				 NULL);
	}
	return NULL;
}

struct rc_dashboard *rc_dashboard_start(struct rc_app *app, uint64_t interval_ms)
{
	if (!interval_ms)
		return NULL;
	struct rc_dashboard *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->app = app;
	d->interval_ms = interval_ms;
	if (pthread_create(&d->thread, NULL, feed, d) != 0) {
		free(d);
		return NULL;
	}
	return d;
}

void rc_dashboard_stop(struct rc_dashboard *d)
{
	if (!d)
		return;
	atomic_store(&d->stop, true);
	pthread_join(d->thread, NULL);
	free(d);
}
