#!/usr/bin/env bash
# cratebouncer's HTTP side vs nginx as a keep-alive reverse proxy, in one invocation:
#   - a fast static HTTPS upstream: a second nginx (1 worker) that answers every request, POST
#     included, with a small CrateDB-shaped JSON result, with a certificate for localhost signed
#     by a CA made here with openssl. It answers 401 unless the request carries the injected
#     Authorization header, so both proxies are checked to inject it;
#   - cratebouncer ([http] upstream https://localhost:PORT, pool_size 16, verify-full against
#     that CA, user/password injected) and nginx (Debian's, 1 worker, proxy_pass to an upstream
#     block with keepalive 16, HTTP/1.1, proxy_ssl_verify on against the CA, the same
#     Authorization header set), both plaintext HTTP on 127.0.0.1;
#   - wrk -t$THREADS -c$CLIENTS -d$DURATION --latency, POST /_sql {"stmt":"select 1"} with
#     keep-alive, through each proxy alternately for $ROUNDS rounds (odd rounds cratebouncer
#     first): req/s, p99 latency, each proxy's CPU time per request, the upstream connections
#     each run opened, medians and the ratio of the median req/s.
#
#   bash bench/http-wrk.sh
#   DURATION=30 ROUNDS=5 bash bench/http-wrk.sh
#
# Figures are reported, never asserted: the exit status is non-zero only when something failed
# to run (a daemon did not start or died, a check request failed, a wrk run failed or saw
# errors or non-2xx responses). Helpers (ports, stopping, medians) come from bench/lib.sh.
# See bench/README.md.
set -euo pipefail

BENCH_NAME=http-wrk
CLIENTS=${CLIENTS:-50}              # wrk -c
POOL_SIZE=${POOL_SIZE:-16}          # [http] pool_size of cratebouncer
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WARMUP=${WARMUP:-2}                 # seconds of unreported wrk through each proxy first
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-$POOL_SIZE}   # keepalive of nginx's upstream block
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-/usr/bin/wrk}
OPENSSL=${OPENSSL:-/usr/bin/openssl}
CURL=${CURL:-/usr/bin/curl}

HTTP_USER=crate
HTTP_PASSWORD=secret
RESULT='{"cols":["x"],"col_types":[9],"rows":[[1]],"rowcount":1,"duration":0.1}'
BODY='{"stmt":"select 1"}'

NGX_PID=""      # the proxying nginx's master
UP_PID=""       # the upstream nginx's master
WRK_PID=""
declare -a NGX_WORKERS=() UP_WORKERS=()

http_cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	stop_pid "$WRK_PID" wrk
	stop_pid "$CB_PID" cratebouncer
	stop_pid "$NGX_PID" nginx
	stop_pid "$UP_PID" "upstream nginx"
	wait 2>/dev/null || true
	# workers left behind by a master that had to be killed
	for pid in "${NGX_WORKERS[@]}" "${UP_WORKERS[@]}"; do
		[[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^nginx: worker' &&
			stop_pid "$pid" "nginx worker"
	done
	if [[ -z $WORK ]]; then
		:
	elif [[ $KEEP == 1 || $rc -ne 0 ]]; then   # kept after a failure, for its logs
		echo "# work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}

http_init() {
	local exe
	for exe in "$PY" "$CRATEBOUNCER" "$NGINX" "$WRK" "$OPENSSL" "$CURL"; do
		[[ -x $exe ]] || die "$exe not found or not executable (cratebouncer: cd $ROOT && make src/cratebouncer;" \
			"the others: apt-get install nginx wrk openssl curl)"
	done
	[[ $DURATION =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ &&
		$POOL_SIZE =~ ^[1-9][0-9]*$ && $NGINX_KEEPALIVE =~ ^[1-9][0-9]*$ ]] ||
		die "DURATION, ROUNDS, POOL_SIZE and NGINX_KEEPALIVE must be positive integers, WARMUP an integer"
	WORK=$(mktemp -d /tmp/cb-bench-http.XXXXXX)
	chmod 755 "$WORK"   # nginx's workers run as nobody when we are root
	trap http_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# The binary under test may be rebuilt while this runs: run a copy, the same one throughout.
	CB_BIN=$WORK/cratebouncer
	cp "$CRATEBOUNCER" "$CB_BIN"
}

# ---------------------------------------------------------------------------------------------
# A CA and a certificate for localhost.

make_certs() {
	local d=$WORK/tls
	mkdir -p "$d"
	{
		"$OPENSSL" req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cratebouncer bench CA" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			-keyout "$d/ca.key" -out "$d/ca.crt" &&
		"$OPENSSL" req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
			-keyout "$d/server.key" -out "$d/server.csr" &&
		printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$d/server.ext" &&
		"$OPENSSL" x509 -req -days 2 -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
			-CAcreateserial -extfile "$d/server.ext" -out "$d/server.crt"
	} >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "making the test CA and certificate failed"; }
	CA=$d/ca.crt
}

# ---------------------------------------------------------------------------------------------
# The two nginx instances and cratebouncer. Sets *_PORT.

nginx_common() {  # nginx_common DIR: the main-context lines both nginx configs share
	local dir=$1
	mkdir -p "$dir/tmp"
	echo "worker_processes 1;"
	[[ $(id -u) -ne 0 ]] || echo "user nobody nogroup;"
	cat <<EOF
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_http_common() {  # nginx_http_common DIR: the http-context lines both share
	local dir=$1
	cat <<EOF
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # wrk's and the proxies' connections stay open for the whole run
    keepalive_requests 1000000;
    keepalive_timeout 300s;
EOF
}

write_configs_http() {
	local d
	UP_PORT=$(free_port)
	STATUS_PORT=$(free_port)
	CB_PORT=$(free_port)
	CB_PG_PORT=$(free_port)
	NGX_PORT=$(free_port)
	[[ $(printf '%s\n' "$UP_PORT" "$STATUS_PORT" "$CB_PORT" "$CB_PG_PORT" "$NGX_PORT" | sort -u | wc -l) == 5 ]] ||
		write_configs_http   # a port came twice: again
	AUTH="Basic $(printf '%s:%s' "$HTTP_USER" "$HTTP_PASSWORD" | base64 -w 0)"

	# The upstream: every request to the TLS server, whatever its method, gets the JSON (or 401
	# without the injected credentials). stub_status on a plaintext port counts its connections.
	d=$WORK/upstream
	mkdir -p "$d"
	{
		nginx_common "$d"
		echo "http {"
		nginx_http_common "$d"
		cat <<EOF
    server {
        listen 127.0.0.1:$UP_PORT ssl;
        server_name localhost;
        ssl_certificate $WORK/tls/server.crt;
        ssl_certificate_key $WORK/tls/server.key;
        ssl_session_cache shared:upstream:1m;
        location / {
            default_type application/json;
            if (\$http_authorization != "$AUTH") {
                return 401 '{"error":{"message":"missing credentials","code":4011}}';
            }
            return 200 '$RESULT';
        }
    }
    server {
        listen 127.0.0.1:$STATUS_PORT;
        location / { stub_status; }
    }
}
EOF
	} >"$d/nginx.conf"

	# The proxying nginx: the keep-alive upstream block and verified TLS.
	d=$WORK/nginx
	mkdir -p "$d"
	{
		nginx_common "$d"
		echo "http {"
		nginx_http_common "$d"
		cat <<EOF
    upstream crate {
        server 127.0.0.1:$UP_PORT;
        keepalive $NGINX_KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass https://crate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost:$UP_PORT;
            proxy_set_header Authorization "$AUTH";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $CA;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
	} >"$d/nginx.conf"
	chmod 600 "$d/nginx.conf"   # it holds the credentials

	# cratebouncer: no databases, only the HTTP side.
	d=$WORK/cb
	mkdir -p "$d"
	cat >"$d/cratebouncer.ini" <<EOF
[databases]

[cratebouncer]
listen_addr = 127.0.0.1
listen_port = $CB_PG_PORT
unix_socket_dir =
auth_type = trust
logfile = $d/cratebouncer.log
pidfile = $d/cratebouncer.pid

[http]
listen_addr = 127.0.0.1
listen_port = $CB_PORT
upstream = https://localhost:$UP_PORT
user = $HTTP_USER
password = $HTTP_PASSWORD
pool_size = $POOL_SIZE
tls_sslmode = verify-full
tls_ca_file = $CA
EOF
	chmod 600 "$d/cratebouncer.ini"   # it holds a password (cratebouncer warns otherwise)

	cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF
}

nginx_workers() {  # nginx_workers MASTER_PID: the pids of its children
	ps -o pid= --ppid "$1" | tr -d ' '
}

start_nginx() {  # start_nginx DIR PORT NAME: sets STARTED_PID
	local dir=$1 port=$2 name=$3
	"$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >>"$dir/stderr.log" 2>&1 &
	STARTED_PID=$!
	wait_listen "$port" "$STARTED_PID" "$name" "$dir/error.log" "$dir/stderr.log"
}

start_all() {
	start_nginx "$WORK/upstream" "$UP_PORT" "upstream nginx"
	UP_PID=$STARTED_PID
	wait_listen "$STATUS_PORT" "$UP_PID" "upstream nginx" "$WORK/upstream/error.log" "$WORK/upstream/stderr.log"
	mapfile -t UP_WORKERS < <(nginx_workers "$UP_PID")
	start_nginx "$WORK/nginx" "$NGX_PORT" nginx
	NGX_PID=$STARTED_PID
	mapfile -t NGX_WORKERS < <(nginx_workers "$NGX_PID")
	((${#NGX_WORKERS[@]} == 1)) || die "nginx has ${#NGX_WORKERS[@]} workers, expected 1"
	"$CB_BIN" -q "$WORK/cb/cratebouncer.ini" >>"$WORK/cb/stderr.log" 2>&1 &
	CB_PID=$!
	wait_listen "$CB_PORT" "$CB_PID" cratebouncer "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
}

proxy_port() { if [[ $1 == cratebouncer ]]; then echo "$CB_PORT"; else echo "$NGX_PORT"; fi; }
proxy_pids() { if [[ $1 == cratebouncer ]]; then echo "$CB_PID"; else echo "$NGX_PID" "${NGX_WORKERS[@]}"; fi; }
proxy_logs() {
	if [[ $1 == cratebouncer ]]; then
		echo "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
	else
		echo "$WORK/nginx/error.log" "$WORK/nginx/stderr.log"
	fi
}

check_post() {  # check_post NAME URL [curl options...]: one POST /_sql must give 200 and the JSON
	local name=$1 url=$2 got
	shift 2
	if ! got=$("$CURL" -sS --max-time 20 -o "$WORK/check.out" -w '%{http_code}' "$@" \
		-X POST -H 'Content-Type: application/json' --data "$BODY" "$url" 2>&1) ||
		[[ $got != 200 || $(<"$WORK/check.out") != "$RESULT" ]]; then
		echo "status: $got, body: $(head -c 500 "$WORK/check.out" 2>/dev/null)" >&2
		if [[ $name == upstream ]]; then
			log_tail "$WORK/upstream/error.log" "$WORK/upstream/stderr.log"
		else
			# shellcheck disable=SC2046  # paths without spaces
			log_tail $(proxy_logs "$name")
		fi
		die "POST /_sql through $name failed"
	fi
}

check_all() {
	check_post upstream "https://localhost:$UP_PORT/_sql" --cacert "$CA" -H "Authorization: $AUTH"
	check_post cratebouncer "http://127.0.0.1:$CB_PORT/_sql"
	check_post nginx "http://127.0.0.1:$NGX_PORT/_sql"
}

check_alive() {  # 0 if every daemon still runs; otherwise their logs and 1
	local ok=0 pid
	for pid in "$UP_PID" "${UP_WORKERS[@]}"; do
		kill -0 "$pid" 2>/dev/null && continue
		log_tail "$WORK/upstream/error.log" "$WORK/upstream/stderr.log"
		warn "the upstream nginx (pid $pid) died"
		ok=1
		break
	done
	for pid in "$NGX_PID" "${NGX_WORKERS[@]}"; do
		kill -0 "$pid" 2>/dev/null && continue
		log_tail "$WORK/nginx/error.log" "$WORK/nginx/stderr.log"
		warn "nginx (pid $pid) died"
		ok=1
		break
	done
	if ! kill -0 "$CB_PID" 2>/dev/null; then
		log_tail "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
		warn "cratebouncer died"
		ok=1
	fi
	return $ok
}

# ---------------------------------------------------------------------------------------------
# wrk runs.

ticks_of() {  # ticks_of PID...: their user + system CPU ticks together ("-" if one is gone)
	local pid sum=0 t
	for pid in "$@"; do
		t=$(cpu_ticks "$pid" 2>/dev/null) || t=""
		if [[ ! $t =~ ^[0-9]+$ ]]; then
			echo -
			return
		fi
		sum=$((sum + t))
	done
	echo "$sum"
}

upstream_accepts() {  # connections the upstream accepted so far (stub_status)
	"$CURL" -sS --max-time 10 "http://127.0.0.1:$STATUS_PORT/" 2>/dev/null | awk 'NR == 3 {print $1}'
}

RPS="" P99="" CPU_US="" UP_CONNS="" RUN_OK=1 RUN_ERROR=""
through() {  # through NAME TAG SECONDS: one wrk run; sets RPS, P99 (ms), CPU_US, UP_CONNS, RUN_OK, RUN_ERROR
	local name=$1 tag=$2 secs=$3 out rc=0 t0 t1 a0 a1 n non2xx errs
	local -a pids
	read -r -a pids <<<"$(proxy_pids "$name")"
	out=$WORK/wrk-$name-$tag.log
	RUN_OK=1 RUN_ERROR=""
	a0=$(upstream_accepts)
	t0=$(ticks_of "${pids[@]}")
	timeout -k 10 $((secs + 60)) "$WRK" -t"$THREADS" -c"$CLIENTS" -d"$secs"s --latency \
		-s "$WORK/post.lua" "http://127.0.0.1:$(proxy_port "$name")/_sql" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || rc=$?
	WRK_PID=""
	t1=$(ticks_of "${pids[@]}")
	a1=$(upstream_accepts)
	RPS=$(awk '$1 == "Requests/sec:" {printf "%.1f", $2}' "$out")
	# "99%  3.21ms": to milliseconds
	P99=$(awk '$1 == "99%" {v = $2; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
		if (f > 0) printf "%.2f", v * f}' "$out")
	n=$(awk '$2 == "requests" && $3 == "in" {print $1}' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	errs=$(grep -m 1 'Socket errors:' "$out" | sed 's/^ *//' || true)
	if ((rc != 0)); then
		RUN_ERROR="wrk exited with status $rc"
	elif [[ -z $RPS || -z $n || -z $P99 ]]; then
		RUN_ERROR="no figures in wrk's output"
	elif [[ -n $non2xx ]]; then
		RUN_ERROR="$non2xx non-2xx/3xx responses of $n"
	elif [[ -n $errs ]]; then
		RUN_ERROR="$errs"
	fi
	if [[ -n $RUN_ERROR ]]; then
		RUN_OK=0
		RPS=- P99=-
	fi
	CPU_US=$(awk -v a="$t0" -v b="$t1" -v n="${n:-0}" -v hz="$(getconf CLK_TCK)" \
		'BEGIN {if (n > 0 && a != "-" && b != "-") printf "%.1f", (b - a) * 1e6 / hz / n; else print "-"}')
	if [[ $a0 =~ ^[0-9]+$ && $a1 =~ ^[0-9]+$ ]]; then
		UP_CONNS=$((a1 - a0 - 1))   # less the stub_status request itself
	else
		UP_CONNS=-
	fi
}

run_failed() {  # run_failed NAME TAG: report the last run as a failure
	local -a logs
	read -r -a logs <<<"$(proxy_logs "$1")"
	warn "wrk through $1 failed: $RUN_ERROR"
	sed 's/^/    /' "$WORK/wrk-$1-$2.log" | head -n 30 >&2
	log_tail "${logs[@]}"
	FAILED=1
}

median_fmt() {  # median_fmt FORMAT VALUES...: like lib.sh's median, printed with FORMAT
	printf '%s\n' "${@:2}" | grep -E '^[0-9.]+$' | sort -g |
		awk -v f="$1" '{v[NR] = $1} END {if (!NR) print "-"; else if (NR % 2) printf f "\n", v[(NR + 1) / 2]; else printf f "\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

row() { printf '%-7s %11s %11s %10s %12s %13s %16s %11s %14s\n' "$@"; }

proxy_rounds() {
	local r name
	local -A res
	local -a cb_rps=() ngx_rps=() cb_p99=() ngx_p99=() cb_cpu=() ngx_cpu=() cb_up=() ngx_up=()
	echo "(cb = cratebouncer; up conns = TLS connections the upstream accepted during the run)"
	row round "cb req/s" "nginx req/s" "cb p99 ms" "nginx p99 ms" "cb CPU us/req" "nginx CPU us/req" \
		"cb up conns" "nginx up conns"
	for ((r = 1; r <= ROUNDS; r++)); do
		# Alternate which proxy goes first, so a drift over time favours neither.
		local order=(cratebouncer nginx)
		((r % 2)) || order=(nginx cratebouncer)
		for name in "${order[@]}"; do
			through "$name" "$r" "$DURATION"
			((RUN_OK)) || run_failed "$name" "$r"
			res[$name-rps]=$RPS res[$name-p99]=$P99 res[$name-cpu]=$CPU_US res[$name-up]=$UP_CONNS
		done
		cb_rps+=("${res[cratebouncer-rps]}") ngx_rps+=("${res[nginx-rps]}")
		cb_p99+=("${res[cratebouncer-p99]}") ngx_p99+=("${res[nginx-p99]}")
		cb_cpu+=("${res[cratebouncer-cpu]}") ngx_cpu+=("${res[nginx-cpu]}")
		cb_up+=("${res[cratebouncer-up]}") ngx_up+=("${res[nginx-up]}")
		row "$r" "${res[cratebouncer-rps]}" "${res[nginx-rps]}" "${res[cratebouncer-p99]}" \
			"${res[nginx-p99]}" "${res[cratebouncer-cpu]}" "${res[nginx-cpu]}" "${res[cratebouncer-up]}" "${res[nginx-up]}"
		check_alive || die "a daemon died during the wrk runs"
	done
	local cbm ngxm
	cbm=$(median "${cb_rps[@]}")
	ngxm=$(median "${ngx_rps[@]}")
	row median "$cbm" "$ngxm" "$(median_fmt %.2f "${cb_p99[@]}")" "$(median_fmt %.2f "${ngx_p99[@]}")" \
		"$(median "${cb_cpu[@]}")" "$(median "${ngx_cpu[@]}")" "$(median_fmt %.0f "${cb_up[@]}")" "$(median_fmt %.0f "${ngx_up[@]}")"
	echo "ratio cratebouncer/nginx = $(ratio "$cbm" "$ngxm")  (target >= 1.2)"
}

report_logs_http() {  # the warning/error lines of the daemons' logs
	local f n any=0
	for f in "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log" "$WORK/nginx/error.log" "$WORK/nginx/stderr.log" \
		"$WORK/upstream/error.log" "$WORK/upstream/stderr.log"; do
		[[ -s $f ]] || continue
		n=$(grep -c -E 'WARNING|ERROR|FATAL|PANIC|\[(warn|error|crit|alert|emerg)\]|error|warning' "$f" || true)
		((n > 0)) || continue
		any=1
		echo "$n warning/error lines in ${f#"$WORK"/}; first ones:"
		grep -E 'WARNING|ERROR|FATAL|PANIC|\[(warn|error|crit|alert|emerg)\]|error|warning' "$f" | head -n 5 | sed 's/^/  /'
	done
	((any)) || echo "no warning or error lines in the logs of cratebouncer, nginx and the upstream"
}

# ---------------------------------------------------------------------------------------------

http_init

# 1. The CA, the configs, the three daemons, and one POST through each path.
make_certs
write_configs_http
start_all
check_all
note "upstream: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), 1 worker, HTTPS on localhost:$UP_PORT" \
	"(test CA, every method answers 200 with a ${#RESULT}-byte JSON), work directory $WORK"
note "$("$CB_BIN" -V 2>&1 | head -n 1): HTTP on 127.0.0.1:$CB_PORT (pid $CB_PID), pool_size $POOL_SIZE, verify-full"
note "nginx: HTTP on 127.0.0.1:$NGX_PORT (master $NGX_PID, worker ${NGX_WORKERS[*]}), upstream keepalive $NGINX_KEEPALIVE," \
	"proxy_ssl_verify on"

# 2. Warm-up: both pools filled, nothing reported.
if ((WARMUP > 0)); then
	for name in cratebouncer nginx; do
		through "$name" warmup "$WARMUP"
		((RUN_OK)) || run_failed "$name" warmup
	done
	check_alive || die "a daemon died during the warm-up"
fi

# 3. The rounds.
echo
echo "wrk -t$THREADS -c$CLIENTS -d${DURATION}s --latency, POST /_sql $BODY, keep-alive," \
	"pool_size $POOL_SIZE / keepalive $NGINX_KEEPALIVE, verify-full TLS upstream"
proxy_rounds
check_all   # all still serve

# 4. Anything the daemons complained about.
echo
report_logs_http
[[ $FAILED == 0 ]] || die "some wrk runs failed (see above)"
