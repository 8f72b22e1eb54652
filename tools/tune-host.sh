#!/usr/bin/env bash
# tune-host.sh: checks, and with --apply sets, every kernel setting and resource limit a host
# running ringcast wants. kernel-tuning.md explains each item, its value and how to verify it.
#
# The recommendation table below has a twin in src/app/hostcheck.c (the gateway's start-up
# check, which must not read the source tree at run time). tests/integration/tune_host_test.py
# compiles hostcheck.c and fails if the two tables disagree for any connection count, so a
# change here must be made there too (and in kernel-tuning.md).
#
# Runs as root (--check and --apply) or as any user (--check). Never lowers a host's setting:
# a value already better than recommended is OK and is kept as it is.
set -u -o pipefail
export LC_ALL=C

readonly DEFAULT_CONNECTIONS=100000
readonly CONNECTIONS_LIMIT=1000000000
readonly UNLIMITED=9223372036854775807

usage()
{
	cat <<'EOF'
Usage: tools/tune-host.sh [--check | --apply] [--connections N] [--json] [options]

Checks (default) or applies the sysctls and resource limits a ringcast host wants.

Modes:
  --check            one line per item: name, current value, recommended value, status
                     (OK, LOW, HIGH, SKIP) and why. Exit 0 only if every item is OK or SKIP
                     (SKIP: not present on this kernel or namespace). Needs no privileges.
  --apply            as root: write every item that is not OK (sysctl -w), persist all of
                     them in /etc/sysctl.d/90-ringcast.conf, write the RLIMIT_* lines to
                     /etc/security/limits.d/ringcast.conf and print the systemd Limit*= lines.
                     Idempotent. Never lowers a limit or raises a ceiling. Exit 0 if every
                     write succeeded, 1 if one failed, 2 on bad usage.

Options:
  --connections N    size recommendations for N concurrent connections (default 100000):
                     file limits >= N + 65536, tcp_mem ~ one page per connection, ...
  --json             machine-readable output (one JSON object on stdout)
  --user NAME        service user for limits.d (default: ringcast)
  --netns-only       only the per-network-namespace net.* keys (a container's own
                     namespace, or a test inside `unshare -n`)
  --proc-sys DIR     read and write sysctls under DIR instead of /proc/sys (tests, chroots)
  --etc DIR          write sysctl.d and limits.d files under DIR instead of /etc
  -h, --help         this text

Statuses: LOW = below a value that should be at least the recommendation; HIGH = above a
value that should be at most the recommendation (e.g. tcp_fin_timeout). Multi-value
sysctls are compared field by field. In --json, field values are integers ("unlimited" for
RLIMIT_INFINITY; kernel.osrelease is encoded as major*1000+minor).

Run it before starting ringcast; the gateway logs the same misses at start-up.
EOF
}

# ---- the recommendation table ------------------------------------------------------------
# name|scope|kind|fields|why
#   scope  netns (per network namespace), global (whole host) or process (rlimit)
#   kind   sysctl, rlimit or version
#   fields one spec per value, space-separated: DIR:MUL:DIV:ADD, meaning the recommended
#          value is N*MUL/DIV + ADD for N connections (ADD "U" = unlimited). DIR is ge (value
#          should be at least that), le (at most) or eq (exactly).
TABLE=(
	"kernel.osrelease|global|version|ge:0:1:6001|io_uring features ringcast needs (multishot recv, send_zc, DEFER_TASKRUN) arrive by 6.1"
	"kernel.io_uring_disabled|global|sysctl|le:0:1:0|1 or 2 makes io_uring_setup() fail with EPERM for the gateway"
	"fs.file-max|global|sysctl|ge:2:1:65536|files on the whole host; every socket is one (direct descriptors too), twice N covers a drain/restart overlap"
	"fs.nr_open|global|sysctl|ge:1:1:65536|ceiling of RLIMIT_NOFILE; a LimitNOFILE= above it makes the service fail to start"
	"RLIMIT_NOFILE|process|rlimit|ge:1:1:65536 ge:1:1:65536|soft and hard open-file limit of this process: caps each ring's fixed-file table and the fd table"
	"RLIMIT_MEMLOCK|process|rlimit|ge:0:1:U ge:0:1:U|soft and hard locked-memory limit: registered buffers (the frame arena, once per ring) are charged to it"
	"vm.max_map_count|global|sysctl|ge:0:1:262144|memory mappings per process: jemalloc extents and ring mmaps of a heap of many GiB"
	"net.core.somaxconn|netns|sysctl|ge:0:1:65535|caps every listen() backlog; a reconnect storm overflows a short accept queue"
	"net.ipv4.tcp_max_syn_backlog|netns|sysctl|ge:0:1:65535|half-open connections per listener during a reconnect storm"
	"net.core.netdev_max_backlog|global|sysctl|ge:0:1:16384|packets queued per CPU ahead of the stack; absorbs SYN and ACK bursts"
	"net.ipv4.ip_local_port_range|netns|sysctl|le:0:1:10000 ge:0:1:65535|ephemeral ports for outgoing connections (Redis link, load generators) per destination"
	"net.ipv4.tcp_mem|global|sysctl|ge:1:2:0 ge:1:1:0 ge:2:1:0|pages all TCP buffers may use (min pressure max); one page per connection with data queued"
	"net.ipv4.tcp_rmem|netns|sysctl|ge:0:1:4096 le:0:1:16384 ge:0:1:4194304|receive buffer min default max per socket; a small default bounds what each client can park in the kernel"
	"net.ipv4.tcp_wmem|netns|sysctl|ge:0:1:4096 le:0:1:16384 ge:0:1:4194304|send buffer min default max per socket; small default, autotuning grows it for busy sockets"
	"net.core.rmem_max|global|sysctl|ge:0:1:16777216|ceiling of SO_RCVBUF for sockets that set it (backend and Redis links)"
	"net.core.wmem_max|global|sysctl|ge:0:1:16777216|ceiling of SO_SNDBUF for sockets that set it (backend and Redis links)"
	"net.ipv4.tcp_fin_timeout|netns|sysctl|le:0:1:15|seconds an orphaned FIN-WAIT-2 socket lingers after ringcast closes a connection"
	"net.ipv4.tcp_tw_reuse|netns|sysctl|eq:0:1:1|1 lets outgoing connections reuse TIME-WAIT ports safely (2 = loopback only)"
	"net.ipv4.tcp_slow_start_after_idle|netns|sysctl|le:0:1:0|0 keeps the congestion window over idle periods, so a broadcast after silence is not throttled"
	"net.netfilter.nf_conntrack_max|global|sysctl|ge:2:1:65536|every tracked connection holds an entry; a full table drops new SYNs (checked only if nf_conntrack is loaded)"
)

MODE=check JSON=0 CONNECTIONS=$DEFAULT_CONNECTIONS SERVICE_USER=ringcast NETNS_ONLY=0
PROC_SYS=/proc/sys ETC=/etc

die_usage()
{
	echo "tune-host.sh: $*" >&2
	echo "Try 'tools/tune-host.sh --help'." >&2
	exit 2
}

parse_args()
{
	while [ $# -gt 0 ]; do
		case "$1" in
		--check) MODE=check ;;
		--apply) MODE=apply ;;
		--json) JSON=1 ;;
		--netns-only) NETNS_ONLY=1 ;;
		--connections | --user | --proc-sys | --etc)
			[ $# -ge 2 ] || die_usage "$1 needs a value"
			case "$1" in
			--connections) CONNECTIONS=$2 ;;
			--user) SERVICE_USER=$2 ;;
			--proc-sys) PROC_SYS=${2%/} ;;
			--etc) ETC=${2%/} ;;
			esac
			shift
			;;
		--connections=*) CONNECTIONS=${1#*=} ;;
		-h | --help)
			usage
			exit 0
			;;
		*) die_usage "unknown argument '$1'" ;;
		esac
		shift
	done
	[[ "$CONNECTIONS" =~ ^[0-9]{1,10}$ ]] || die_usage "--connections needs a positive integer"
	CONNECTIONS=$((10#$CONNECTIONS))
	if [ "$CONNECTIONS" -lt 1 ] || [ "$CONNECTIONS" -gt "$CONNECTIONS_LIMIT" ]; then
		die_usage "--connections must be between 1 and $CONNECTIONS_LIMIT"
	fi
	[[ "$SERVICE_USER" =~ ^[a-z_][a-z0-9_-]*$ ]] || die_usage "--user: not a user name"
	[ -d "$PROC_SYS" ] || die_usage "--proc-sys: $PROC_SYS is not a directory"
}

# ---- reading the host ---------------------------------------------------------------------

# Prints the space-separated current value of one item, or nothing if it is absent.
read_item()
{
	local name=$1 kind=$2 f soft hard
	local -a vals
	case "$kind" in
	sysctl)
		f="$PROC_SYS/${name//.//}"
		[ -r "$f" ] || return 0
		read -r -a vals <"$f" 2>/dev/null || [ ${#vals[@]} -gt 0 ] || return 0
		echo "${vals[*]}"
		;;
	version)
		f="$PROC_SYS/kernel/osrelease"
		[ -r "$f" ] && cat "$f" 2>/dev/null
		;;
	rlimit)
		case "$name" in
		RLIMIT_NOFILE)
			soft=$(ulimit -Sn) hard=$(ulimit -Hn)
			;;
		RLIMIT_MEMLOCK)
			# ulimit reports KiB; the table and getrlimit(2) use bytes.
			soft=$(ulimit -Sl) hard=$(ulimit -Hl)
			[ "$soft" = unlimited ] || soft=$((soft * 1024))
			[ "$hard" = unlimited ] || hard=$((hard * 1024))
			;;
		esac
		echo "$soft $hard"
		;;
	esac
}

# Converts one displayed value into the integer the comparison uses.
to_int()
{
	local v=$1 kind=$2
	if [ "$kind" = version ]; then
		if [[ "$v" =~ ^([0-9]+)\.([0-9]+) ]]; then
			echo $((10#${BASH_REMATCH[1]} * 1000 + 10#${BASH_REMATCH[2]}))
		else
			echo 0
		fi
	elif [ "$v" = unlimited ]; then
		echo "$UNLIMITED"
	elif [[ "$v" =~ ^[0-9]+$ ]]; then
		echo "$v"
	else
		echo 0
	fi
}

show_int()
{
	local v=$1 kind=$2
	if [ "$kind" = version ]; then
		echo "$((v / 1000)).$((v % 1000))"
	elif [ "$v" = "$UNLIMITED" ]; then
		echo unlimited
	else
		echo "$v"
	fi
}

# recommended DIR:MUL:DIV:ADD -> integer for $CONNECTIONS
recommended()
{
	local spec=$1 dir mul div add
	IFS=: read -r dir mul div add <<<"$spec"
	if [ "$add" = U ]; then
		echo "$UNLIMITED"
	else
		echo $((CONNECTIONS * mul / div + add))
	fi
}

# ---- evaluation ---------------------------------------------------------------------------
# For item i, eval_item fills these globals:
#   I_NAME I_SCOPE I_KIND I_WHY I_STATUS I_CUR (display) I_REC (display)
#   I_DIRS[] I_CURS[] I_RECS[] I_FSTAT[] I_TARGETS[] (per field)
eval_item()
{
	local line=$1 specs cur k spec dir c r st
	local -a spec_arr cur_arr
	IFS='|' read -r I_NAME I_SCOPE I_KIND specs I_WHY <<<"$line"
	read -r -a spec_arr <<<"$specs"
	I_DIRS=() I_CURS=() I_RECS=() I_FSTAT=() I_TARGETS=()
	I_REC=""
	for spec in "${spec_arr[@]}"; do
		dir=${spec%%:*}
		r=$(recommended "$spec")
		I_DIRS+=("$dir")
		I_RECS+=("$r")
		case "$dir" in
		ge) I_REC+=">=" ;;
		le) I_REC+="<=" ;;
		eq) I_REC+="=" ;;
		esac
		I_REC+="$(show_int "$r" "$I_KIND") "
	done
	I_REC=${I_REC% }
	cur=$(read_item "$I_NAME" "$I_KIND")
	I_CUR=$cur
	if [ -z "$cur" ]; then
		I_STATUS=SKIP
		return
	fi
	if [ "$I_KIND" = version ]; then
		cur_arr=("$cur")
	else
		read -r -a cur_arr <<<"$cur"
	fi
	if [ ${#cur_arr[@]} -ne ${#spec_arr[@]} ]; then
		I_STATUS=SKIP
		return
	fi
	I_STATUS=OK
	for k in "${!spec_arr[@]}"; do
		c=$(to_int "${cur_arr[$k]}" "$I_KIND")
		r=${I_RECS[$k]}
		dir=${I_DIRS[$k]}
		st=OK
		case "$dir" in
		ge)
			[ "$c" -ge "$r" ] || st=LOW
			I_TARGETS+=("$((c > r ? c : r))")
			;;
		le)
			[ "$c" -le "$r" ] || st=HIGH
			I_TARGETS+=("$((c < r ? c : r))")
			;;
		eq)
			[ "$c" -lt "$r" ] && st=LOW
			[ "$c" -gt "$r" ] && st=HIGH
			I_TARGETS+=("$r")
			;;
		esac
		I_CURS+=("$c")
		I_FSTAT+=("$st")
		if [ "$st" = LOW ]; then
			I_STATUS=LOW
		elif [ "$st" = HIGH ] && [ "$I_STATUS" = OK ]; then
			I_STATUS=HIGH
		fi
	done
}

in_scope()
{
	[ "$NETNS_ONLY" = 0 ] || [ "$1" = netns ]
}

json_str()
{
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\t'/ }
	printf '"%s"' "$s"
}

json_num()
{
	if [ "$1" = "$UNLIMITED" ]; then
		printf '"unlimited"'
	else
		printf '%s' "$1"
	fi
}

# Prints the current item as one JSON object.
item_json()
{
	local k why=$I_WHY
	[ "$I_STATUS" = SKIP ] && why="not present on this kernel or in this namespace; $I_WHY"
	printf '{"name": %s, "scope": %s, "kind": %s, ' "$(json_str "$I_NAME")" \
		"$(json_str "$I_SCOPE")" "$(json_str "$I_KIND")"
	if [ -n "$I_CUR" ]; then
		printf '"current": %s, ' "$(json_str "$I_CUR")"
	else
		printf '"current": null, '
	fi
	printf '"recommended": %s, "status": %s, "why": %s, "fields": [' \
		"$(json_str "$I_REC")" "$(json_str "$I_STATUS")" "$(json_str "$why")"
	for k in "${!I_DIRS[@]}"; do
		[ "$k" -gt 0 ] && printf ', '
		printf '{"direction": "%s", "recommended": %s' "${I_DIRS[$k]}" \
			"$(json_num "${I_RECS[$k]}")"
		if [ "$I_STATUS" != SKIP ]; then
			printf ', "current": %s, "status": "%s"' "$(json_num "${I_CURS[$k]}")" \
				"${I_FSTAT[$k]}"
		fi
		printf '}'
	done
	printf ']}'
}

item_text()
{
	local why=$I_WHY cur=${I_CUR:--}
	[ "$I_STATUS" = SKIP ] && why="not present here; $I_WHY"
	printf '%-35s %-24s %-28s %-6s %s\n' "$I_NAME" "$cur" "$I_REC" "$I_STATUS" "$why"
}

# Evaluates every in-scope item; prints the table (text) or the items array (JSON) and sets
# MISSES to the number of items that are LOW or HIGH.
report()
{
	local line first=1
	MISSES=0 MISS_NAMES=""
	if [ "$JSON" = 0 ]; then
		printf '%-35s %-24s %-28s %-6s %s\n' ITEM CURRENT RECOMMENDED STATUS WHY
	else
		printf '"items": ['
	fi
	for line in "${TABLE[@]}"; do
		IFS='|' read -r _ I_SCOPE _ <<<"$line"
		in_scope "$I_SCOPE" || continue
		eval_item "$line"
		case "$I_STATUS" in
		LOW | HIGH)
			MISSES=$((MISSES + 1))
			MISS_NAMES+=" $I_NAME"
			;;
		esac
		if [ "$JSON" = 0 ]; then
			item_text
		else
			[ "$first" = 1 ] || printf ', '
			first=0
			item_json
		fi
	done
	[ "$JSON" = 0 ] || printf ']'
}

# ---- apply --------------------------------------------------------------------------------
CHANGES_JSON="" CHANGE_FAILURES=0 FILES_JSON=""

note_change()
{
	local name=$1 from=$2 to=$3 result=$4
	[ -z "$CHANGES_JSON" ] || CHANGES_JSON+=", "
	CHANGES_JSON+="{\"name\": $(json_str "$name"), \"from\": $(json_str "$from"), "
	CHANGES_JSON+="\"to\": $(json_str "$to"), \"result\": $(json_str "$result")}"
	[ "$JSON" = 1 ] || printf '  %-35s %s -> %s: %s\n' "$name" "$from" "$to" "$result"
}

note_file()
{
	local path=$1 result=$2
	[ -z "$FILES_JSON" ] || FILES_JSON+=", "
	FILES_JSON+="{\"path\": $(json_str "$path"), \"result\": $(json_str "$result")}"
	[ "$JSON" = 1 ] || printf '  %s: %s\n' "$path" "$result"
}

write_sysctl()
{
	local name=$1 value=$2
	if [ "$PROC_SYS" = /proc/sys ] && command -v sysctl >/dev/null 2>&1; then
		sysctl -q -w "$name=$value" >/dev/null 2>&1
	else
		printf '%s\n' "$value" >"$PROC_SYS/${name//.//}" 2>/dev/null
	fi
}

# Writes content ($2) to path ($1) atomically, only if it differs.
install_file()
{
	local path=$1 content=$2 tmp
	if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
		note_file "$path" unchanged
		return 0
	fi
	if ! mkdir -p "$(dirname "$path")" 2>/dev/null; then
		note_file "$path" "failed: cannot create $(dirname "$path")"
		CHANGE_FAILURES=$((CHANGE_FAILURES + 1))
		return 1
	fi
	tmp="$path.tmp.$$"
	if printf '%s\n' "$content" >"$tmp" 2>/dev/null && chmod 0644 "$tmp" &&
		mv -f "$tmp" "$path"; then
		note_file "$path" written
		return 0
	fi
	rm -f "$tmp"
	note_file "$path" failed
	CHANGE_FAILURES=$((CHANGE_FAILURES + 1))
	return 1
}

apply_all()
{
	local line target after conf name nofile
	conf="# ringcast host settings, written by tools/tune-host.sh --apply"
	conf+=" --connections $CONNECTIONS. See kernel-tuning.md."
	conf+=$'\n'"# Values already better than ringcast's recommendation are kept as they were."
	[ "$JSON" = 1 ] || echo "changes:"
	for line in "${TABLE[@]}"; do
		IFS='|' read -r _ I_SCOPE _ <<<"$line"
		in_scope "$I_SCOPE" || continue
		eval_item "$line"
		if [ "$I_KIND" != sysctl ] || [ "$I_STATUS" = SKIP ]; then
			continue
		fi
		target="${I_TARGETS[*]}"
		name=$I_NAME
		# A key that may be absent at boot (module not loaded yet) must not fail the boot.
		[ "$I_NAME" = net.netfilter.nf_conntrack_max ] && name="-$I_NAME"
		conf+=$'\n'"$name = $target"
		[ "$I_STATUS" = OK ] && continue
		if write_sysctl "$I_NAME" "$target" && after=$(read_item "$I_NAME" sysctl) &&
			[ "$after" = "$target" ]; then
			note_change "$I_NAME" "$I_CUR" "$target" ok
		else
			note_change "$I_NAME" "$I_CUR" "$target" "failed (now: ${after:-unreadable})"
			CHANGE_FAILURES=$((CHANGE_FAILURES + 1))
		fi
	done
	if [ -z "$CHANGES_JSON" ] && [ "$JSON" = 0 ]; then
		echo "  none: every sysctl already meets the recommendation"
	fi
	[ "$JSON" = 1 ] || echo "files:"
	install_file "$ETC/sysctl.d/90-ringcast.conf" "$conf"
	[ "$NETNS_ONLY" = 0 ] || return 0

	# Limits take effect at the next login (PAM) or service start, never in this shell.
	eval_item "$(printf '%s\n' "${TABLE[@]}" | grep '^RLIMIT_NOFILE|')"
	nofile=${I_RECS[1]}
	[ "$I_STATUS" = SKIP ] || nofile=$((I_TARGETS[1] > nofile ? I_TARGETS[1] : nofile))
	LIMIT_NOFILE=$nofile
	install_file "$ETC/security/limits.d/ringcast.conf" \
		"# ringcast limits for PAM sessions of user $SERVICE_USER, written by tools/tune-host.sh.
# systemd services ignore this file: use LimitNOFILE=$nofile and LimitMEMLOCK=infinity.
$SERVICE_USER soft nofile $nofile
$SERVICE_USER hard nofile $nofile
$SERVICE_USER soft memlock unlimited
$SERVICE_USER hard memlock unlimited"
}

# ---- main ---------------------------------------------------------------------------------
main()
{
	local kernel
	parse_args "$@"
	kernel=$(read_item kernel.osrelease version)
	if [ "$MODE" = apply ] && [ "$(id -u)" != 0 ] && [ "$PROC_SYS" = /proc/sys ]; then
		echo "tune-host.sh: --apply needs root (run: sudo $0 --apply" \
			"--connections $CONNECTIONS); --check works as any user" >&2
		exit 2
	fi
	if [ "$JSON" = 1 ]; then
		printf '{"mode": "%s", "connections": %s, "kernel": %s, "netns_only": %s, ' \
			"$MODE" "$CONNECTIONS" "$(json_str "${kernel:-unknown}")" \
			"$([ "$NETNS_ONLY" = 1 ] && echo true || echo false)"
	else
		echo "ringcast host check: $CONNECTIONS connections, kernel ${kernel:-unknown}," \
			"uid $(id -u)$([ "$NETNS_ONLY" = 1 ] && echo ', per-netns keys only')"
	fi
	if [ "$MODE" = apply ]; then
		LIMIT_NOFILE=""
		if [ "$JSON" = 1 ]; then
			apply_all >/dev/null
			printf '"changes": [%s], "files": [%s], "failures": %s, ' "$CHANGES_JSON" \
				"$FILES_JSON" "$CHANGE_FAILURES"
			[ -z "$LIMIT_NOFILE" ] ||
				printf '"systemd": ["LimitNOFILE=%s", "LimitMEMLOCK=infinity"], ' \
					"$LIMIT_NOFILE"
		else
			apply_all
			if [ -n "$LIMIT_NOFILE" ]; then
				echo "systemd: put these in the [Service] section of ringcast.service:"
				echo "  LimitNOFILE=$LIMIT_NOFILE"
				echo "  LimitMEMLOCK=infinity"
			fi
			echo "after:"
		fi
	fi
	report
	if [ "$JSON" = 1 ]; then
		printf ', "misses": %s, "ready": %s}\n' "$MISSES" \
			"$([ "$MISSES" = 0 ] && echo true || echo false)"
	elif [ "$MISSES" = 0 ] && [ "$NETNS_ONLY" = 1 ]; then
		echo "the per-netns keys are ready for $CONNECTIONS connections (fs.*, vm.* and limits not checked)"
	elif [ "$MISSES" = 0 ]; then
		echo "host is ready for $CONNECTIONS connections"
	elif [ "$MODE" = check ]; then
		echo "$MISSES item(s) miss the recommendation for $CONNECTIONS connections:$MISS_NAMES"
		echo "run: sudo tools/tune-host.sh --apply --connections $CONNECTIONS (see kernel-tuning.md)"
	else
		echo "$MISSES item(s) still miss the recommendation:$MISS_NAMES"
		echo "(RLIMIT_* change at the next login or service start, with the limits.d file or the"
		echo " systemd lines above; kernel.osrelease needs a newer kernel)"
	fi
	if [ "$MODE" = apply ]; then
		[ "$CHANGE_FAILURES" = 0 ] || exit 1
		exit 0
	fi
	[ "$MISSES" = 0 ] || exit 1
	exit 0
}

main "$@"
