# Sourced by compare.sh, ab.sh and phases.sh.

# serve_random_files NAME: installs nginx if missing, makes $WORK (a new
# dir named after NAME under $FERRY_COMPARE_DIR, default /var/tmp; removed
# on exit, after nginx and the daemon whose pid the caller leaves in
# $DAEMON are killed), fills $WORK/www/d with $FILES files f0, f1, ... of
# $SIZE random bytes and serves them (start_nginx; the port is in $PORT).
serve_random_files() {
  command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
  WORK="$(mktemp -d "${FERRY_COMPARE_DIR:-/var/tmp}/ferry-$1.XXXXXX")"
  chmod 755 "$WORK"
  DAEMON=
  trap stop_served EXIT
  mkdir -p "$WORK/www/d"
  for i in $(seq 0 $((FILES - 1))); do head -c "$SIZE" /dev/urandom >"$WORK/www/d/f$i"; done
  start_nginx
}

# The EXIT trap of serve_random_files.
stop_served() {
  [[ -f "$WORK/nginx.pid" ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  if [[ -n "$DAEMON" ]]; then kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$WORK"
}

# start_nginx: serves $WORK/www from an nginx on loopback (sendfile,
# keep-alive), at a random port left in $PORT, under the address left in
# $BASE; its pid file is $WORK/nginx.pid (the caller kills it). With
# FERRY_COMPARE_TLS=1 it serves https (HTTP/1.1, TLS 1.2 and 1.3) with a
# certificate for 127.0.0.1 from a CA made here, and leaves the options
# that make each tool trust that CA in FERRY_TLS, CURL_TLS and ARIA2_TLS
# (arrays; empty for http).
start_nginx() {
  PORT=$((20000 + RANDOM % 20000))
  mkdir -p "$WORK/tmp"
  BASE="http://127.0.0.1:$PORT"
  FERRY_TLS=() CURL_TLS=() ARIA2_TLS=()
  local listen="listen 127.0.0.1:$PORT;"
  if [[ "${FERRY_COMPARE_TLS:-0}" == 1 ]]; then
    command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" \
      -days 2 -subj /CN=ferry-bench-ca 2>/dev/null
    openssl req "${ec[@]}" -keyout "$WORK/tls.key" -out "$WORK/tls.csr" -subj /CN=127.0.0.1 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/tls.ext"
    openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
      -CAcreateserial -days 2 -extfile "$WORK/tls.ext" -out "$WORK/tls.pem" 2>/dev/null
    BASE="https://127.0.0.1:$PORT"
    FERRY_TLS=(--tls-root "$WORK/ca.pem")
    CURL_TLS=(--cacert "$WORK/ca.pem")
    ARIA2_TLS=(--ca-certificate="$WORK/ca.pem")
    listen="listen 127.0.0.1:$PORT ssl;
    ssl_certificate $WORK/tls.pem;
    ssl_certificate_key $WORK/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path $WORK/tmp;
  proxy_temp_path $WORK/tmp;
  fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp;
  scgi_temp_path $WORK/tmp;
  server {
    $listen
    root $WORK/www;
  }
}
CONF
  nginx -c "$WORK/nginx.conf"
}
